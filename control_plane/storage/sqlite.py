"""SQLite store (the embedded default): one file in WAL mode under the data directory."""

from __future__ import annotations

import asyncio
import sqlite3
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


def _connect(path: Path, sync: str = "full", cache_mib: int = _CACHE_MIB) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
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
        conn = cast(Connection, _connect(path, sync, cache_mib))
        migrate(conn, "sqlite", _BEGIN)
        reader = cast(Connection, _connect(path, sync, cache_mib))
        # One process owns the file, so it is the only replica.
        return cls(Writer(conn, _BEGIN), [reader], LocalCluster(), _DIALECT)
