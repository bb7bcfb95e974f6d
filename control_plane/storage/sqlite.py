"""SQLite store (the embedded default): one file in WAL mode under the data directory."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path
from typing import cast
from urllib.parse import parse_qs, urlparse

from control_plane.storage.cluster import LocalCluster
from control_plane.storage.connection import Connection
from control_plane.storage.sql_store import Dialect, SqlStore, migrate
from control_plane.storage.writer import Writer

# BEGIN IMMEDIATE takes the write lock at once, so a transaction never fails half-way on a busy lock.
_BEGIN = "BEGIN IMMEDIATE"


_SYNC_MODES = ("full", "normal")
_DIALECT = Dialect()
# Page cache per connection (the writer's and the reader's), MiB: the indexes of a busy log stay in memory.
_CACHE_MIB = 64
# WAL frames not yet copied into the database after which the writer checkpoints once no write is waiting
# (SQLite's own autocheckpoint threshold), and after which it checkpoints between batches regardless, so
# that the WAL stays bounded under a load that never pauses (8,000 frames: 32 MiB of 4 KiB pages).
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


class SqliteStore(SqlStore):
    """The embedded store: writes grouped into shared, fsynced commits by one writer thread."""

    @classmethod
    async def open(cls, url: str) -> SqliteStore:
        """Open (creating and migrating if needed) the database named by `url`."""
        path, sync, cache_mib = _parse_url(url)
        return await asyncio.to_thread(cls._open_sync, path, sync, cache_mib)

    @classmethod
    def _open_sync(cls, path: Path, sync: str, cache_mib: int) -> SqliteStore:
        path.parent.mkdir(parents=True, exist_ok=True)
        # sqlite3's typeshed signatures are narrower than the shared Protocol's `Any` parameters; the
        # connection does accept everything the shared SQL passes.
        conn = cast(Connection, _connect(path, sync, cache_mib, writer=True))
        migrate(conn, "sqlite", _BEGIN)
        reader = cast(Connection, _connect(path, sync, cache_mib))
        writer = Writer(conn, _BEGIN)
        checkpointer = writer.between_batches = WalCheckpointer(path)
        # One process owns the file, so it is the only replica.
        store = cls(writer, [reader], LocalCluster(), _DIALECT)
        store._checkpointer = checkpointer
        return store

    _checkpointer: WalCheckpointer | None = None

    async def close(self) -> None:
        """Finish queued writes, close the connections, then the WAL index the checkpointer reads."""
        await super().close()
        if self._checkpointer is not None:
            self._checkpointer.close()


class WalCheckpointer:
    """Checkpoints the WAL on the writer's thread between batches, never inside a commit.

    Run by the writer itself, a checkpoint has no concurrent writer to race, so it copies every frame and
    the next transaction starts the WAL over (which keeps the file's blocks in place: an fsync of
    overwritten blocks is cheaper than one that grows the file). It waits for the writer's idle time,
    unless the WAL has grown past CHECKPOINT_BUSY_FRAMES.
    """

    def __init__(self, path: Path) -> None:
        self._index = Path(f"{path}-shm")
        self._fd: int | None = None

    def __call__(self, conn: Connection, busy: bool) -> None:
        """Checkpoint if enough frames wait to be copied (more if writes are waiting)."""
        backlog = self.backlog()
        if backlog >= (CHECKPOINT_BUSY_FRAMES if busy else CHECKPOINT_IDLE_FRAMES):
            # PASSIVE: never waits for the reader; frames a read still uses are copied next time.
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

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
        """Release the index file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
