"""The DB-API surface the shared SQL needs, and an adapter that lets PostgreSQL run it unchanged."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol


class Cursor(Protocol):
    """What the SQL functions read from a statement."""

    rowcount: int

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

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        """Run one statement."""
        cursor: Cursor = self._conn.execute(sql.replace("?", "%s"), parameters or None)
        return cursor

    def executemany(self, sql: str, parameters: Sequence[Sequence[Any]], /) -> Cursor:
        """Run one statement per row (psycopg pipelines them)."""
        cursor = self._conn.cursor()
        cursor.executemany(sql.replace("?", "%s"), parameters)
        result: Cursor = cursor
        return result

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()
