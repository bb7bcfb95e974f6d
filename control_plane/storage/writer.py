"""The single writer of a store: every write runs on one thread, and what queues meanwhile shares a commit.

Group commit: one transaction (and one fsync) for everything queued while the previous commit ran, where
one caller's failure undoes only its own work: each caller's work runs bare, and when one fails after
changing something the batch runs again with a savepoint per caller (see `Writer._run_unguarded`).

The queue is bounded: past `max_pending` writes submitted and not yet committed, a caller waits for room
before its work is queued (back-pressure, see control_plane.backpressure). The control plane's own work
waits as long as it takes; a client's request waits its patience, then is refused with ResourceExhausted.

PostgreSQL's store uses Writer; SQLite's runs the works on the event loop instead (see loop_writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from control_plane.backpressure import patience
from control_plane.errors import ResourceExhausted, Unavailable
from control_plane.storage.base import StoreStats
from control_plane.storage.connection import Connection

logger = logging.getLogger(__name__)

Work = Callable[[Connection], Any]
# Told of a write's result on the callers' loop as soon as it commits, whether or not its caller still waits.
Follow = Callable[[Any], None]

# Most writes a commit carries; bounds the latency a single batch adds to its first caller.
MAX_BATCH = 512
# Writes submitted and not yet committed, at most: 8 full batches, a second or two of work at full speed.
MAX_PENDING = 4096


class Writer:
    """Runs write work on one thread; everything queued meanwhile shares one transaction and one fsync."""

    _thread_name = "store-writer"

    def __init__(
        self,
        conn: Connection,
        begin: str,
        notify_sql: str | None = None,
        *,
        pipeline: bool = False,
        database_error: type[Exception] = Exception,
        reconnect: Callable[[], Connection] | None = None,
        max_pending: int = MAX_PENDING,
        changes: Callable[[Connection], int] | None = None,
    ) -> None:
        self._conn = conn
        self._begin = begin
        # Connections that can pipeline statements (PostgreSQL) send a batch without waiting for each
        # answer: see PostgresConnection.pipelined.
        self._pipeline = pipeline
        self._database_error = database_error
        # A count that moves whenever the connection may have changed something (sqlite3's total_changes,
        # PostgresConnection.writes), for running each caller's work without a savepoint first (see
        # `_run_unguarded`); without one every caller's work runs under a savepoint.
        self._changes = changes
        # A networked database can drop the connection (restart, failover): a new one is opened then.
        self._reconnect = reconnect
        # (topic, payload) pairs the work of the current batch asks to announce to other replicas: sent
        # once per batch, inside its transaction, so they arrive exactly when its commit is visible.
        self.notes: set[tuple[str, str]] = set()
        self._notify_sql = notify_sql
        # Called with the batch's works after BEGIN, before any of them runs, and whether the transaction
        # is a careful one (where an error met before the works could not be charged to one of them):
        # see SqlStore._read_ahead.
        self.before_items: Callable[[Connection, list[Work], bool], None] | None = None
        # Upkeep the backend does between batches, on this thread, once their callers have been told (LoopWriter:
        # before, see there); SQLite checkpoints its WAL here rather than inside a commit. Told whether writes
        # are already waiting.
        self.between_batches: Callable[[Connection, bool], None] | None = None
        # Counts and the commit observer; the store that owns this writer shares its own.
        self.stats = StoreStats()
        self._queue: queue.SimpleQueue[tuple[Work, asyncio.Future[Any]] | None] = queue.SimpleQueue()
        # A slot per write submitted and not yet settled; taken before queueing, given back on the loop
        # once the commit is done (even if the caller stopped waiting for it).
        self._max_pending = max_pending
        self._room = asyncio.Semaphore(max_pending)
        self._pending = 0
        self._follows: dict[asyncio.Future[Any], Follow] = {}  # on the callers' loop only
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._closed = False
        self._thread.start()

    @property
    def pending(self) -> int:
        """Writes submitted and not yet committed (at most `max_pending`)."""
        return self._pending

    async def submit(self, work: Work, follow: Follow | None = None, *, slow: bool = False) -> Any:
        """Run `work` in the next shared commit, once there is room in the queue.

        `follow`, if given, is called with the result on this loop once the work has committed, even if
        the caller was cancelled meanwhile: what must follow a commit in memory cannot depend on whether
        the caller still waits (a task of its own per write cost the loop as much, per transition).

        `slow` marks work that may run long (a sweep over many rows): here every work runs on the writer's
        thread anyway; LoopWriter keeps such work off the event loop."""
        future = await self._admit(follow)
        self._queue.put((work, future))
        return await future

    async def _admit(self, follow: Follow | None) -> asyncio.Future[Any]:
        """Take a slot in the queue (waiting for room if there is none): the future the write's outcome
        will be given to."""
        if self._closed:
            raise Unavailable("the store is closed: the control plane is shutting down")
        if self._room.locked():
            await self._wait_for_room()
        else:
            await self._room.acquire()  # free: returns at once
        if self._closed:
            self._room.release()
            raise Unavailable("the store is closed: the control plane is shutting down")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending += 1
        if follow is not None:
            self._follows[future] = follow
        return future

    async def _wait_for_room(self) -> None:
        limit = patience()
        try:
            async with asyncio.timeout(limit):
                await self._room.acquire()
        except TimeoutError:
            raise ResourceExhausted(
                f"the store is behind: {self._max_pending} writes are waiting for their commit; "
                "retry in a moment"
            ) from None

    def close(self) -> None:
        """Commit what is queued, then stop the thread and close the connection."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
            self._conn.close()

    async def aclose(self) -> None:
        """`close`, without holding the loop while the queue drains."""
        await asyncio.to_thread(self.close)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            results, took = self._outcome([work for work, _ in batch])
            self._observe(took, len(batch))
            self._answer([future for _, future in batch], results)
            if stop:
                return
            self._upkeep(busy=not self._queue.empty())

    def _upkeep(self, *, busy: bool) -> None:
        """The backend's upkeep between batches; a failure is logged, the next commit goes ahead."""
        upkeep = self.between_batches
        if upkeep is None:
            return
        try:
            upkeep(self._conn, busy)
        except Exception:
            logger.exception("the store's upkeep between commits failed")

    def _outcome(self, works: list[Work]) -> tuple[list[tuple[bool, Any]], float | None]:
        """Run a batch in one transaction: each work's outcome, and the seconds the commit took (None if
        it failed)."""
        results: list[tuple[bool, Any]]
        took: float | None = None
        try:
            self._ensure_connection()
            begun = time.perf_counter()
            try:
                results = self._transaction(works, careful=not self._optimistic)
            except Unattributed:
                # A failure that cannot be undone alone (a caller's work failed after writing; pipelined, a
                # database error can surface in a later caller's work than the one that caused it): run
                # the batch again carefully, each caller's work under a savepoint of its own.
                self._rollback()
                results = self._transaction(works, careful=True)
            took = time.perf_counter() - begun
        except Exception as exc:
            results = [(False, self._failed(exc))] * len(works)
        finally:
            self.notes.clear()
        return results, took

    def _failed(self, exc: Exception) -> Exception:
        """After a transaction failed as a whole: what each of its callers is told (the transaction is
        rolled back unless the connection is gone)."""
        if isinstance(exc, Unavailable):
            return exc
        if self._reconnect is not None and broken(self._conn):
            logger.error("store connection lost during a commit: %s", exc)
            return Unavailable(
                "the store connection was lost during the commit, so its outcome is unknown; "
                "retry if the request is safe to repeat"
            )
        logger.exception("store commit failed")
        self._rollback()
        return exc

    def _observe(self, took: float | None, size: int) -> None:
        """Tell the commit observer (metrics) of a commit that succeeded."""
        observer = self.stats.on_commit
        if observer is not None and took is not None:
            try:
                observer(took, size)
            except Exception:
                logger.exception("the commit observer failed")

    def _answer(self, futures: list[asyncio.Future[Any]], results: list[tuple[bool, Any]]) -> None:
        """(Off the loop.) Hand the outcomes to the callers' loops.

        One wake-up of each callers' loop per commit, not one per caller: each costs the loop a self-pipe
        write and a turn, which a profile at 100 transitions in flight shows."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for future, (ok, value) in zip(futures, results, strict=True):
            by_loop.setdefault(future.get_loop(), []).append((future, ok, value))
        for loop, settled in by_loop.items():
            loop.call_soon_threadsafe(self._settle_all, settled)

    def _settle_all(self, settled: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
        """On the callers' loop: each caller's queue slot back, then its result, in commit order."""
        for future, ok, value in settled:
            self._settle(future, ok, value)

    def _settle(self, future: asyncio.Future[Any], ok: bool, value: Any) -> None:
        """On the caller's loop: give the queue slot back, then the result to the caller."""
        self._pending -= 1
        self._room.release()
        follow = self._follows.pop(future, None) if self._follows else None
        if ok and follow is not None:
            try:
                follow(value)
            except Exception:
                logger.exception("what follows a commit failed")
        if future.cancelled():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def _transaction(self, works: list[Work], *, careful: bool) -> list[tuple[bool, Any]]:
        """Run every caller's work in one transaction; `careful` charges each database error to its caller."""
        conn = self._conn
        self.notes.clear()
        results: list[tuple[bool, Any]] = []
        try:
            with self._pipelined(), self._unprepared(careful):
                conn.execute(self._begin)
                if self.before_items is not None:
                    self.before_items(conn, works, careful)
                for work in works:
                    results.append(self._run_item(work, careful))
                if self._notify_sql is not None:
                    for topic, payload in self.notes:
                        conn.execute(self._notify_sql, (f"hms_{topic}", payload))
                conn.execute("COMMIT")
        except self._database_error as exc:
            if careful:
                raise
            raise Unattributed from exc
        return results

    @property
    def _optimistic(self) -> bool:
        """Whether batches first run without a savepoint per caller (see `_run_unguarded`)."""
        return self._changes is not None

    def _written(self) -> int | None:
        """The connection's count of changes, if it keeps one."""
        return self._changes(self._conn) if self._changes is not None else None

    def _run_item(self, work: Work, careful: bool) -> tuple[bool, Any]:
        """One caller's work under a savepoint (optimistic runs: see `_run_unguarded`): its failure must
        not undo the others' work."""
        conn = self._conn
        writes = self._written() if not careful else None
        if writes is not None:
            return self._run_unguarded(work, writes)
        conn.execute("SAVEPOINT item")
        try:
            result = work(conn)
            conn.execute("RELEASE item")
            if careful:
                self._sync()  # pipelined, the work's errors surface by here, charged to this item
            return True, result
        except Exception as exc:
            if not careful and isinstance(exc, self._database_error):
                raise
            if careful:
                with contextlib.suppress(Exception):
                    self._sync()  # leaves the pipeline's aborted state
            conn.execute("ROLLBACK TO item")
            conn.execute("RELEASE item")
            return False, exc

    def _run_unguarded(self, work: Work, writes: int) -> tuple[bool, Any]:
        """(Optimistic.) One caller's work without a savepoint, on a connection that counts what may have
        changed something (`writes`: PostgreSQL's statements that may write, SQLite's rows changed).

        A savepoint per caller cost two statements of a transition's eight, and PostgreSQL a
        subtransaction each, whose cache overflows past 64 in one transaction; on SQLite ~50 us of each
        commit at 1 transition in flight (engine alone, bench.engine_loop: 790 -> 738 us a step, medians of
        7 alternating pairs). A work that fails before changing anything leaves nothing to undo; one that fails
        after, or with a database error, cannot be undone alone, so the batch runs again carefully, with
        savepoints.
        """
        try:
            return True, work(self._conn)
        except Exception as exc:
            if isinstance(exc, self._database_error) or self._written() != writes:
                raise Unattributed from exc
            return False, exc

    def _rollback(self) -> None:
        # A pipelining connection's own rollback also forgets what an aborted pipeline left half-prepared.
        rollback: Callable[[], None] | None = (
            getattr(self._conn, "rollback", None) if self._pipeline else None
        )
        with contextlib.suppress(Exception):
            if rollback is not None:
                rollback()
            else:
                self._conn.execute("ROLLBACK")

    def _ensure_connection(self) -> None:
        """Open a new connection if the last one was lost; Unavailable while the database is unreachable."""
        if self._reconnect is None or not broken(self._conn):
            return
        try:
            fresh = self._reconnect()
        except Exception as exc:
            raise Unavailable(f"the store is unreachable: {exc}") from exc
        with contextlib.suppress(Exception):
            self._conn.close()
        self._conn = fresh
        logger.info("store writer reconnected")

    def _pipelined(self) -> contextlib.AbstractContextManager[None]:
        batch: Callable[[], contextlib.AbstractContextManager[None]] | None = (
            getattr(self._conn, "pipelined", None) if self._pipeline else None
        )
        return batch() if batch is not None else contextlib.nullcontext()

    def _unprepared(self, careful: bool) -> contextlib.AbstractContextManager[None]:
        """A careful transaction runs where errors are expected: no prepared statements then."""
        off: Callable[[], contextlib.AbstractContextManager[None]] | None = (
            getattr(self._conn, "unprepared", None) if self._pipeline and careful else None
        )
        return off() if off is not None else contextlib.nullcontext()

    def _sync(self) -> None:
        sync: Callable[[], None] | None = getattr(self._conn, "sync", None) if self._pipeline else None
        if sync is not None:
            sync()


def broken(conn: Connection) -> bool:
    """Whether a connection was lost (only networked backends say so)."""
    return bool(getattr(conn, "broken", False))


class Unattributed(Exception):
    """A database error surfaced in a pipelined batch where it cannot be charged to its caller."""
