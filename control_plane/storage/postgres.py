"""PostgreSQL store: the same SQL and schema as SQLite, shared by several replicas of the control plane."""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import psycopg
from psycopg import errors

from control_plane.storage.cluster import APPLICATION_PREFIX, PostgresCluster
from control_plane.storage.connection import Connection, PostgresConnection
from control_plane.storage.sql_store import Dialect, SqlStore, migrate
from control_plane.storage.writer import Writer

logger = logging.getLogger(__name__)

_BEGIN = "BEGIN"
# Several replicas may start at once: one migrates while the others wait on this advisory lock.
_MIGRATION_LOCK = 0x686D73  # "hms"
_DIALECT = Dialect(
    lock_row=" FOR UPDATE",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    read_ahead=True,
    live_replicas=(
        f"SELECT substr(application_name, {len(APPLICATION_PREFIX) + 1}) FROM pg_stat_activity "
        f"WHERE application_name LIKE '{APPLICATION_PREFIX}%'"
    ),
)
# Reads (process status, history, listings) run concurrently on this many connections.
_READERS = 4
# What a transaction may hit when replicas touch the same rows at once; running it again is correct.
_RACES = (errors.DeadlockDetected, errors.SerializationFailure, errors.UniqueViolation)


class PostgresStore(SqlStore):
    """One writer connection with group commit, one reader connection, and a listener for the replicas."""

    @classmethod
    async def open(cls, url: str) -> PostgresStore:
        """Connect (raises psycopg.OperationalError with the server's reason), migrate, start listening."""
        loop = asyncio.get_running_loop()
        return await asyncio.to_thread(cls._open_sync, url, loop)

    @classmethod
    def _open_sync(cls, url: str, loop: asyncio.AbstractEventLoop) -> PostgresStore:
        def connect() -> PostgresConnection:
            return PostgresConnection(psycopg.connect(url, autocommit=True, connect_timeout=5))

        def connect_writer() -> PostgresConnection:
            # The writer prepares what it runs often (psycopg's default threshold): parsing and planning
            # each statement again was a third of the server's CPU per step. psycopg records a statement
            # as prepared when it sends it in a pipeline, before the server has run it, so after an
            # error the writer rolls back with the connection's rollback() (which deallocates them all)
            # and runs the batch again without preparing (see Writer._transaction).
            return PostgresConnection(psycopg.connect(url, autocommit=True, connect_timeout=5))

        opened: list[PostgresConnection] = []
        try:
            writer = connect_writer()
            opened.append(writer)
            writer.execute("SELECT pg_advisory_lock(?)", (_MIGRATION_LOCK,))
            try:
                migrate(writer, "postgres", _BEGIN)
            finally:
                writer.execute("SELECT pg_advisory_unlock(?)", (_MIGRATION_LOCK,))
            for _ in range(_READERS):
                opened.append(connect())
            cluster = PostgresCluster(url, loop)
        except BaseException:
            for conn in opened:
                conn.close()
            raise
        return cls(
            Writer(
                writer,
                _BEGIN,
                notify_sql="SELECT pg_notify(?, ?)",
                pipeline=True,
                database_error=psycopg.Error,
                reconnect=connect_writer,
                changes=_writes,
            ),
            list[Connection](opened[1:]),
            cluster,
            _DIALECT,
            reconnect=connect,
        )

    def retryable(self, exc: BaseException) -> bool:
        """Deadlocks and duplicate inserts between replicas: the transaction can run again."""
        return isinstance(exc, _RACES)


def _writes(conn: Connection) -> int:
    """Statements sent on the writer's connection that may have changed something (see
    PostgresConnection.writes): moves whenever a work may have written, which tells the writer whether a
    failed work left anything to undo."""
    return cast(PostgresConnection, conn).writes
