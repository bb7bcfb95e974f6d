"""ReportTaskEvents: a worker's batches of task events, each answered once all of its events are applied.

Events are applied as they arrive, without waiting for earlier batches to commit, so that the
transitions of many tasks share commits; the events of one task stay in order (each waits for the one
before it, across batches). A batch is answered as soon as its last event is done, so answers may
overtake each other. What the stream keeps is bounded by what is unanswered: at most `_AHEAD` events
read and not yet answered (the reader waits for room, so a client that writes faster, or does not read
its answers, is slowed down), and per task only its latest event still under way.

An event refused for its own sake (malformed, unknown process, outside the caller's scope) is answered
INVALID. Any other failure
(the store unreachable, shutting down, a bug) ends the stream with its status: the batches not yet
answered may or may not have been applied, and the client sends them again (a repeat changes nothing).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from control_plane.core.workflow.workflows import ReportOutcome
from control_plane.errors import FieldViolation, InvalidArgument, NotFound, PermissionDenied
from control_plane.servicers import workflow_convert as convert
from hms.mgmt.v1 import common_pb2
from hms.mgmt.v1 import workflow_pb2 as pb

MAX_EVENTS = 1000
# Events of one stream read and not yet answered.
_AHEAD = 1000
_MAX_VIOLATIONS = 100

# An event's outcome, or what stopped it (sorted out when its batch is answered).
Outcome = ReportOutcome | Exception
Apply = Callable[[pb.TaskEvent], Awaitable[ReportOutcome]]


@dataclass(slots=True)
class _Batch:
    """One request on its way to its answer."""

    batch_id: int
    size: int  # events in the request
    left: int  # events not yet done
    room: int = 0  # units of the stream's room it holds until answered
    outcomes: list[asyncio.Future[Outcome]] = field(default_factory=list)
    refused: FieldViolation | None = None  # the request as a whole

    def answer(self) -> pb.ReportTaskEventsResponse:
        """The response to the request; raises the failure that was not an event's own fault."""
        response = pb.ReportTaskEventsResponse(batch_id=self.batch_id)
        if self.refused is not None:
            response.results.extend([pb.REPORT_RESULT_INVALID] * self.size)
            response.violations.append(_violation("", self.refused))
            return response
        for index, done in enumerate(self.outcomes):
            outcome = done.result()
            if isinstance(outcome, ReportOutcome):
                response.results.append(convert.result(outcome))
                continue
            violations = _refusal(outcome)
            if violations is None:
                raise outcome
            response.results.append(pb.REPORT_RESULT_INVALID)
            for violation in violations:
                if len(response.violations) < _MAX_VIOLATIONS:
                    response.violations.append(_violation(f"events[{index}]", violation))
        return response


class ReportStream:
    """The events of one ReportTaskEvents stream, applied with `apply`, and the answers to its batches."""

    def __init__(self, apply: Apply) -> None:
        self._apply = apply
        self._room = asyncio.Semaphore(_AHEAD)
        self._latest: dict[str, asyncio.Future[Outcome]] = {}  # per task token, while under way
        self._finished: asyncio.Queue[_Batch] = asyncio.Queue()
        self._unanswered = 0

    async def answers(
        self, requests: AsyncIterator[pb.ReportTaskEventsRequest]
    ) -> AsyncIterator[pb.ReportTaskEventsResponse]:
        """Answer every request of `requests`, each once its events are done; ends after the last answer."""
        reader = asyncio.ensure_future(self._read(requests))
        reading = True
        try:
            while reading or self._unanswered:
                finished = asyncio.ensure_future(self._finished.get())
                try:
                    waits = {finished, reader} if reading else {finished}
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    finished.cancel()
                if reading and reader.done():
                    reading = False
                    reader.result()  # raises why reading stopped (the control plane is shutting down, ...)
                if not finished.done() or finished.cancelled():
                    continue
                batch = finished.result()
                self._unanswered -= 1
                yield batch.answer()
                for _ in range(batch.room):
                    self._room.release()
        finally:
            reader.cancel()
            await asyncio.wait({reader})
            if not reader.cancelled():
                reader.exception()  # seen; the answer already says how the stream ended

    async def _read(self, requests: AsyncIterator[pb.ReportTaskEventsRequest]) -> None:
        async for request in requests:
            self._unanswered += 1
            events = request.events
            if not 1 <= len(events) <= MAX_EVENTS:
                await self._room.acquire()
                batch = _Batch(request.batch_id, len(events), 0, room=1)
                batch.refused = FieldViolation(
                    "events", f"1 to {MAX_EVENTS} events per request, got {len(events)}"
                )
                self._finished.put_nowait(batch)
                continue
            batch = _Batch(request.batch_id, len(events), len(events))
            for event in events:
                await self._room.acquire()
                batch.room += 1
                batch.outcomes.append(self._start(event, batch))

    def _start(self, event: pb.TaskEvent, batch: _Batch) -> asyncio.Future[Outcome]:
        token = event.task_token
        job = asyncio.ensure_future(self._run(self._latest.get(token), event))
        self._latest[token] = job

        def done(job: asyncio.Future[Outcome]) -> None:
            if self._latest.get(token) is job:
                del self._latest[token]
            batch.left -= 1
            if batch.left == 0:
                self._finished.put_nowait(batch)

        job.add_done_callback(done)
        return job

    async def _run(self, previous: asyncio.Future[Outcome] | None, event: pb.TaskEvent) -> Outcome:
        if previous is not None:
            await asyncio.wait({previous})
        try:
            return await self._apply(event)
        except Exception as exc:  # carried to the batch's answer, which refuses the event or ends the stream
            return exc


def _refusal(exc: Exception) -> list[FieldViolation] | None:
    """Why an event was refused for its own sake; None when its failure is not the event's fault."""
    if isinstance(exc, InvalidArgument):
        return exc.violations
    if isinstance(exc, NotFound | PermissionDenied):  # a process that does not exist; a token's scope
        return [FieldViolation("task_token", str(exc))]
    return None


def _violation(prefix: str, violation: FieldViolation) -> common_pb2.FieldViolation:
    field_path = ".".join(part for part in (prefix, violation.field) if part)
    return common_pb2.FieldViolation(field=field_path, description=violation.description)
