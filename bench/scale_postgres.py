"""A scratch PostgreSQL database for one scale configuration, and the server processes that serve it.

The bench creates a database of its own (`hms_bench_<random>`) on the server named by
MGMT_BENCH_POSTGRES_URL, so that every configuration starts empty and nothing is left behind: it is
dropped `WITH (FORCE)` afterwards, whatever happened. The admin connection stays open meanwhile to
answer which server processes (backends) serve the database, so that their CPU can be reported
beside the control plane's when the server runs on this machine.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

logger = logging.getLogger(__name__)

URL_ENV = "MGMT_BENCH_POSTGRES_URL"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_CONNECT_TIMEOUT_S = 3


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL server answers at the admin URL (or it refuses us); the message says why."""


def server_of(url: str) -> str:
    """`host:port` of a URL, for logs and the setup line (never the password)."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` instead (query parameters such as sslmode kept)."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _is_local_backend(pid: int) -> bool:
    """Whether `pid` is a PostgreSQL process in this machine's /proc (not a remote or containerised one)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "postgres"
    except OSError:
        return False


@dataclass(frozen=True, slots=True)
class ScratchDatabase:
    """A database created for one configuration: its URL, its name and the admin connection that made it."""

    url: str
    name: str
    admin: psycopg.AsyncConnection[TupleRow]

    async def backend_pids(self) -> list[int]:
        """The pids of the local server processes connected to this database (empty for a remote server)."""
        cursor = await self.admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s ORDER BY pid", (self.name,)
        )
        return [pid for (pid,) in await cursor.fetchall() if _is_local_backend(pid)]


@asynccontextmanager
async def scratch_database(admin_url: str) -> AsyncIterator[ScratchDatabase]:
    """A fresh, empty database on the server of `admin_url`, dropped when the block exits."""
    try:
        admin: psycopg.AsyncConnection[TupleRow] = await psycopg.AsyncConnection.connect(
            admin_url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S
        )
    except psycopg.OperationalError as exc:
        # The first line names the cause ("... failed: Connection refused"); the rest is advice.
        lines = str(exc).strip().splitlines()
        reason = lines[0] if lines else type(exc).__name__
        raise PostgresUnavailableError(f"PostgreSQL not reachable: {reason}") from exc
    async with admin:
        name = f"hms_bench_{uuid.uuid4().hex[:12]}"
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        logger.info("created database %s on %s", name, server_of(admin_url))
        try:
            yield ScratchDatabase(with_database(admin_url, name), name, admin)
        finally:
            # FORCE: a replica that did not stop in time must not keep the database alive.
            await admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            logger.info("dropped database %s", name)
