"""The SDK's Workflow side: `client.workflow.start / status / watch / ...` and the `Worker`."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2

from control_plane.sdk._errors import call, from_rpc_error
from hms.mgmt.v1 import bus_pb2, registry_pb2, workflow_pb2_grpc
from hms.mgmt.v1 import workflow_pb2 as pb

logger = logging.getLogger(__name__)

FINAL_STATES = frozenset(
    {
        pb.PROCESS_STATE_COMPLETED,
        pb.PROCESS_STATE_FAILED,
        pb.PROCESS_STATE_COMPENSATED,
        pb.PROCESS_STATE_CANCELLED,
    }
)


def struct(value: Mapping[str, Any] | None) -> struct_pb2.Struct:
    """A dict as a Struct."""
    message = struct_pb2.Struct()
    if value:
        message.update(value)
    return message


def plain(message: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as a dict."""
    return json_format.MessageToDict(message)


class WorkflowClient:
    """Workflow calls; answers are the wire messages of `hms.mgmt.v1`."""

    def __init__(self, channel: grpc.aio.Channel, metadata: Sequence[tuple[str, str]]) -> None:
        self._stub = workflow_pb2_grpc.WorkflowStub(channel)
        self._metadata = tuple(metadata)

    async def apply(self, source: str, *, validate_only: bool = False) -> pb.RegisterDefinitionResponse:
        """Register a definition (YAML or JSON); a changed one becomes a new version."""
        request = pb.RegisterDefinitionRequest(source=source, validate_only=validate_only)
        return await call(self._stub.RegisterDefinition(request, metadata=self._metadata))

    async def definition(self, name: str, version: int = 0) -> pb.Definition:
        """A stored definition version (the latest when `version` is 0), with its source and spec."""
        request = pb.GetDefinitionRequest(name=name, version=version)
        return (await call(self._stub.GetDefinition(request, metadata=self._metadata))).definition

    async def start(
        self,
        definition: str,
        payload: Mapping[str, Any] | None = None,
        *,
        business_key: str = "",
        version: int = 0,
    ) -> pb.Process:
        """Start a process (or get the one already started with `business_key`)."""
        request = pb.StartProcessRequest(
            definition=definition, version=version, input=struct(payload), business_key=business_key
        )
        return (await call(self._stub.StartProcess(request, metadata=self._metadata))).process

    async def status(self, process_id: str) -> pb.Process:
        """A process with its steps."""
        request = pb.GetProcessRequest(process_id=process_id)
        return (await call(self._stub.GetProcess(request, metadata=self._metadata))).process

    async def list(
        self, *, definition: str = "", states: Sequence[pb.ProcessState.ValueType] = (), page_size: int = 50
    ) -> builtins.list[pb.Process]:
        """The newest processes matching the filters (one page)."""
        request = pb.ListProcessesRequest(definition=definition, states=states, page_size=page_size)
        return list((await call(self._stub.ListProcesses(request, metadata=self._metadata))).processes)

    async def history(self, process_id: str) -> builtins.list[pb.HistoryEvent]:
        """The whole history of a process."""
        events: builtins.list[pb.HistoryEvent] = []
        token = ""
        while True:
            request = pb.GetHistoryRequest(process_id=process_id, page_size=1000, page_token=token)
            response = await call(self._stub.GetHistory(request, metadata=self._metadata))
            events.extend(response.events)
            token = response.next_page_token
            if not token:
                return events

    async def watch(self, process_id: str, after_sequence: int = 0) -> AsyncIterator[pb.WatchProcessResponse]:
        """History so far, then live events until the process ends (the last frame carries it)."""
        stream = self._stub.WatchProcess(
            pb.WatchProcessRequest(process_id=process_id, after_sequence=after_sequence),
            metadata=self._metadata,
        )
        try:
            while True:
                try:
                    frame = await stream.read()
                except grpc.aio.AioRpcError as exc:
                    raise from_rpc_error(exc) from None
                if not isinstance(frame, pb.WatchProcessResponse):
                    return
                yield frame
        finally:
            stream.cancel()

    async def wait(self, process_id: str) -> pb.Process:
        """Wait until the process ends; returns it."""
        final: pb.Process | None = None
        async for frame in self.watch(process_id):
            if frame.HasField("process"):
                final = frame.process
        if final is None or final.state not in FINAL_STATES:
            return await self.status(process_id)
        return final

    async def signal(
        self, process_id: str, name: str, payload: Mapping[str, Any] | None = None, *, signal_id: str = ""
    ) -> pb.SignalProcessResponse:
        """Send a signal to a process (buffered if no step waits for it yet)."""
        request = pb.SignalProcessRequest(
            process_id=process_id, name=name, payload=struct(payload), signal_id=signal_id
        )
        return await call(self._stub.SignalProcess(request, metadata=self._metadata))

    async def cancel(self, process_id: str, reason: str = "", *, compensate: bool = False) -> pb.Process:
        """Cancel a process, compensating its completed steps first when asked."""
        request = pb.CancelProcessRequest(process_id=process_id, reason=reason, compensate=compensate)
        return (await call(self._stub.CancelProcess(request, metadata=self._metadata))).process

    async def complete(
        self, token: str, output: Mapping[str, Any] | None = None, outbox: Sequence[bus_pb2.BusMessage] = ()
    ) -> pb.CompleteTaskResponse:
        """Report a task attempt completed."""
        request = pb.CompleteTaskRequest(task_token=token, output=struct(output), outbox=outbox)
        return await call(self._stub.CompleteTask(request, metadata=self._metadata))

    async def fail(
        self, token: str, code: str, message: str = "", *, non_retryable: bool = False
    ) -> pb.FailTaskResponse:
        """Report a task attempt failed."""
        request = pb.FailTaskRequest(
            task_token=token, error_code=code, message=message, non_retryable=non_retryable
        )
        return await call(self._stub.FailTask(request, metadata=self._metadata))

    def report_stream(
        self,
    ) -> grpc.aio.StreamUnaryCall[pb.ReportTaskEventsRequest, pb.ReportTaskEventsResponse]:
        """A ReportTaskEvents stream: write events as they happen; its answer comes when it is closed."""
        return self._stub.ReportTaskEvents(metadata=self._metadata)

    def subscribe_tasks(
        self, service: str, instance_id: str, task_types: Sequence[str], max_in_flight: int
    ) -> grpc.aio.UnaryStreamCall[pb.SubscribeTasksRequest, pb.SubscribeTasksResponse]:
        """The raw task stream (the Worker wraps it)."""
        request = pb.SubscribeTasksRequest(
            service=service, instance_id=instance_id, task_types=task_types, max_in_flight=max_in_flight
        )
        return self._stub.SubscribeTasks(request, metadata=self._metadata)


class TaskFailure(Exception):
    """Raise from a task handler to fail the attempt with a code (and stop retries if non-retryable)."""

    def __init__(self, code: str, message: str = "", *, non_retryable: bool = False) -> None:
        super().__init__(message or code)
        self.code, self.message, self.non_retryable = code, message or code, non_retryable


@dataclass(frozen=True, slots=True)
class TaskContext:
    """What a handler knows about the attempt it runs, and how it tells the control plane it is alive."""

    token: str
    process_id: str
    step_id: str
    task_type: str
    attempt: int
    business_key: str
    compensation: bool
    input: dict[str, Any]
    heartbeat_details: dict[str, Any] | None = None  # progress a previous attempt reported
    _beat: Callable[[str, Mapping[str, Any] | None], Awaitable[None]] | None = None

    async def heartbeat(self, details: Mapping[str, Any] | None = None) -> None:
        """Push the attempt's heartbeat deadline (required within the step's heartbeat_timeout)."""
        if self._beat is not None:
            await self._beat(self.token, details)


Handler = Callable[[TaskContext], Awaitable[Mapping[str, Any] | None]]


class Worker:
    """Registers a service instance, keeps its lease, takes its tasks and runs the handlers."""

    def __init__(
        self,
        client: Any,
        service: str,
        *,
        address: str = "127.0.0.1:1",
        version: str = "",
        instance_id: str = "",
        max_in_flight: int = 16,
        ttl_s: float = 10.0,
        drain_timeout_s: float = 30.0,
        tags: Sequence[str] = (),
        probe: registry_pb2.HealthProbe | None = None,
    ) -> None:
        self._client = client
        self.service = service
        self.address = address
        self.version = version
        self.instance_id = instance_id or f"{service}-{uuid.uuid4().hex[:8]}"
        self.max_in_flight = max_in_flight
        self.ttl_s = ttl_s
        self.drain_timeout_s = drain_timeout_s
        self.tags = tuple(tags)
        self.probe = probe
        self._handlers: dict[str, Handler] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self.ready = asyncio.Event()
        self._reports: (
            grpc.aio.StreamUnaryCall[pb.ReportTaskEventsRequest, pb.ReportTaskEventsResponse] | None
        ) = None
        self._report_lock = asyncio.Lock()
        self._outgoing: builtins.list[pb.TaskEvent] = []
        self._sending = False

    def task(self, task_type: str) -> Callable[[Handler], Handler]:
        """Decorator: `@worker.task("chargeFee") async def charge(task): ...` returns the output dict."""

        def register(handler: Handler) -> Handler:
            self._handlers[task_type] = handler
            return handler

        return register

    def stop(self) -> None:
        """Ask `run` to drain and return; idempotent."""
        self._stop.set()

    async def run(self) -> None:
        """Serve until `stop`: register, subscribe, run handlers; reconnect with backoff on failure."""
        backoff = 0.1
        while not self._stop.is_set():
            try:
                await self._session()
                backoff = 0.1
            except grpc.aio.AioRpcError as exc:
                logger.warning(
                    "worker %s: stream ended (%s: %s); retrying in %.1fs",
                    self.instance_id,
                    exc.code().name,
                    exc.details(),
                    backoff,
                )
            except (ConnectionError, OSError) as exc:
                logger.warning(
                    "worker %s: connection lost (%s); retrying in %.1fs", self.instance_id, exc, backoff
                )
            except Exception as exc:  # a domain error from the control plane (e.g. the lease lapsed)
                logger.warning("worker %s: %s; retrying in %.1fs", self.instance_id, exc, backoff)
            self.ready.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), backoff)
            backoff = min(backoff * 2, 5.0)
        if self._running:
            # Drain: running handlers may finish and report; past the timeout they are cancelled, and
            # the control plane requeues their tasks once this instance's stream is gone.
            _, stuck = await asyncio.wait(self._running, timeout=self.drain_timeout_s)
            for task in stuck:
                task.cancel()
        with contextlib.suppress(Exception):
            await self._client.registry.deregister(self.service, self.instance_id)

    async def _heartbeat(self, token: str, details: Mapping[str, Any] | None) -> None:
        """Report that a task is still being worked on."""
        event = pb.TaskEvent(task_token=token, heartbeat=pb.TaskHeartbeat())
        if details is not None:
            event.heartbeat.details.CopyFrom(struct(details))
        await self._report(event)

    async def _report(self, event: pb.TaskEvent) -> None:
        """Send a task event over the session's ReportTaskEvents stream.

        Events queued while a frame is being written go out together in the next frame, so the
        control plane applies them concurrently and their transitions share commits.
        """
        self._outgoing.append(event)
        if self._sending:
            return  # the report under way takes this event with it
        self._sending = True
        try:
            async with self._report_lock:
                while self._outgoing:
                    batch, self._outgoing = self._outgoing[:1000], self._outgoing[1000:]
                    if self._reports is None:
                        self._reports = self._client.workflow.report_stream()
                    try:
                        await self._reports.write(pb.ReportTaskEventsRequest(events=batch))
                    except grpc.aio.AioRpcError as exc:
                        # Lost reports are not lost tasks: the control plane requeues what this worker
                        # held once its task stream ends, and the work is done again.
                        logger.warning("worker %s: reports lost (%s)", self.instance_id, exc.code().name)
                        self._reports = None
        finally:
            self._sending = False

    async def _close_reports(self) -> None:
        async with self._report_lock:
            reports, self._reports = self._reports, None
        if reports is not None:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await reports.done_writing()
                await reports

    async def _session(self) -> None:
        reply = await self._client.registry.register(
            self.service,
            self.address,
            instance_id=self.instance_id,
            version=self.version,
            tags=self.tags,
            ttl_s=self.ttl_s,
            probe=self.probe,
        )
        async with self._client.registry.keep_alive(reply.lease.lease_id, interval_s=self.ttl_s / 3) as lost:
            stream = self._client.workflow.subscribe_tasks(
                self.service, self.instance_id, list(self._handlers), self.max_in_flight
            )
            try:
                stopping = asyncio.ensure_future(self._stop.wait())
                lease_lost = asyncio.ensure_future(lost.wait())
                try:
                    while True:
                        read = asyncio.ensure_future(stream.read())
                        await asyncio.wait({read, stopping, lease_lost}, return_when=asyncio.FIRST_COMPLETED)
                        if not read.done():
                            read.cancel()
                            return
                        frame = read.result()
                        if not isinstance(frame, pb.SubscribeTasksResponse):
                            raise ConnectionError("task stream ended")
                        if frame.ready:
                            self.ready.set()
                        for task in frame.tasks:
                            job = asyncio.ensure_future(self._run_task(task))
                            self._running.add(job)
                            job.add_done_callback(self._running.discard)
                finally:
                    stopping.cancel()
                    lease_lost.cancel()
            finally:
                stream.cancel()
                await self._close_reports()

    async def _run_task(self, task: pb.Task) -> None:
        context = TaskContext(
            token=task.task_token,
            process_id=task.process_id,
            step_id=task.step_id,
            task_type=task.task_type,
            attempt=task.attempt,
            business_key=task.business_key,
            compensation=task.compensation,
            input=plain(task.input),
            heartbeat_details=plain(task.heartbeat_details) if task.HasField("heartbeat_details") else None,
            _beat=self._heartbeat,
        )
        handler = self._handlers.get(task.task_type)
        try:
            if handler is None:
                raise TaskFailure("NO_HANDLER", f"no handler for {task.task_type!r}", non_retryable=True)
            output = await handler(context)
            completed = pb.TaskCompleted(output=struct(dict(output or {})))
            await self._report(pb.TaskEvent(task_token=task.task_token, completed=completed))
        except TaskFailure as failure:
            failed = pb.TaskFailed(
                error_code=failure.code, message=failure.message, non_retryable=failure.non_retryable
            )
            await self._report(pb.TaskEvent(task_token=task.task_token, failed=failed))
        except Exception as exc:
            logger.exception("task %s (%s) failed", task.task_type, task.task_token)
            failed = pb.TaskFailed(error_code="UNHANDLED", message=f"{type(exc).__name__}: {exc}")
            await self._report(pb.TaskEvent(task_token=task.task_token, failed=failed))
