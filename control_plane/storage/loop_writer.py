"""The embedded store's writer: a batch's works run on the event loop, only its COMMIT on a thread.

Writer runs every batch on a thread of its own. For SQLite that thread and the event loop are both busy
with Python most of the time, and they share the GIL in switch-interval slices whenever both can run: at
half of the plane's throughput a batch took ~2.2 times its CPU, and a transition waited p50 5.2 / p99 15 ms
from its submit to its caller resuming. SQLite's statements run in the process and take microseconds, so
here the works run on the loop itself, in slices of about a millisecond between which the loop serves
everything else; COMMIT, which waits for the fsync with the GIL released, goes to a thread, and the loop
gathers the next batch meanwhile. Measured with the workflow group of the bench, 3 alternating pairs against
Writer: +24% steps/s and -12% control-plane CPU a step at 100 processes in flight, no difference resolved
at 1 in flight.

A work that may run long (a sweep over many rows: retention, compaction; a test holding the writer) is
submitted `slow`: the batch it is in runs whole on the thread, as Writer runs every batch, so the loop is
never held for it.

What this gives up: a work's reads that miss both SQLite's page cache (64 MiB by default) and the
operating system's now wait on the loop, as a reader's would; the database is a local file, and the pages
a transition touches are the hot ones.

The connection is used by one side at a time: the loop runs a batch's works only once the thread has
answered the previous batch, and the thread runs the backend's upkeep (a WAL checkpoint) before answering.
PostgreSQL keeps Writer: its statements are network round trips the loop must not wait for.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import time
from collections.abc import Callable
from typing import Any

from control_plane.storage.connection import Connection
from control_plane.storage.writer import MAX_BATCH, MAX_PENDING, Follow, Unattributed, Work, Writer

logger = logging.getLogger(__name__)

# Longest run of works on the loop before it serves everything else for a turn (seconds). A transition is
# ~0.15-0.3 ms of work: a few of them a slice, and a full batch does not hold the loop for tens of ms.
SLICE_S = 0.001

_Item = tuple[Work, "asyncio.Future[Any]", bool]  # work, its caller's future, whether it is slow


class _Run:
    """A batch under way on the loop: the works run so far and their outcomes."""

    __slots__ = ("begun", "careful", "futures", "results", "works")

    def __init__(self, works: list[Work], futures: list[asyncio.Future[Any]], *, careful: bool) -> None:
        self.works = works
        self.futures = futures
        self.careful = careful
        self.results: list[tuple[bool, Any]] = []
        self.begun = time.perf_counter()


class _Whole:
    """A batch the thread runs whole (it holds slow work)."""

    __slots__ = ("futures", "works")

    def __init__(self, works: list[Work], futures: list[asyncio.Future[Any]]) -> None:
        self.works = works
        self.futures = futures


class LoopWriter(Writer):
    """Group commit with the works on the event loop and COMMIT on a thread (see the module's docstring)."""

    _thread_name = "store-commit"

    def __init__(
        self,
        conn: Connection,
        begin: str,
        *,
        changes: Callable[[Connection], int],
        database_error: type[Exception] = Exception,
        max_pending: int = MAX_PENDING,
    ) -> None:
        # Set before Writer starts the thread, which reads them.
        self._jobs: queue.SimpleQueue[_Run | _Whole | None] = queue.SimpleQueue()
        # Filled and emptied on the loop; the thread only asks whether it is empty (a hint for its upkeep).
        self._waiting: collections.deque[_Item] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        # A batch is under way (on the loop, or on the thread): the next one waits for its answer.
        self._running = False
        self._drained: asyncio.Future[None] | None = None  # set once closed and nothing is left
        super().__init__(conn, begin, database_error=database_error, max_pending=max_pending, changes=changes)

    async def submit(self, work: Work, follow: Follow | None = None, *, slow: bool = False) -> Any:
        """Run `work` in the next shared commit, once there is room in the queue (see Writer.submit).

        Unless `slow`, the work runs on this loop: it must not wait for anything but the database."""
        future = await self._admit(follow)
        loop = self._loop
        if loop is None:
            loop = self._loop = future.get_loop()
        elif loop is not future.get_loop():
            self._settle(future, False, RuntimeError("the store's writer serves one event loop"))
            return await future
        self._waiting.append((work, future, slow))
        if not self._running:
            self._running = True
            # Not at once: what else this turn of the loop submits shares the commit.
            loop.call_soon(self._start)
        return await future

    async def aclose(self) -> None:
        """Commit what is queued, then stop the thread and close the connection."""
        if self._closed:
            return
        self._closed = True
        if self._running:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained
        await asyncio.to_thread(self._stop)

    def close(self) -> None:
        """(Off the loop.) Stop at once: only for a writer that was never used, or whose loop is gone."""
        if not self._closed:
            self._closed = True
            self._stop()

    def _stop(self) -> None:
        self._jobs.put(None)
        self._thread.join()
        self._conn.close()

    # -- on the loop ------------------------------------------------------------------------------------

    def _start(self) -> None:
        """Take the next batch: run its works here, or hand it whole to the thread if any is slow."""
        count = min(len(self._waiting), MAX_BATCH)
        if not count:
            self._idle()
            return
        items = [self._waiting.popleft() for _ in range(count)]
        works = [work for work, _, _ in items]
        futures = [future for _, future, _ in items]
        if any(slow for _, _, slow in items):
            self._jobs.put(_Whole(works, futures))
        else:
            self._begin_run(_Run(works, futures, careful=False))

    def _begin_run(self, run: _Run) -> None:
        conn = self._conn
        self.notes.clear()
        try:
            conn.execute(self._begin)
            if self.before_items is not None:
                self.before_items(conn, run.works, run.careful)
        except Exception as exc:
            self._fail(run, exc)
            return
        self._continue(run)

    def _continue(self, run: _Run) -> None:
        """Run the batch's next works for up to a slice, then COMMIT on the thread or another slice later."""
        assert self._loop is not None
        deadline = time.perf_counter() + SLICE_S
        works, results = run.works, run.results
        try:
            while len(results) < len(works):
                results.append(self._run_item(works[len(results)], run.careful))
                if len(results) < len(works) and time.perf_counter() >= deadline:
                    self._loop.call_soon(self._continue, run)
                    return
        except (Unattributed, self._database_error) as exc:
            if run.careful:
                self._fail(run, exc)
                return
            # As Writer does: a failure that cannot be undone alone runs the batch again carefully.
            self._rollback()
            self._begin_run(_Run(run.works, run.futures, careful=True))
            return
        except Exception as exc:
            self._fail(run, exc)
            return
        self._jobs.put(run)

    def _fail(self, run: _Run, exc: Exception) -> None:
        """The batch failed as a whole before its COMMIT: rolled back, every caller told, the next one."""
        self._done(run.futures, [(False, self._failed(exc))] * len(run.futures))

    def _done(self, futures: list[asyncio.Future[Any]], results: list[tuple[bool, Any]]) -> None:
        """A batch is over (the thread has let go of the connection): its callers told, the next one."""
        assert self._loop is not None
        for future, (ok, value) in zip(futures, results, strict=True):
            self._settle(future, ok, value)
        if self._waiting:
            # Not at once: callers just resumed queue their next works first, and share the commit.
            self._loop.call_soon(self._start)
        else:
            self._idle()

    def _idle(self) -> None:
        self._running = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # -- on the thread ----------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if isinstance(job, _Run):
                results, took = self._commit_run(job)
            else:
                results, took = self._outcome(job.works)
            self._observe(took, len(job.futures))
            # Before answering: the loop begins the next batch on the connection as soon as it is told.
            self._upkeep(busy=bool(self._waiting))
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._done, job.futures, results)

    def _commit_run(self, run: _Run) -> tuple[list[tuple[bool, Any]], float | None]:
        try:
            self._conn.execute("COMMIT")
        except Exception as exc:
            return [(False, self._failed(exc))] * len(run.futures), None
        return run.results, time.perf_counter() - run.begun
