"""Helpers for the contract tests: the API through its generated stubs only, as a client written in
another language sees it (no SDK in between)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
from google.protobuf import duration_pb2, timestamp_pb2

from hms.mgmt.v1 import bus_pb2, bus_pb2_grpc, registry_pb2, registry_pb2_grpc, workflow_pb2_grpc
from hms.mgmt.v1 import workflow_pb2 as pb

TaskStream = grpc.aio.UnaryStreamCall[pb.SubscribeTasksRequest, pb.SubscribeTasksResponse]
SubscribeStream = grpc.aio.UnaryStreamCall[bus_pb2.SubscribeRequest, bus_pb2.SubscribeResponse]
_FINAL = {
    pb.PROCESS_STATE_COMPLETED,
    pb.PROCESS_STATE_FAILED,
    pb.PROCESS_STATE_COMPENSATED,
    pb.PROCESS_STATE_CANCELLED,
}


class Wire:
    """One channel to a control plane and a stub per service."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.workflow = workflow_pb2_grpc.WorkflowStub(self.channel)
        self.registry = registry_pb2_grpc.RegistryStub(self.channel)
        self.bus = bus_pb2_grpc.BusStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def apply(self, source: str) -> pb.RegisterDefinitionResponse:
        return await self.workflow.RegisterDefinition(pb.RegisterDefinitionRequest(source=source))

    async def start(self, definition: str, **fields: object) -> pb.Process:
        request = pb.StartProcessRequest(definition=definition)
        for name, value in fields.items():
            if name == "input":
                request.input.update(value)  # type: ignore[arg-type]
            else:
                setattr(request, name, value)
        return (await self.workflow.StartProcess(request)).process

    async def process(self, process_id: str) -> pb.Process:
        return (await self.workflow.GetProcess(pb.GetProcessRequest(process_id=process_id))).process

    async def history(self, process_id: str) -> list[pb.HistoryEvent]:
        events: list[pb.HistoryEvent] = []
        token = ""
        while True:
            page = await self.workflow.GetHistory(
                pb.GetHistoryRequest(process_id=process_id, page_size=1000, page_token=token)
            )
            events.extend(page.events)
            token = page.next_page_token
            if not token:
                return events

    async def ended(self, process_id: str, timeout_s: float = 20.0) -> pb.Process:
        """The process once it reached a final state (followed with WatchProcess)."""
        async with asyncio.timeout(timeout_s):
            async for frame in self.workflow.WatchProcess(pb.WatchProcessRequest(process_id=process_id)):
                if frame.HasField("process") and frame.process.state in _FINAL:
                    return frame.process
        raise AssertionError(f"the watch of {process_id} ended before the process")

    async def until(self, process_id: str, wanted: pb.HistoryEventType.ValueType, step_id: str = "") -> None:
        """Follow the process until an event of type `wanted` (of `step_id`, when given) is recorded."""
        async with asyncio.timeout(10):
            async for frame in self.workflow.WatchProcess(pb.WatchProcessRequest(process_id=process_id)):
                if any(e.type == wanted and (not step_id or e.step_id == step_id) for e in frame.events):
                    return
        raise AssertionError(f"no {pb.HistoryEventType.Name(wanted)} in {process_id}")

    async def step(self, process_id: str, step_id: str) -> pb.StepStatus:
        process = await self.process(process_id)
        return next(s for s in process.steps if s.step_id == step_id)

    @asynccontextmanager
    async def worker(
        self, service: str, instance_id: str, task_types: tuple[str, ...] = (), max_in_flight: int = 16
    ) -> AsyncIterator[Tasks]:
        """A registered instance with its task stream open (after the ready frame)."""
        await self.registry.Register(
            registry_pb2.RegisterRequest(
                instance=registry_pb2.ServiceInstance(
                    service=service, instance_id=instance_id, address="127.0.0.1:1"
                ),
                ttl=duration_pb2.Duration(seconds=600),
            )
        )
        stream = self.workflow.SubscribeTasks(
            pb.SubscribeTasksRequest(
                service=service, instance_id=instance_id, task_types=task_types, max_in_flight=max_in_flight
            )
        )
        try:
            async with asyncio.timeout(10):
                ready = await stream.read()
            assert isinstance(ready, pb.SubscribeTasksResponse), ready
            assert ready == pb.SubscribeTasksResponse(ready=True)
            yield Tasks(stream)
        finally:
            stream.cancel()

    async def report(self, *events: pb.TaskEvent) -> list[pb.ReportResult.ValueType]:
        """Events sent as one ReportTaskEventBatches request; the results of its answer."""
        call = self.workflow.ReportTaskEventBatches()
        try:
            await call.write(pb.ReportTaskEventBatchesRequest(batch_id=1, events=events))
            async with asyncio.timeout(10):
                answer = await call.read()
            assert isinstance(answer, pb.ReportTaskEventBatchesResponse) and answer.batch_id == 1
            return list(answer.results)
        finally:
            call.cancel()


class Tasks:
    """A worker's task stream, read one task (or one cancellation) at a time."""

    def __init__(self, stream: TaskStream) -> None:
        self.stream = stream
        self._tasks: list[pb.Task] = []
        self._cancellations: list[pb.TaskCancellation] = []

    async def task(self, timeout_s: float = 10.0) -> pb.Task:
        """The next task offered."""
        async with asyncio.timeout(timeout_s):
            while not self._tasks:
                await self._read()
        return self._tasks.pop(0)

    async def cancellation(self, timeout_s: float = 10.0) -> pb.TaskCancellation:
        """The next cancellation sent."""
        async with asyncio.timeout(timeout_s):
            while not self._cancellations:
                await self._read()
        return self._cancellations.pop(0)

    async def read(self) -> object:
        """The next frame as it comes (or the end of the stream)."""
        return await self.stream.read()

    async def _read(self) -> None:
        frame = await self.stream.read()
        assert isinstance(frame, pb.SubscribeTasksResponse), frame
        assert not frame.ready
        self._tasks.extend(frame.tasks)
        self._cancellations.extend(frame.cancellations)


async def next_task(tasks: Tasks, timeout_s: float = 10.0) -> pb.Task:
    """The next task offered on a worker's task stream."""
    return await tasks.task(timeout_s)


async def read(stream: SubscribeStream) -> bus_pb2.SubscribeResponse:
    """The next frame of a Bus subscription."""
    frame = await stream.read()
    assert isinstance(frame, bus_pb2.SubscribeResponse), frame
    return frame


def seconds(value: float) -> timestamp_pb2.Timestamp:
    """A Unix time given in seconds (as history details carry times) as a Timestamp."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(round(value * 1e9))
    return stamp


def types(events: list[pb.HistoryEvent]) -> list[str]:
    """Event types by their short name (`step_completed`), with the step, for readable assertions."""
    return [
        pb.HistoryEventType.Name(e.type).removeprefix("HISTORY_EVENT_TYPE_").lower()
        + (f":{e.step_id}" if e.step_id else "")
        for e in events
    ]
