"""The SDK's `Worker`: registers a service instance, takes its tasks, runs the handlers, reports back.

A Worker's session (registration, lease renewal, task stream, report stream) lives on one replica.
When that replica goes away the Worker starts a new session on the next address, under the same
instance id, and sends again the reports the control plane had not answered; handlers keep running
through it all. When the registry drops the instance (its lease lapsed) the Worker registers again on
the same replica at once. A task the control plane withdraws (its process was cancelled, its attempt
timed out) has its handler cancelled.
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

from hms.mgmt.v1 import registry_pb2
from hms.mgmt.v1 import workflow_pb2 as pb
from hms_mgmt import errors
from hms_mgmt._client import Client, Pinned
from hms_mgmt._endpoints import Endpoint
from hms_mgmt._errors import describe, from_rpc_error, is_unavailable
from hms_mgmt._reports import Reports
from hms_mgmt._tracing import task_span
from hms_mgmt._workflow import struct
from hms_mgmt.types import plain

logger = logging.getLogger(__name__)

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


def _must_register_again(exc: Exception) -> bool:
    """Whether a session ended because the registry no longer knows the instance (its lease lapsed)."""
    if isinstance(exc, grpc.aio.AioRpcError):
        exc = from_rpc_error(exc)
    return isinstance(exc, errors.NotRegistered) or (isinstance(exc, errors.NotFound) and exc.kind == "lease")


def _raise_if_ended(renewing: asyncio.Future[None], reporting: asyncio.Future[None]) -> None:
    """Raise why the session's lease renewal or report stream ended, if one did (neither ends by itself)."""
    for part, what in ((renewing, "lease renewal"), (reporting, "report stream")):
        if part.done():
            part.result()
            raise ConnectionError(f"{what} ended")


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
        self._running: dict[str, asyncio.Task[None]] = {}  # by task token
        self._stop = asyncio.Event()
        self.ready = asyncio.Event()
        self._reports = Reports(f"worker {self.instance_id}")
        self._retry_s = _RETRY_FIRST_S

    def task(self, task_type: str) -> Callable[[Handler], Handler]:
        """Decorator: `@worker.task("chargeFee") async def charge(task): ...` returns the output dict.

        A handler whose task the control plane withdraws (its process cancelled, its attempt timed out)
        is cancelled: asyncio.CancelledError at its next await; nothing is reported for it.
        """

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
        if _must_register_again(exc):
            # The replica is fine; the registry dropped this instance. Register again there, at once the
            # first time (backing off only if that keeps happening before the worker gets going).
            delay = 0.0 if self.ready.is_set() else self._next_retry()
            logger.warning(
                "worker %s: %s; registering again on %s",
                self.instance_id,
                describe(exc),
                endpoint.address,
            )
            return delay
        gone = is_unavailable(exc)
        if gone:
            endpoints = self._client.endpoints
            endpoints.fail_over(endpoint, exc)
            delay = endpoints.backoff_s()
        else:
            delay = self._next_retry()
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

    def _next_retry(self) -> float:
        delay, self._retry_s = self._retry_s, min(self._retry_s * 2, _RETRY_MAX_S)
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
        renewing = asyncio.ensure_future(session.registry.renew(reply.lease.lease_id, self.ttl_s / 3))
        reporting = asyncio.ensure_future(self._reports.serve(session.workflow))
        try:
            # What earlier sessions left unanswered goes first, so that those tasks are not offered again.
            await self._settle_reports(renewing, reporting)
            tasks = session.workflow.subscribe_tasks(
                self.service, self.instance_id, list(self._handlers), self.max_in_flight
            )
            try:
                await self._take_tasks(tasks, renewing, reporting)
            finally:
                tasks.cancel()
            await self._drain()  # stopping: running handlers report over this session's stream
            await self._settle_reports(renewing, reporting)
        finally:
            await _finish(renewing)
            await _finish(reporting)

    async def _settle_reports(self, renewing: asyncio.Future[None], reporting: asyncio.Future[None]) -> None:
        """Wait (up to drain_timeout_s) until the reports sent so far are answered, or the session fails."""
        settled = asyncio.ensure_future(self._reports.settled())
        try:
            await asyncio.wait(
                {settled, renewing, reporting},
                timeout=self.drain_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            await _finish(settled)
        _raise_if_ended(renewing, reporting)

    async def _take_tasks(
        self, tasks: TaskCall, renewing: asyncio.Future[None], reporting: asyncio.Future[None]
    ) -> None:
        """Start a handler for each task offered and cancel those withdrawn, until `stop`; raises when the
        task stream, the lease or the report stream ends.
        """
        stopping = asyncio.ensure_future(self._stop.wait())
        # One task awaits each read itself: a wait on the read and the three others per frame cost two
        # more loop turns before every handler started.
        reading: asyncio.Future[None] = asyncio.ensure_future(self._read_tasks(tasks))
        waiting: set[asyncio.Future[Any]] = {reading, stopping, renewing, reporting}
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if reading.done():
                reading.result()  # raises why the task stream ended
            _raise_if_ended(renewing, reporting)
        finally:
            await _finish(reading)
            await _finish(stopping)

    async def _read_tasks(self, tasks: TaskCall) -> None:
        """Start and cancel handlers as the task stream says, frame by frame; raises when it ends."""
        while True:
            frame = await tasks.read()
            if not isinstance(frame, pb.SubscribeTasksResponse):
                raise ConnectionError("task stream ended")
            if frame.ready:
                self._became_ready()
            # Withdrawn first: a frame that frees credit may carry the task that takes it.
            for cancellation in frame.cancellations:
                self._cancel(cancellation)
            for task in frame.tasks:
                self._start(task)

    def _start(self, task: pb.Task) -> None:
        token = task.task_token
        job = asyncio.ensure_future(self._run_task(task))
        self._running[token] = job

        def done(job: asyncio.Task[None]) -> None:
            if self._running.get(token) is job:
                del self._running[token]

        job.add_done_callback(done)

    def _cancel(self, cancellation: pb.TaskCancellation) -> None:
        """The control plane withdrew a task (its credit is already free there): stop its handler."""
        job = self._running.pop(cancellation.task_token, None)
        if job is None:
            return  # already finished; its report, if any, changes nothing
        logger.info(
            "worker %s: task %s withdrawn (%s%s); cancelling its handler",
            self.instance_id,
            cancellation.task_token,
            pb.TaskCancelReason.Name(cancellation.reason),
            f": {cancellation.message}" if cancellation.message else "",
        )
        job.cancel()

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
        _, stuck = await asyncio.wait(set(self._running.values()), timeout=self.drain_timeout_s)
        for task in stuck:
            task.cancel()

    async def _heartbeat(self, token: str, details: Mapping[str, Any] | None) -> None:
        """Report that a task is still being worked on."""
        event = pb.TaskEvent(task_token=token, heartbeat=pb.TaskHeartbeat())
        if details is not None:
            event.heartbeat.details.CopyFrom(struct(details))
        self._reports.send(event)

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
            with task_span(task, self.service):
                output = await handler(context)
            completed = pb.TaskCompleted(output=struct(dict(output or {})))
            self._reports.send(pb.TaskEvent(task_token=task.task_token, completed=completed))
        except TaskFailure as failure:
            failed = pb.TaskFailed(
                error_code=failure.code, message=failure.message, non_retryable=failure.non_retryable
            )
            self._reports.send(pb.TaskEvent(task_token=task.task_token, failed=failed))
        except Exception as exc:
            logger.exception("task %s (%s) failed", task.task_type, task.task_token)
            failed = pb.TaskFailed(error_code="UNHANDLED", message=f"{type(exc).__name__}: {exc}")
            self._reports.send(pb.TaskEvent(task_token=task.task_token, failed=failed))
