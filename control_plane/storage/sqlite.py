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


def _parse_url(url: str) -> tuple[Path, str]:
    """(file, synchronous mode) of `sqlite:///path.db[?synchronous=full|normal]`."""
    parsed = urlparse(url)
    if parsed.scheme != "sqlite":
        raise ValueError(f"not a sqlite URL: {url!r}")
    raw = parsed.path or parsed.netloc
    if not raw:
        raise ValueError(f"sqlite URL without a path: {url!r}")
    options = parse_qs(parsed.query)
    unknown = set(options) - {"synchronous"}
    if unknown:
        raise ValueError(f"unknown sqlite URL option(s) {sorted(unknown)}; known: synchronous")
    sync = options.get("synchronous", ["full"])[-1].lower()
    if sync not in _SYNC_MODES:
        raise ValueError(f"synchronous must be one of {_SYNC_MODES}, got {sync!r}")
    return Path(raw), sync


def _connect(path: Path, sync: str = "full") -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL (default): a commit returns only after the WAL is fsynced, so an acknowledged write survives a
    # power cut. NORMAL (`?synchronous=normal`) fsyncs only at checkpoints: faster, and still safe when
    # the process crashes, but the last commits can be lost if the machine loses power.
    conn.execute(f"PRAGMA synchronous={sync.upper()}")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA cache_size=-65536")  # 64 MiB: indexes of a busy log stay in memory
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


class SqliteStore(SqlStore):
    """The embedded store: writes grouped into shared, fsynced commits by one writer thread."""

    @classmethod
    async def open(cls, url: str) -> SqliteStore:
        """Open (creating and migrating if needed) the database named by `url`."""
        path, sync = _parse_url(url)
        return await asyncio.to_thread(cls._open_sync, path, sync)

    @classmethod
    def _open_sync(cls, path: Path, sync: str) -> SqliteStore:
        path.parent.mkdir(parents=True, exist_ok=True)
        # sqlite3's typeshed signatures are narrower than the shared Protocol's `Any` parameters; the
        # connection does accept everything the shared SQL passes.
        conn = cast(Connection, _connect(path, sync))
        migrate(conn, "sqlite", _BEGIN)
        # One process owns the file, so it is the only replica.
        return cls(Writer(conn, _BEGIN), [cast(Connection, _connect(path, sync))], LocalCluster(), _DIALECT)
