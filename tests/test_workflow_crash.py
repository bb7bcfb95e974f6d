"""Crash safety: processes survive SIGKILLs of the control plane, each step completing exactly once."""

from __future__ import annotations

import asyncio
import collections
import signal
import socket
from collections.abc import Awaitable, Callable

import pytest

from hms.mgmt.v1 import workflow_pb2 as pb
from hms_mgmt import Client, TaskContext, Worker
from hms_mgmt.types import ProcessState
from tests.conftest import ServerProcess

Start = Callable[..., Awaitable[ServerProcess]]

FIVE_STEPS = """
name: five
steps:
""" + "".join(f"  - {{id: s{n}, task: {{service: Crash, type: noop}}}}\n" for n in range(1, 6))

PROCESSES = 200


def free_port() -> int:
    # The control plane must come back on the same port, so that workers and clients reconnect to it.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.timeout(180)
async def test_processes_finish_exactly_once_through_three_sigkills(server_process: Start) -> None:
    listen = f"127.0.0.1:{free_port()}"
    plane = await server_process("--listen", listen)
    handled = 0
    progress = asyncio.Event()

    async def noop(task: TaskContext) -> dict[str, str]:
        nonlocal handled
        handled += 1
        progress.set()
        return {"step": task.step_id}

    async with Client(listen) as client:
        await client.workflow.apply(FIVE_STEPS)
        workers = [
            Worker(client, "Crash", max_in_flight=32, ttl_s=3.0, drain_timeout_s=1.0) for _ in range(2)
        ]
        for worker in workers:
            worker.task("noop")(noop)
        runs = [asyncio.create_task(w.run()) for w in workers]
        try:
            ids = [(await client.workflow.start("five", {"n": n})).id for n in range(PROCESSES)]
            for fraction in (0.2, 0.5, 0.8):
                async with asyncio.timeout(60):
                    while handled < fraction * PROCESSES * 5:
                        progress.clear()
                        await progress.wait()
                await plane.stop(signal.SIGKILL)
                plane = await server_process("--listen", listen)
                await client.wait_ready(30)
            async with asyncio.timeout(90):
                finals = [await client.workflow.wait(pid) for pid in ids]
            histories = [await client.workflow.history(pid) for pid in ids]
        finally:
            for worker in workers:
                worker.stop()
            await asyncio.gather(*runs, return_exceptions=True)

    assert {p.state for p in finals} == {ProcessState.COMPLETED}
    for history in histories:
        completed = collections.Counter(
            e.step_id for e in history if e.type == pb.HISTORY_EVENT_TYPE_STEP_COMPLETED
        )
        assert completed == {f"s{n}": 1 for n in range(1, 6)}
        assert [e.sequence for e in history] == list(range(1, len(history) + 1))
