"""What a process waiting on a signal costs the control plane's memory.

Permits wait weeks for an inspection, so a control plane holds many such processes. Each one's
start publishes three events that stay in the Bus's in-memory tail; the test catches what made
that cost 13 KB a process (orjson's rounded-up buffers, kept as they were) rather than 1.7.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

import grpc

from control_plane.core.workflow.history_json import history_json
from control_plane.models import EventType, HistoryEvent, ProcessState
from control_plane.server import App
from hms.mgmt.v1 import workflow_pb2 as pb
from hms.mgmt.v1 import workflow_pb2_grpc

WAITING = "name: waits\nsteps:\n  - {id: wait, wait_signal: {name: go}}\n"
# Python allocations kept per started process, beyond the rows in the store. Measured 1.7 KB
# (the three events in the Bus tail and their subjects); 13 KB before event JSON was right-sized.
_MAX_BYTES_PER_PROCESS = 5_000


def _traced_bytes() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def test_an_event_s_json_takes_the_memory_of_its_size() -> None:
    event = HistoryEvent(
        sequence=3,
        process_id="p-1",
        time=1_700_000_000.5,
        type=EventType.STEP_STARTED,
        step_id="validate",
        attempt=1,
        state=ProcessState.RUNNING,
        details={"until": 1_700_000_060.0},
    )
    history_json(event)  # warm caches
    tracemalloc.start()
    try:
        before = _traced_bytes()
        kept = [history_json(event) for _ in range(1000)]
        grown = _traced_bytes() - before
    finally:
        tracemalloc.stop()
    assert grown / len(kept) < 2 * len(kept[0]) + 100


async def test_a_waiting_process_costs_a_few_kilobytes(server: App) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = workflow_pb2_grpc.WorkflowStub(channel)
        await stub.RegisterDefinition(pb.RegisterDefinitionRequest(source=WAITING))
        request = pb.StartProcessRequest(definition="waits")

        async def start(count: int) -> None:
            remaining = iter(range(count))

            async def starter() -> None:
                for _ in remaining:
                    await stub.StartProcess(request)

            await asyncio.gather(*(starter() for _ in range(20)))

        await start(200)  # warm: caches, pools, first allocations
        tracemalloc.start()
        try:
            before = _traced_bytes()
            await start(1000)
            grown = _traced_bytes() - before
        finally:
            tracemalloc.stop()
    assert grown / 1000 < _MAX_BYTES_PER_PROCESS, f"{grown / 1000:.0f} bytes per waiting process"
