"""PostgreSQL store: the same SQL and schema as SQLite, for operators who outgrow one machine."""

from __future__ import annotations

import asyncio
import logging

import psycopg

from control_plane.storage.connection import PostgresConnection
from control_plane.storage.sql_store import SqlStore, Writer, migrate

logger = logging.getLogger(__name__)

_BEGIN = "BEGIN"
# Several replicas may start at once: one migrates while the others wait on this advisory lock.
_MIGRATION_LOCK = 0x686D73  # "hms"


class PostgresStore(SqlStore):
    """One writer connection with group commit, one reader connection; commits are durable when they return."""

    @classmethod
    async def open(cls, url: str) -> PostgresStore:
        """Connect (raises psycopg.OperationalError with the server's reason) and migrate."""
        return await asyncio.to_thread(cls._open_sync, url)

    @classmethod
    def _open_sync(cls, url: str) -> PostgresStore:
        writer = PostgresConnection(psycopg.connect(url, autocommit=True, connect_timeout=5))
        try:
            writer.execute("SELECT pg_advisory_lock(?)", (_MIGRATION_LOCK,))
            try:
                migrate(writer, "postgres", _BEGIN)
            finally:
                writer.execute("SELECT pg_advisory_unlock(?)", (_MIGRATION_LOCK,))
            reader = PostgresConnection(psycopg.connect(url, autocommit=True, connect_timeout=5))
        except BaseException:
            writer.close()
            raise
        return cls(Writer(writer, _BEGIN), reader)
