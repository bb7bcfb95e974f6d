"""SQLite store (the embedded default): one file in WAL mode under the data directory."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import cast
from urllib.parse import parse_qs, urlparse

from control_plane.storage.cluster import LocalCluster
from control_plane.storage.connection import Connection
from control_plane.storage.loop_writer import LoopWriter
from control_plane.storage.sql_store import Dialect, SqlStore, migrate

logger = logging.getLogger(__name__)

# BEGIN IMMEDIATE takes the write lock at once, so a transaction never fails half-way on a busy lock.
_BEGIN = "BEGIN IMMEDIATE"


_SYNC_MODES = ("full", "normal")
_DIALECT = Dialect()
# Page cache per connection (the writer's and the reader's), MiB: the indexes of a busy log stay in memory.
_CACHE_MIB = 64
# WAL frames not yet copied into the database after which a checkpoint starts beside the writer once no
# write is waiting (SQLite's own autocheckpoint threshold), and after which the writer checkpoints between
# batches itself, so that the WAL stays bounded under a load that never pauses (8,000 frames: 32 MiB of
# 4 KiB pages).
CHECKPOINT_IDLE_FRAMES = 1000
CHECKPOINT_BUSY_FRAMES = 8000


def _parse_url(url: str) -> tuple[Path, str, int]:
    """(file, synchronous mode, cache MiB) of `sqlite:///path.db[?synchronous=full|normal][&cache_mib=N]`."""
    parsed = urlparse(url)
    if parsed.scheme != "sqlite":
        raise ValueError(f"not a sqlite URL: {url!r}")
    raw = parsed.path or parsed.netloc
    if not raw:
        raise ValueError(f"sqlite URL without a path: {url!r}")
    options = parse_qs(parsed.query)
    unknown = set(options) - {"synchronous", "cache_mib"}
    if unknown:
        raise ValueError(f"unknown sqlite URL option(s) {sorted(unknown)}; known: synchronous, cache_mib")
    sync = options.get("synchronous", ["full"])[-1].lower()
    if sync not in _SYNC_MODES:
        raise ValueError(f"synchronous must be one of {_SYNC_MODES}, got {sync!r}")
    cache = options.get("cache_mib", [str(_CACHE_MIB)])[-1]
    if not cache.isdigit() or not 1 <= int(cache) <= 65536:
        raise ValueError(f"cache_mib must be a whole number of MiB from 1 to 65536, got {cache!r}")
    return Path(raw), sync, int(cache)


def _connect(
    path: Path, sync: str = "full", cache_mib: int = _CACHE_MIB, *, writer: bool = False
) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    if writer:
        # SQLite's autocheckpoint runs inside the COMMIT that crosses its threshold: that commit's callers
        # would wait for pages to be copied and the database file fsynced. WalCheckpointer does it after.
        conn.execute("PRAGMA wal_autocheckpoint=0")
        # Savepoints' statement journals (one per caller in a shared commit) in memory, not in a temporary
        # file created and unlinked every few commits; they only undo a caller's work inside the
        # transaction. The reader keeps temporary files: its large sorts should not take memory.
        conn.execute("PRAGMA temp_store=MEMORY")
    # FULL (default): a commit returns only after the WAL is fsynced, so an acknowledged write survives a
    # power cut. NORMAL (`?synchronous=normal`) fsyncs only at checkpoints: faster, and still safe when
    # the process crashes, but the last commits can be lost if the machine loses power.
    conn.execute(f"PRAGMA synchronous={sync.upper()}")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute(f"PRAGMA cache_size=-{cache_mib * 1024}")  # negative: KiB
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


class StoreInUse(OSError):
    """Another control plane has the database open (it holds its owner lock)."""


class OwnerLock:
    """An exclusive lock on `<database>.lock`, held while one process serves the database.

    Two control planes on one SQLite file would both believe they are the only replica (LocalCluster):
    both would fire every timer, hand out every task and number Bus messages from their own memory.
    The second is refused instead. The kernel drops the lock when its holder exits, kill -9 included,
    so a crash never leaves a stale lock behind. The file says who holds it, for the error message.
    """

    def __init__(self, database: Path) -> None:
        self._fd: int | None = os.open(f"{database}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 64, 0).decode(errors="replace").strip() or "unknown"
            self.release()
            raise StoreInUse(
                f"{database} is in use by another control plane (pid {holder}); stop it first, or give "
                "this one a data directory of its own (several replicas share PostgreSQL, not SQLite)"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Close the lock file, which releases the lock; idempotent."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


class SqliteStore(SqlStore):
    """The embedded store: writes grouped into shared, fsynced commits (see LoopWriter)."""

    @classmethod
    async def open(cls, url: str) -> SqliteStore:
        """Open (creating and migrating if needed) the database named by `url`."""
        path, sync, cache_mib = _parse_url(url)
        return await asyncio.to_thread(cls._open_sync, path, sync, cache_mib)

    @classmethod
    def _open_sync(cls, path: Path, sync: str, cache_mib: int) -> SqliteStore:
        path.parent.mkdir(parents=True, exist_ok=True)
        owner = OwnerLock(path)
        try:
            # sqlite3's typeshed signatures are narrower than the shared Protocol's `Any` parameters; the
            # connection does accept everything the shared SQL passes.
            conn = cast(Connection, _connect(path, sync, cache_mib, writer=True))
            migrate(conn, "sqlite", _BEGIN)
            reader = cast(Connection, _connect(path, sync, cache_mib))
            writer = LoopWriter(conn, _BEGIN, database_error=sqlite3.Error, changes=_total_changes)
            checkpointer = writer.between_batches = WalCheckpointer(
                path, lambda: cast(Connection, _connect(path, sync, cache_mib))
            )
        except BaseException:
            owner.release()  # whatever failed on the way, the lock is not left held by a store never made
            raise
        # One process owns the file, so it is the only replica.
        store = cls(writer, [reader], LocalCluster(), _DIALECT)
        store._checkpointer = checkpointer
        store._file_lock = owner
        return store

    _checkpointer: WalCheckpointer | None = None
    _file_lock: OwnerLock | None = None

    async def close(self) -> None:
        """Finish queued writes, close the connections, then the WAL index the checkpointer reads."""
        await super().close()
        if self._checkpointer is not None:
            self._checkpointer.close()
        if self._file_lock is not None:
            self._file_lock.release()


class WalCheckpointer:
    """Checkpoints the WAL between the writer's batches, never inside a commit.

    Once the writer finds itself idle with CHECKPOINT_IDLE_FRAMES to copy, a thread of its own copies them
    on its own connection while the writer goes on: a checkpoint (pages copied, the database file
    fsynced) took ~4 ms, and a write arriving meanwhile waited for it behind the writer; at half load that
    was ~2% of the writer's time, enough to set a step's p99. A checkpoint that nothing overtook copies
    every frame, and the writer's next transaction starts the WAL over (which keeps the file's blocks in
    place: an fsync of overwritten blocks is cheaper than one that grows the file).

    Under a load that never pauses, commits overtake every checkpoint beside them, and the WAL would only
    grow: past CHECKPOINT_BUSY_FRAMES the writer checkpoints itself, between batches, as no commit can
    overtake it there.

    `connect` opens the connection the idle checkpoints run on (without it, they run on the writer's).
    """

    def __init__(self, path: Path, connect: Callable[[], Connection] | None = None) -> None:
        self._index = Path(f"{path}-shm")
        self._fd: int | None = None
        self._connect = connect
        self._wanted = threading.Event()  # an idle checkpoint is asked for
        self._closing = False
        self._beside: threading.Thread | None = None

    def __call__(self, conn: Connection, busy: bool) -> None:
        """Checkpoint if enough frames wait to be copied: beside the writer once it is idle, on the
        writer's thread once the WAL is long."""
        backlog = self.backlog()
        if backlog >= CHECKPOINT_BUSY_FRAMES:
            _checkpoint(conn)
        elif backlog >= CHECKPOINT_IDLE_FRAMES and not busy:
            if self._connect is None:
                _checkpoint(conn)
            else:
                self._ask_beside()

    def _ask_beside(self) -> None:
        if self._beside is None:
            self._beside = threading.Thread(target=self._run_beside, name="wal-checkpoint", daemon=True)
            self._beside.start()
        self._wanted.set()

    def _run_beside(self) -> None:
        assert self._connect is not None
        conn = self._connect()
        try:
            while True:
                self._wanted.wait()
                self._wanted.clear()
                if self._closing:
                    return
                try:
                    _checkpoint(conn)
                except sqlite3.Error:
                    # The writer checkpoints itself once the WAL is long; the next idle moment tries again.
                    logger.exception("a WAL checkpoint beside the writer failed")
        finally:
            conn.close()

    def backlog(self) -> int:
        """WAL frames not yet copied into the database, read from the WAL index (its -shm file).

        The index header's mxFrame (offset 16) and the checkpoint record's nBackfill (offset 96) are
        32-bit integers in native byte order (sqlite.org/walformat.html); reading them costs a pread,
        where asking SQLite would take a checkpoint.
        """
        if self._fd is None:
            try:
                self._fd = os.open(self._index, os.O_RDONLY)
            except OSError:
                # The connection in WAL mode made the index when it opened; unreadable, checkpoint anyway
                # (slower, never unbounded).
                return CHECKPOINT_BUSY_FRAMES
        header = os.pread(self._fd, 100, 0)
        if len(header) < 100:
            return CHECKPOINT_BUSY_FRAMES
        frames = int.from_bytes(header[16:20], sys.byteorder)
        backfilled = int.from_bytes(header[96:100], sys.byteorder)
        return max(frames - backfilled, 0)

    def close(self) -> None:
        """Stop the checkpoints beside the writer (letting one under way finish); release the index file."""
        beside, self._beside = self._beside, None
        if beside is not None:
            self._closing = True
            self._wanted.set()
            beside.join()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _checkpoint(conn: Connection) -> None:
    """Copy what the WAL holds into the database. PASSIVE: never waits for a reader (or another
    checkpoint); frames still in use are copied next time."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _total_changes(conn: Connection) -> int:
    """Rows inserted, updated or deleted on the connection since it opened: moves whenever a statement
    changed something, which tells the writer whether a failed work left anything to undo."""
    return cast(sqlite3.Connection, conn).total_changes
