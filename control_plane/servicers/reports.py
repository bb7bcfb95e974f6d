"""A worker's stream of task events (ReportTaskEventBatches, ReportTaskEvents): each batch of events is
answered once all of them are applied.

Events are applied as they arrive, without waiting for earlier batches to commit, so that the
transitions of many tasks share commits; the events of one task stay in order (each waits for the one
before it, across batches). A batch is answered as soon as its last event is done, so answers may
overtake each other. What a stream keeps is bounded by what is unanswered: at most `_AHEAD` events
read and not yet answered (the reader waits for room, so a client that writes faster, or does not read
its answers, is slowed down), and per task only its latest event still under way.

An event refused for its own sake (malformed, unknown process, outside the caller's scope) is answered
INVALID. Any other failure (the store unreachable, shutting down, a bug) ends the stream with its
status: the batches not yet answered may or may not have been applied, and the client sends them again
(a repeat changes nothing).
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from control_plane.core.limits import MAX_REPORT_EVENTS
from control_plane.core.workflow.workflows import ReportOutcome
from control_plane.errors import FieldViolation, InvalidArgument, NotFound, PermissionDenied
from control_plane.servicers import workflow_convert as convert
from hms.mgmt.v1 import common_pb2
from hms.mgmt.v1 import workflow_pb2 as pb

# Events of one stream read and not yet answered.
_AHEAD = 1000
MAX_VIOLATIONS = 100  # per answer

# An event's outcome, or what stopped it (sorted out when its batch is answered).
Outcome = ReportOutcome | Exception
Apply = Callable[[pb.TaskEvent], Awaitable[ReportOutcome]]


@dataclass(frozen=True, slots=True)
class EventBatch:
    """One request's events, and the id its answer carries."""

    batch_id: int
    events: Sequence[pb.TaskEvent]


@dataclass(frozen=True, slots=True)
class Answer:
    """What became of one batch: a result per event, and why refused events were refused."""

    batch_id: int
    results: list[pb.ReportResult.ValueType]
    # (index of the event in the batch, None for the batch as a whole; why); at most MAX_VIOLATIONS.
    violations: list[tuple[int | None, FieldViolation]]

    def wire_violations(self, first_index: int = 0) -> list[common_pb2.FieldViolation]:
        """The violations with fields "events[<n>]...", n counted from `first_index`."""
        return [
            violation_at("events" if index is None else f"events[{first_index + index}]", violation)
            for index, violation in self.violations
        ]


@dataclass(slots=True)
class _Batch:
    """One batch on its way to its answer."""

    batch_id: int
    size: int  # events in the batch
    left: int  # events not yet done
    room: int = 0  # units of the stream's room it holds until answered
    outcomes: list[asyncio.Future[Outcome]] = field(default_factory=list)
    refused: FieldViolation | None = None  # the batch as a whole

    def answer(self) -> Answer:
        """The answer to the batch; raises the failure that was not an event's own fault."""
        if self.refused is not None:
            return Answer(self.batch_id, [pb.REPORT_RESULT_INVALID] * self.size, [(None, self.refused)])
        answer = Answer(self.batch_id, [], [])
        for index, done in enumerate(self.outcomes):
            outcome = done.result()
            if isinstance(outcome, ReportOutcome):
                answer.results.append(convert.result(outcome))
                continue
            violations = _refusal(outcome)
            if violations is None:
                raise outcome
            answer.results.append(pb.REPORT_RESULT_INVALID)
            room = MAX_VIOLATIONS - len(answer.violations)
            answer.violations.extend((index, v) for v in violations[:room])
        return answer


class ReportStream:
    """The events of one stream, applied with `apply`, and the answers to its batches."""

    def __init__(self, apply: Apply) -> None:
        self._apply = apply
        self._room = asyncio.Semaphore(_AHEAD)
        self._latest: dict[str, asyncio.Future[Outcome]] = {}  # per task token, while under way
        self._finished: asyncio.Queue[_Batch | None] = asyncio.Queue()  # None: the reader ended
        self._unanswered = 0

    async def answers(self, batches: AsyncIterator[EventBatch]) -> AsyncIterator[Answer]:
        """Answer every batch of `batches`, each once its events are done; ends after the last answer."""
        reader = asyncio.ensure_future(self._read(batches))
        # The reader's end arrives on the same queue as the finished batches (as None), so that one wait
        # serves both: no task and no asyncio.wait per answer.
        reader.add_done_callback(lambda _: self._finished.put_nowait(None))
        reading = True
        try:
            while reading or self._unanswered:
                batch = await self._finished.get()
                if batch is None:
                    reading = False
                    reader.result()  # raises why reading stopped (the control plane is shutting down, ...)
                    continue
                self._unanswered -= 1
                yield batch.answer()
                for _ in range(batch.room):
                    self._room.release()
        finally:
            reader.cancel()
            await asyncio.wait({reader})
            if not reader.cancelled():
                reader.exception()  # seen; the answer already says how the stream ended

    async def _read(self, batches: AsyncIterator[EventBatch]) -> None:
        async for request in batches:
            self._unanswered += 1
            events = request.events
            if not 1 <= len(events) <= MAX_REPORT_EVENTS:
                await self._room.acquire()
                batch = _Batch(request.batch_id, len(events), 0, room=1)
                batch.refused = FieldViolation(
                    "", f"1 to {MAX_REPORT_EVENTS} events per request, got {len(events)}"
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


class Tally:
    """The one answer of a ReportTaskEvents stream, summed from the answers to its batches as they come:
    counts, and the first MAX_VIOLATIONS problems by position in the stream.
    """

    def __init__(self) -> None:
        self._response = pb.ReportTaskEventsResponse()
        self._first: list[tuple[int, int, common_pb2.FieldViolation]] = []  # max-heap on position
        self._count = 0

    def add(self, answer: Answer, first_index: int) -> None:
        """Count one batch's answer; `first_index` is the position of its first event in the stream."""
        response = self._response
        for result in answer.results:
            if result == pb.REPORT_RESULT_ACCEPTED:
                response.accepted += 1
            elif result == pb.REPORT_RESULT_INVALID:
                response.invalid += 1
            else:
                response.stale += 1
        for (index, _), wire in zip(answer.violations, answer.wire_violations(first_index), strict=True):
            position = first_index + (index or 0)
            self._count += 1
            entry = (-position, -self._count, wire)
            if len(self._first) < MAX_VIOLATIONS:
                heapq.heappush(self._first, entry)
            elif entry > self._first[0]:
                heapq.heapreplace(self._first, entry)

    def response(self) -> pb.ReportTaskEventsResponse:
        """The stream's answer."""
        self._response.violations.extend(wire for _, _, wire in sorted(self._first, reverse=True))
        return self._response


def _refusal(exc: Exception) -> list[FieldViolation] | None:
    """Why an event was refused for its own sake; None when its failure is not the event's fault."""
    if isinstance(exc, InvalidArgument):
        return exc.violations
    if isinstance(exc, NotFound | PermissionDenied):  # a process that does not exist; a token's scope
        return [FieldViolation("task_token", str(exc))]
    return None


def violation_at(prefix: str, violation: FieldViolation) -> common_pb2.FieldViolation:
    """A violation on the wire, its field under `prefix`."""
    field_path = ".".join(part for part in (prefix, violation.field) if part)
    return common_pb2.FieldViolation(field=field_path, description=violation.description)
