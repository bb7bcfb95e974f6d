"""A Worker's task reports: written in batches on its session's ReportTaskEventBatches stream, each kept until
the control plane answers it, and written again when the stream breaks first.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import NoReturn

import grpc

from hms.mgmt.v1 import workflow_pb2 as pb
from hms_mgmt._errors import describe
from hms_mgmt._workflow import WorkflowClient

logger = logging.getLogger(__name__)

ReportCall = grpc.aio.StreamStreamCall[pb.ReportTaskEventBatchesRequest, pb.ReportTaskEventBatchesResponse]

_BATCH = 1000  # events per request, the most the control plane takes
_RETRY_FIRST_S = 0.1
_RETRY_MAX_S = 2.0


def is_outcome(event: pb.TaskEvent) -> bool:
    """Whether `event` ends its attempt (completed or failed): the reports that must not be lost."""
    return event.WhichOneof("event") in ("completed", "failed")


class Reports:
    """A Worker's task events, sent over a ReportTaskEventBatches stream and kept until answered.

    Events sent while a batch is being written go out together in the next one, so the control plane
    applies them concurrently and their transitions share commits. The control plane answers every
    batch once its events are applied; a stream that ends first (its replica went away, the store was
    unreachable) leaves its unanswered batches to be written again, on a new stream of the same session
    after a backoff or on the next session's. A repeat is harmless: the control plane answers it
    ALREADY_REPORTED (or STALE_ATTEMPT, TASK_CANCELLED) and changes nothing. Only completions and
    failures are kept; a heartbeat is worth sending only while a stream is open.
    """

    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._pending: list[pb.TaskEvent] = []  # not yet written
        self._unanswered: dict[int, list[pb.TaskEvent]] = {}  # written on the open stream, by batch id
        self._batch_ids = itertools.count(1)
        # Resolved by `send` (or by the stream's read) to wake the writer: one loop turn, where waiting on an
        # Event's wait() among the stream's read took three before every write.
        self._wake: asyncio.Future[None] | None = None
        self._settled = asyncio.Event()  # nothing pending or unanswered
        self._settled.set()
        self._open = False
        self._answered_any = False  # on the current stream

    @property
    def unsent(self) -> int:
        """Completions and failures the control plane has not answered yet."""
        return self._count_unanswered() + sum(map(is_outcome, self._pending))

    def send(self, event: pb.TaskEvent) -> None:
        """Queue one event for the stream (a heartbeat is dropped while no stream is open)."""
        if not self._open and not is_outcome(event):
            return
        self._pending.append(event)
        self._settled.clear()
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def settled(self) -> None:
        """Wait until every event sent so far has been answered."""
        await self._settled.wait()

    async def serve(self, workflow: WorkflowClient) -> None:
        """Keep a report stream open on `workflow`'s replica until cancelled: write what is sent, read the
        answers; when the stream breaks, open another after a backoff and write again what it left
        unanswered.
        """
        delay = _RETRY_FIRST_S
        while True:
            stream = workflow.report_batches()
            try:
                await self._exchange(stream)
            except (grpc.aio.AioRpcError, ConnectionError) as exc:
                logger.log(
                    # One warning when a working stream breaks, not one per attempt while it keeps failing.
                    logging.WARNING if self._answered_any or delay == _RETRY_FIRST_S else logging.INFO,
                    "%s: report stream ended (%s); %d reports kept for sending again",
                    self._owner,
                    describe(exc),
                    self._count_unanswered(),
                )
            finally:
                stream.cancel()
                self._requeue()
            if self._answered_any:
                delay = _RETRY_FIRST_S
            await asyncio.sleep(delay)  # the replica (or its store) may need a moment
            delay = min(delay * 2, _RETRY_MAX_S)

    async def _exchange(self, stream: ReportCall) -> NoReturn:
        """Write batches and read answers until the stream fails (raises how)."""
        self._open = True
        self._answered_any = False
        kept = sum(map(is_outcome, self._pending))
        if kept:
            logger.info("%s: sending %d reports kept since the last stream broke", self._owner, kept)
        reading: asyncio.Future[object] = asyncio.ensure_future(stream.read())
        try:
            while True:
                while self._pending:
                    batch, self._pending = self._pending[:_BATCH], self._pending[_BATCH:]
                    batch_id = next(self._batch_ids)
                    self._unanswered[batch_id] = batch
                    try:
                        await stream.write(pb.ReportTaskEventBatchesRequest(batch_id=batch_id, events=batch))
                    except asyncio.InvalidStateError:  # the call had ended: its read says how
                        await asyncio.wait({reading})
                        _answer(reading)
                        raise ConnectionError("the report stream ended while being written") from None
                if not reading.done():
                    await self._sent_or_answered(reading)
                if reading.done():
                    self._answered(_answer(reading))
                    reading = asyncio.ensure_future(stream.read())
        finally:
            self._open = False
            reading.cancel()
            await asyncio.wait({reading})
            if not reading.cancelled():
                reading.exception()  # seen: the stream's failure is raised from the write or read above

    async def _sent_or_answered(self, reading: asyncio.Future[object]) -> None:
        """Wait until something is sent or the stream's read ends (an answer, or the stream's end)."""
        wake = self._wake = asyncio.get_running_loop().create_future()

        def woken(_: object) -> None:
            if not wake.done():
                wake.set_result(None)

        reading.add_done_callback(woken)
        try:
            await wake
        finally:
            self._wake = None
            reading.remove_done_callback(woken)

    def _answered(self, answer: pb.ReportTaskEventBatchesResponse) -> None:
        self._answered_any = True
        if self._unanswered.pop(answer.batch_id, None) is None:
            return
        refused = sum(1 for result in answer.results if result == pb.REPORT_RESULT_INVALID)
        if refused:
            logger.warning(
                "%s: %d reports refused: %s",
                self._owner,
                refused,
                "; ".join(f"{v.field}: {v.description}" for v in answer.violations[:3]),
            )
        self._check_settled()

    def _count_unanswered(self) -> int:
        return sum(sum(map(is_outcome, batch)) for batch in self._unanswered.values())

    def _requeue(self) -> None:
        """A stream is gone: its unanswered outcomes go back in front of what is pending, in order."""
        again = [
            e for batch_id in sorted(self._unanswered) for e in self._unanswered[batch_id] if is_outcome(e)
        ]
        self._unanswered.clear()
        self._pending = again + [e for e in self._pending if is_outcome(e)]
        self._check_settled()

    def _check_settled(self) -> None:
        if not self._pending and not self._unanswered:
            self._settled.set()


def _answer(reading: asyncio.Future[object]) -> pb.ReportTaskEventBatchesResponse:
    """The answer a finished read got; raises how the stream failed when it got none."""
    answer = reading.result()
    if not isinstance(answer, pb.ReportTaskEventBatchesResponse):  # grpc.aio.EOF
        raise ConnectionError("the control plane ended the report stream")
    return answer
