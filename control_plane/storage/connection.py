"""The DB-API surface the shared SQL needs, and an adapter that lets PostgreSQL run it unchanged."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol


class Cursor(Protocol):
    """What the SQL functions read from a statement."""

    @property
    def rowcount(self) -> int:
        """Rows the statement changed."""
        ...

    def fetchone(self) -> Any:
        """The next row, or None."""
        ...

    def fetchall(self) -> list[Any]:
        """Every remaining row."""
        ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """A connection in explicit-transaction mode (the writer sends BEGIN/COMMIT itself)."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor:
        """Run one statement; `?` marks parameters."""
        ...

    def executemany(self, sql: str, parameters: Any, /) -> Cursor:
        """Run one statement for each parameter row."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


class PostgresConnection:
    """A psycopg connection speaking the shared SQL: `?` placeholders become `%s`."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._pipeline: Any = None

    @contextmanager
    def pipelined(self) -> Iterator[None]:
        """Send statements without waiting for each answer; a fetch (or `sync`) waits for all before it.

        Over a network a transition's dozen statements would otherwise cost a dozen round trips.
        """
        with self._conn.pipeline() as pipeline:
            self._pipeline = pipeline
            try:
                yield
            finally:
                self._pipeline = None

    @property
    def broken(self) -> bool:
        """Whether the connection was lost (the server went away or ended the session)."""
        return bool(self._conn.broken or self._conn.closed)

    def sync(self) -> None:
        """Wait until every statement sent so far has run (raising the first error among them)."""
        if self._pipeline is not None:
            self._pipeline.sync()

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        """Run one statement."""
        cursor: Cursor = self._conn.execute(sql.replace("?", "%s"), parameters or None)
        return _Synced(cursor, self) if self._pipeline is not None else cursor

    def executemany(self, sql: str, parameters: Sequence[Sequence[Any]], /) -> Cursor:
        """Run one statement per row (psycopg pipelines them)."""
        cursor = self._conn.cursor()
        cursor.executemany(sql.replace("?", "%s"), parameters)
        result: Cursor = cursor
        return result

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


class _Synced:
    """A cursor in pipeline mode: its row count is known only once the pipeline has synced."""

    def __init__(self, cursor: Cursor, conn: PostgresConnection) -> None:
        self._cursor = cursor
        self._conn = conn

    @property
    def rowcount(self) -> int:
        self._conn.sync()
        return self._cursor.rowcount

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor)
