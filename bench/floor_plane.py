"""The protocol floor: the gRPC traffic of the workflow group's `bench5` processes with no engine and no store.

Run as a child by the workflow group (`python -m bench.floor_plane`); it logs `floor listening on
HOST:PORT` once it accepts calls and stops on SIGTERM or SIGINT. It answers the same calls the
control plane answers in that group, with the same messages, for the same SDK worker and the same
driver: Registry Register / KeepAlive / Deregister (a lease that never lapses), Workflow
RegisterDefinition, StartProcess, SubscribeTasks and ReportTaskEventBatches, and Bus Subscribe (at
most once, from now on). A process is five tasks `s1`..`s5` of service `Bench`, type `noop`, each
given the previous one's output; the Bus carries the 13 events the engine publishes for such a
process (process_started, process_running, step_started and step_completed per step,
process_completed with the output as JSON), grouped as the engine's transitions group them.

What it leaves out is everything the control plane is for: nothing is stored or fsynced, there is
no definition (the five steps are fixed here), no history, no retries or timeouts, no task credit
(the bench's worker takes 200 at once and never has more than 100), no metrics, no checks of the
requests. So its CPU per step is what the wire protocol alone costs a grpc.aio server in Python: a
floor under the control plane's, and its steps/s a ceiling over the control plane's with these
clients on this machine. The workflow group reports both beside the control plane's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import signal
import sys
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import struct_pb2, timestamp_pb2

from bench.workflow import DEFINITION, STEPS, TASK_TYPE
from control_plane.servicers.structs import to_dict
from hms.mgmt.v1 import bus_pb2, registry_pb2, workflow_pb2

logger = logging.getLogger("bench.floor_plane")

STEP_IDS = tuple(f"s{n}" for n in range(1, STEPS + 1))

Context = grpc.aio.ServicerContext[Any, Any]


class Outbox:
    """Items for one stream, sent in frames of whatever has queued since the last frame, and for
    `hold_turns` turns of the event loop after the first (see `take`)."""

    def __init__(self, hold_turns: int) -> None:
        self._items: deque[Any] = deque()
        self._ready = asyncio.Event()
        self._hold_turns = hold_turns

    def put(self, items: list[Any]) -> None:
        self._items.extend(items)
        self._ready.set()

    async def take(self, most: int) -> list[Any]:
        """Wait for at least one item; return up to `most`."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        # The control plane's frames carry what a commit made ready; the floor has no commit to wait for,
        # and at 100 in flight sent a few items a frame, every client paying per frame: 1,800-2,200 steps/s
        # where holding for 20 loop turns (no timer, ~0.1 ms) made 6,700-7,700. At 1 in flight nothing
        # can join a frame, and the turns only cost (~10% of steps/s), so the workflow group holds none there.
        for _ in range(self._hold_turns):
            await asyncio.sleep(0)
        return [self._items.popleft() for _ in range(min(most, len(self._items)))]


class Floor:
    """The workers' task outboxes and the subscribers' delivery outboxes (a process is only its task's token)."""

    def __init__(self, hold_turns: int) -> None:
        self.hold_turns = hold_turns
        self.workers: list[Outbox] = []
        self.subscribers: list[tuple[str, Outbox]] = []  # (pattern prefix, outbox)
        self._next_worker = itertools.count()
        self._ids = itertools.count(1)
        self._sequence = itertools.count(1)

    def new_id(self) -> str:
        return f"floor-{next(self._ids):012d}"

    def dispatch(self, process_id: str, step: int, payload: struct_pb2.Struct) -> None:
        """Hand step `step` (0-based) of a process to the next worker, round robin."""
        if not self.workers:
            raise RuntimeError("no worker subscribed")
        task = workflow_pb2.Task(
            task_token=f"{process_id}:{step}",
            process_id=process_id,
            definition=DEFINITION,
            definition_version=1,
            step_id=STEP_IDS[step],
            task_type=TASK_TYPE,
            attempt=1,
        )
        task.input.CopyFrom(payload)
        self.workers[next(self._next_worker) % len(self.workers)].put([task])

    def publish(self, process_id: str, events: list[tuple[str, bytes]]) -> None:
        """One transition's events, to every subscriber whose pattern covers the process's subjects."""
        if not self.subscribers:
            return
        now = timestamp_pb2.Timestamp()
        now.FromNanoseconds(time.time_ns())
        deliveries = [
            bus_pb2.Delivery(
                message=bus_pb2.BusMessage(
                    subject=f"workflow.{DEFINITION}.{process_id}.{event}",
                    data=data,
                    content_type="application/json",
                    sequence=next(self._sequence),
                    subject_sequence=1,
                    published_at=now,
                )
            )
            for event, data in events
        ]
        for prefix, outbox in self.subscribers:
            if deliveries[0].message.subject.startswith(prefix):
                outbox.put(deliveries)


def _event(process_id: str, kind: str, step: str = "", details: Any = None) -> bytes:
    """An event's payload as the engine's is shaped (its history event as JSON), without the history."""
    body = {"processId": process_id, "type": kind, "stepId": step, "details": details or {}}
    return json.dumps(body).encode()


class Registry:
    """A lease that never lapses."""

    async def Register(
        self, request: registry_pb2.RegisterRequest, context: Context
    ) -> registry_pb2.RegisterResponse:
        lease = registry_pb2.Lease(lease_id=f"lease-{request.instance.instance_id}")
        lease.ttl.CopyFrom(request.ttl)
        return registry_pb2.RegisterResponse(instance=request.instance, lease=lease, revision=1)

    async def KeepAlive(
        self, request_iterator: AsyncIterator[registry_pb2.KeepAliveRequest], context: Context
    ) -> AsyncIterator[registry_pb2.KeepAliveResponse]:
        async for request in request_iterator:
            yield registry_pb2.KeepAliveResponse(
                lease=registry_pb2.Lease(lease_id=request.lease_id), lease_id=request.lease_id
            )

    async def Deregister(
        self, request: registry_pb2.DeregisterRequest, context: Context
    ) -> registry_pb2.DeregisterResponse:
        return registry_pb2.DeregisterResponse(revision=2)


class Workflow:
    """bench5's processes, from StartProcess to their last report."""

    def __init__(self, floor: Floor) -> None:
        self._floor = floor

    async def RegisterDefinition(
        self, request: workflow_pb2.RegisterDefinitionRequest, context: Context
    ) -> workflow_pb2.RegisterDefinitionResponse:
        return workflow_pb2.RegisterDefinitionResponse(name=DEFINITION, version=1, created=True)

    async def StartProcess(
        self, request: workflow_pb2.StartProcessRequest, context: Context
    ) -> workflow_pb2.StartProcessResponse:
        floor = self._floor
        process_id = floor.new_id()
        floor.dispatch(process_id, 0, request.input)
        floor.publish(
            process_id,
            [
                ("process_started", _event(process_id, "PROCESS_STARTED")),
                ("process_running", _event(process_id, "PROCESS_RUNNING")),
                ("step_started", _event(process_id, "STEP_STARTED", STEP_IDS[0])),
            ],
        )
        process = workflow_pb2.Process(
            id=process_id,
            definition=DEFINITION,
            definition_version=1,
            state=workflow_pb2.PROCESS_STATE_RUNNING,
            current_step_ids=[STEP_IDS[0]],
        )
        process.input.CopyFrom(request.input)
        return workflow_pb2.StartProcessResponse(process=process)

    async def SubscribeTasks(
        self, request: workflow_pb2.SubscribeTasksRequest, context: Context
    ) -> AsyncIterator[workflow_pb2.SubscribeTasksResponse]:
        outbox = Outbox(self._floor.hold_turns)
        self._floor.workers.append(outbox)
        try:
            yield workflow_pb2.SubscribeTasksResponse(ready=True)
            while True:
                tasks = await outbox.take(max(request.max_in_flight, 1))
                yield workflow_pb2.SubscribeTasksResponse(tasks=tasks)
        finally:
            self._floor.workers.remove(outbox)

    async def ReportTaskEventBatches(
        self, request_iterator: AsyncIterator[workflow_pb2.ReportTaskEventBatchesRequest], context: Context
    ) -> AsyncIterator[workflow_pb2.ReportTaskEventBatchesResponse]:
        async for request in request_iterator:
            for event in request.events:
                if event.WhichOneof("event") == "completed":
                    self._completed(event.task_token, event.completed.output)
            yield workflow_pb2.ReportTaskEventBatchesResponse(
                batch_id=request.batch_id, results=[workflow_pb2.REPORT_RESULT_ACCEPTED] * len(request.events)
            )

    def _completed(self, token: str, output: struct_pb2.Struct) -> None:
        process_id, _, index = token.rpartition(":")
        step = int(index)
        floor = self._floor
        result = {"output": to_dict(output)}
        done = ("step_completed", _event(process_id, "STEP_COMPLETED", STEP_IDS[step], result))
        if step + 1 < len(STEP_IDS):
            floor.dispatch(process_id, step + 1, output)
            started = ("step_started", _event(process_id, "STEP_STARTED", STEP_IDS[step + 1]))
            floor.publish(process_id, [done, started])
            return
        floor.publish(
            process_id, [done, ("process_completed", _event(process_id, "PROCESS_COMPLETED", "", result))]
        )


class Bus:
    """At-most-once subscriptions from now on, to patterns `<prefix>.>`."""

    def __init__(self, floor: Floor) -> None:
        self._floor = floor

    async def Subscribe(
        self, request: bus_pb2.SubscribeRequest, context: Context
    ) -> AsyncIterator[bus_pb2.SubscribeResponse]:
        if not request.pattern.endswith(">"):
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the floor serves patterns ending in '>' only")
        outbox = Outbox(self._floor.hold_turns)
        entry = (request.pattern[:-1], outbox)
        self._floor.subscribers.append(entry)
        try:
            yield bus_pb2.SubscribeResponse(ready=bus_pb2.SubscriptionReady())
            while True:
                deliveries = await outbox.take(max(request.max_batch, 1))
                yield bus_pb2.SubscribeResponse(deliveries=deliveries)
        finally:
            self._floor.subscribers.remove(entry)


def _service(
    name: str,
    messages: Any,
    *,
    unary: dict[str, Any] | None = None,
    server_stream: dict[str, Any] | None = None,
    bidi: dict[str, Any] | None = None,
) -> grpc.GenericRpcHandler:
    """The handler of the methods of service `name` that the floor serves (the others answer UNIMPLEMENTED),
    their messages `<Method>Request` / `<Method>Response` of the generated module `messages`."""
    kinds = (
        (unary, grpc.unary_unary_rpc_method_handler),
        (server_stream, grpc.unary_stream_rpc_method_handler),
        (bidi, grpc.stream_stream_rpc_method_handler),
    )
    handlers = {
        method: make(
            behaviour,
            request_deserializer=getattr(messages, f"{method}Request").FromString,
            response_serializer=getattr(messages, f"{method}Response").SerializeToString,
        )
        for methods, make in kinds
        for method, behaviour in (methods or {}).items()
    }
    return grpc.method_handlers_generic_handler(name, handlers)


async def start(listen: str, hold_turns: int = 0) -> tuple[grpc.aio.Server, int]:
    """A started floor server on `listen` (port 0: one of its choosing) and its port; each frame waits
    `hold_turns` turns of the event loop for more items."""
    floor = Floor(hold_turns)
    registry, workflow, bus = Registry(), Workflow(floor), Bus(floor)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            _service(
                "hms.mgmt.v1.Registry",
                registry_pb2,
                unary={"Register": registry.Register, "Deregister": registry.Deregister},
                bidi={"KeepAlive": registry.KeepAlive},
            ),
            _service(
                "hms.mgmt.v1.Workflow",
                workflow_pb2,
                unary={
                    "RegisterDefinition": workflow.RegisterDefinition,
                    "StartProcess": workflow.StartProcess,
                },
                server_stream={"SubscribeTasks": workflow.SubscribeTasks},
                bidi={"ReportTaskEventBatches": workflow.ReportTaskEventBatches},
            ),
            _service("hms.mgmt.v1.Bus", bus_pb2, server_stream={"Subscribe": bus.Subscribe}),
        )
    )
    port = server.add_insecure_port(listen)
    await server.start()
    return server, port


async def serve(listen: str, hold_turns: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    server, port = await start(listen, hold_turns)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    logger.info("floor listening on 127.0.0.1:%d", port)
    try:
        await stop.wait()
    finally:
        await server.stop(0)


def main() -> None:
    """Entry point of the child process."""
    parser = argparse.ArgumentParser(prog="python -m bench.floor_plane", description=__doc__.split("\n")[0])
    parser.add_argument("listen", nargs="?", default="127.0.0.1:0", help="address to serve on")
    parser.add_argument(
        "--hold-turns", type=int, default=0, help="event-loop turns each frame waits for more items"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    asyncio.run(serve(args.listen, args.hold_turns))


if __name__ == "__main__":
    main()
