"""The SDK's `Worker`: registers a service instance, takes its tasks, runs the handlers, reports back.

A Worker's session (registration, lease renewal, task stream, report stream) lives on one replica.
When that replica goes away the Worker starts a new session on the next address, under the same
instance id, and sends again the reports the lost session could not confirm; handlers keep running
through it all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from control_plane.sdk._client import Client, Pinned
from control_plane.sdk._endpoints import Endpoint
from control_plane.sdk._errors import describe, is_unavailable
from control_plane.sdk._workflow import WorkflowClient, plain, struct
from hms.mgmt.v1 import registry_pb2
from hms.mgmt.v1 import workflow_pb2 as pb

logger = logging.getLogger(__name__)

ReportCall = grpc.aio.StreamUnaryCall[pb.ReportTaskEventsRequest, pb.ReportTaskEventsResponse]
TaskCall = grpc.aio.UnaryStreamCall[pb.SubscribeTasksRequest, pb.SubscribeTasksResponse]

_RETRY_FIRST_S = 0.1
_RETRY_MAX_S = 5.0


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


def _is_outcome(event: pb.TaskEvent) -> bool:
    return event.WhichOneof("event") in ("completed", "failed")


class Reports:
    """A Worker's task events, sent over its session's ReportTaskEvents stream and kept until confirmed.

    Events written while a frame is being written go out together in the next frame, so the control
    plane applies them concurrently and their transitions share commits. The stream answers only when
    closed, once every event on it is applied: outcomes written on a stream that breaks first are
    sent again by the next session (a repeat answers ALREADY_REPORTED or STALE_ATTEMPT, changing
    nothing). A stream is closed and its answer awaited every `confirm_every` outcomes, which bounds
    what is kept.
    """

    def __init__(self, owner: str, confirm_every: int = 1000, confirm_timeout_s: float = 30.0) -> None:
        self._owner = owner
        self._confirm_every = confirm_every
        self._confirm_timeout_s = confirm_timeout_s
        self._pending: list[pb.TaskEvent] = []  # not yet written
        self._unconfirmed: list[pb.TaskEvent] = []  # outcomes written on the open stream
        self._workflow: WorkflowClient | None = None  # the session's; None between sessions
        self._stream: ReportCall | None = None
        self._lock = asyncio.Lock()
        self._sending = False

    @property
    def unsent(self) -> int:
        """Outcomes not yet confirmed by the control plane."""
        return sum(map(_is_outcome, self._pending)) + len(self._unconfirmed)

    async def attach(self, workflow: WorkflowClient) -> None:
        """Send over a new session's stream; first resend what earlier sessions could not, and wait until
        the control plane has applied it, so that it does not offer those tasks again.
        """
        self._workflow = workflow
        if self._pending:
            logger.info("%s: sending %d reports again", self._owner, len(self._pending))
            await self._flush()
            await self.confirm()

    async def detach(self) -> None:
        """The session is over: close its stream; what it cannot confirm waits for the next session."""
        self._workflow = None
        await self.confirm()

    async def send(self, event: pb.TaskEvent) -> None:
        """Send (or keep, between sessions) one event; heartbeats between sessions are dropped."""
        if self._workflow is None and not _is_outcome(event):
            return
        self._pending.append(event)
        if self._workflow is not None and not self._sending:
            await self._flush()

    async def confirm(self) -> None:
        """Close the open stream and wait for its answer: every event on it is then applied."""
        async with self._lock:
            await self._close_stream()

    async def _flush(self) -> None:
        self._sending = True
        try:
            async with self._lock:
                while self._pending and self._workflow is not None and await self._write(self._workflow):
                    if len(self._unconfirmed) >= self._confirm_every:
                        await self._close_stream()
        finally:
            self._sending = False

    async def _write(self, workflow: WorkflowClient) -> bool:
        """Write the next frame; False (the events kept for the next session) when the stream broke."""
        batch, self._pending = self._pending[:1000], self._pending[1000:]
        if self._stream is None:
            self._stream = workflow.report_stream()
        try:
            await self._stream.write(pb.ReportTaskEventsRequest(events=batch))
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:  # the latter: the call had ended
            logger.warning(
                "%s: report stream broke (%s); reports kept for resending", self._owner, describe(exc)
            )
            self._stream.cancel()
            self._stream = None
            self._keep([*self._unconfirmed, *filter(_is_outcome, batch)])
            self._unconfirmed = []
            return False
        self._unconfirmed.extend(filter(_is_outcome, batch))
        return True

    async def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        written, self._unconfirmed = self._unconfirmed, []
        if stream is None:
            return
        try:
            async with asyncio.timeout(self._confirm_timeout_s):
                await stream.done_writing()
                answer = await stream
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, TimeoutError) as exc:
            logger.warning(
                "%s: %d reports unconfirmed (%s); kept for resending",
                self._owner,
                len(written),
                describe(exc),
            )
            stream.cancel()
            self._keep(written)
            return
        if answer.invalid:
            logger.warning("%s: %d reports refused: %s", self._owner, answer.invalid, answer.violations[:3])

    def _keep(self, events: list[pb.TaskEvent]) -> None:
        """Put `events` back in front of the pending ones, for the next stream."""
        self._pending[:0] = events


async def _finish(future: asyncio.Future[Any]) -> None:
    """Cancel `future` and wait until it is done; an outcome it had is taken as seen."""
    future.cancel()
    await asyncio.wait({future})
    if not future.cancelled():
        future.exception()


class Worker:
    """Registers a service instance, keeps its lease, takes its tasks and runs the handlers.

    `client` is a Client, or the address(es) to make one with (closed when `run` returns). With
    several addresses the Worker moves to the next replica when its own goes away.
    """

    def __init__(
        self,
        client: Client | str | Sequence[str],
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
        self._owns_client = not isinstance(client, Client)
        self._client = client if isinstance(client, Client) else Client(client)
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
        self._reports = Reports(f"worker {self.instance_id}")
        self._retry_s = _RETRY_FIRST_S

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
        """Serve until `stop`: register, subscribe, run handlers; start over on the next replica (or
        after a backoff) when the session ends.
        """
        try:
            while not self._stop.is_set():
                endpoint = self._client.endpoints.current
                delay = 0.0
                try:
                    await self._session(self._client.pinned(endpoint))
                except Exception as exc:
                    delay = self._session_ended(endpoint, exc)
                self.ready.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
            await self._drain()  # handlers still running when the last session had already ended
            if self._reports.unsent:
                logger.warning(
                    "worker %s: %d reports never reached a control plane; their tasks will be offered again",
                    self.instance_id,
                    self._reports.unsent,
                )
            with contextlib.suppress(Exception):
                await self._client.registry.deregister(self.service, self.instance_id)
        finally:
            if self._owns_client:
                await self._client.close()

    def _session_ended(self, endpoint: Endpoint, exc: Exception) -> float:
        """Log why a session ended; move off its replica if it went away; returns the wait before the next."""
        gone = is_unavailable(exc)
        if gone:
            endpoints = self._client.endpoints
            endpoints.fail_over(endpoint, exc)
            delay = endpoints.backoff_s()
        else:
            delay, self._retry_s = self._retry_s, min(self._retry_s * 2, _RETRY_MAX_S)
        logger.log(
            # While every replica is away, one warning when the session is lost, not one per attempt.
            logging.WARNING if self.ready.is_set() or not gone else logging.INFO,
            "worker %s: session on %s ended (%s); next in %.1fs",
            self.instance_id,
            endpoint.address,
            describe(exc),
            delay,
        )
        return delay

    async def _session(self, session: Pinned) -> None:
        """One registration on one replica: take tasks there until `stop` (returns) or a failure (raises)."""
        reply = await session.registry.register(
            self.service,
            self.address,
            instance_id=self.instance_id,
            version=self.version,
            tags=self.tags,
            ttl_s=self.ttl_s,
            probe=self.probe,
        )
        try:
            await self._reports.attach(session.workflow)
            renewing = asyncio.ensure_future(session.registry.renew(reply.lease.lease_id, self.ttl_s / 3))
            tasks = session.workflow.subscribe_tasks(
                self.service, self.instance_id, list(self._handlers), self.max_in_flight
            )
            try:
                await self._take_tasks(tasks, renewing)
            finally:
                tasks.cancel()
                await _finish(renewing)
            await self._drain()  # stopping: running handlers report over this session's stream
        finally:
            await self._reports.detach()

    async def _take_tasks(self, tasks: TaskCall, renewing: asyncio.Future[None]) -> None:
        """Start a handler for each task offered, until `stop`; raises when the stream or the lease ends."""
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            while True:
                read: asyncio.Future[object] = asyncio.ensure_future(tasks.read())
                waiting: set[asyncio.Future[Any]] = {read, stopping, renewing}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if not read.done():
                    await _finish(read)
                    if renewing.done():
                        renewing.result()  # raises why the lease is lost
                        raise ConnectionError("lease renewal ended")
                    return
                frame = read.result()
                if not isinstance(frame, pb.SubscribeTasksResponse):
                    raise ConnectionError("task stream ended")
                if frame.ready:
                    self._became_ready()
                for task in frame.tasks:
                    job = asyncio.ensure_future(self._run_task(task))
                    self._running.add(job)
                    job.add_done_callback(self._running.discard)
        finally:
            await _finish(stopping)

    def _became_ready(self) -> None:
        self._retry_s = _RETRY_FIRST_S
        self._client.endpoints.succeeded()
        self.ready.set()

    async def _drain(self) -> None:
        """Let running handlers finish (and report) for up to drain_timeout_s; cancel the rest."""
        if not self._running:
            return
        # Past the timeout they are cancelled, and the control plane requeues their tasks once this
        # instance's stream is gone.
        _, stuck = await asyncio.wait(set(self._running), timeout=self.drain_timeout_s)
        for task in stuck:
            task.cancel()

    async def _heartbeat(self, token: str, details: Mapping[str, Any] | None) -> None:
        """Report that a task is still being worked on."""
        event = pb.TaskEvent(task_token=token, heartbeat=pb.TaskHeartbeat())
        if details is not None:
            event.heartbeat.details.CopyFrom(struct(details))
        await self._reports.send(event)

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
            await self._reports.send(pb.TaskEvent(task_token=task.task_token, completed=completed))
        except TaskFailure as failure:
            failed = pb.TaskFailed(
                error_code=failure.code, message=failure.message, non_retryable=failure.non_retryable
            )
            await self._reports.send(pb.TaskEvent(task_token=task.task_token, failed=failed))
        except Exception as exc:
            logger.exception("task %s (%s) failed", task.task_type, task.task_token)
            failed = pb.TaskFailed(error_code="UNHANDLED", message=f"{type(exc).__name__}: {exc}")
            await self._reports.send(pb.TaskEvent(task_token=task.task_token, failed=failed))
