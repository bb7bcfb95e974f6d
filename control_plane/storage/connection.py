"""The DB-API surface the shared SQL needs, and an adapter that lets PostgreSQL run it unchanged."""

from __future__ import annotations

import enum
import functools
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
        # One cursor for every statement whose rows nobody reads (writes without RETURNING, savepoints):
        # psycopg's connection.execute() builds a cursor per statement, which cost about as much Python
        # CPU as the rest of running the statement (measured 58 -> 33 us for a trivial one, pipelined).
        self._silent = conn.cursor()
        # Statements sent so far, and how many of them may have changed something (not a plain SELECT):
        # a silent statement's row count is its cursor's only until the next statement is sent.
        self._sent = 0
        self.writes = 0
        # Values this transaction has written and nobody else can change before it ends (a counter row
        # it updated stays locked by it), by name: what the SQL may use instead of asking the server
        # again, which in a pipeline costs a round trip. Forgotten whenever work may have been undone.
        self.known: dict[str, int] = {}

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
        if self.known and sql.startswith(_TRANSACTION_ENDS):
            # A rollback (to a savepoint, too) undoes the writes and releases their row locks.
            self.known.clear()
        text, kind = _translated(sql)
        self._sent += 1
        if kind is not _Kind.READ:
            self.writes += 1
        if kind is _Kind.SILENT:
            self._silent.execute(text, parameters or None)
            return _Silent(self._silent, self, self._sent)
        cursor: Cursor = self._conn.execute(text, parameters or None)
        return _Synced(cursor, self) if self._pipeline is not None else cursor

    def executemany(self, sql: str, parameters: Sequence[Sequence[Any]], /) -> Cursor:
        """Run one statement per row (psycopg pipelines them)."""
        text, kind = _translated(sql)
        self._sent += 1
        self.writes += 1
        if kind is _Kind.SILENT:
            self._silent.executemany(text, parameters)
            return _Silent(self._silent, self, self._sent)
        cursor = self._conn.cursor()
        cursor.executemany(text, parameters)
        result: Cursor = cursor
        return result

    def _rowcount(self, cursor: Cursor, sent: int) -> int:
        """The row count of the statement `sent`-th, if it is still the last one sent on `cursor`."""
        if sent != self._sent:
            raise RuntimeError("a statement's row count was read after another statement was sent")
        self.sync()
        return cursor.rowcount

    def rollback(self) -> None:
        """Roll the transaction back, and forget every statement psycopg prepared on this connection.

        In a pipeline psycopg records a statement as prepared when it sends the request, before the
        server has run it: after an error aborted the rest of a pipeline, a statement recorded so would
        fail ("prepared statement _pg3_N does not exist") on every later use. psycopg's rollback()
        deallocates them all, here and on the server.
        """
        self.known.clear()
        self._conn.rollback()

    @contextmanager
    def unprepared(self) -> Iterator[None]:
        """Neither use nor make prepared statements meanwhile (a transaction in which errors are expected).

        A failing statement aborts the rest of its caller's work in the pipeline, preparations
        included, and the next caller in the same transaction would then use a statement that does
        not exist.
        """
        threshold = self._conn.prepare_threshold
        self._conn.prepare_threshold = None
        try:
            yield
        finally:
            self._conn.prepare_threshold = threshold

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


# Statements after which the values in `known` may no longer hold.
_TRANSACTION_ENDS = ("BEGIN", "COMMIT", "ROLLBACK")
# Statements that return no rows unless they say RETURNING.
_ROWLESS = ("INSERT", "UPDATE", "DELETE", "SAVEPOINT", "RELEASE", "BEGIN", "COMMIT", "ROLLBACK")


class _Kind(enum.Enum):
    """What a statement gives back: rows of a SELECT, which changes nothing (READ), rows of a statement
    that may change something (ROWS), or no rows, only a row count (SILENT)."""

    READ = enum.auto()
    ROWS = enum.auto()
    SILENT = enum.auto()


@functools.lru_cache(maxsize=1024)
def _translated(sql: str) -> tuple[str, _Kind]:
    """The statement with psycopg's placeholders (`%s` for `?`), and what it gives back."""
    head = sql.lstrip()[:9].upper()
    upper = sql.upper()
    if "RETURNING" not in upper and (
        head.startswith(_ROWLESS) or (head.startswith("WITH") and "SELECT" not in upper)
    ):
        kind = _Kind.SILENT  # (a WITH that selects nothing ends in a write)
    elif head.startswith("SELECT"):
        kind = _Kind.READ  # FOR UPDATE too: a lock changes nothing, and goes with the transaction
    else:
        kind = _Kind.ROWS
    return sql.replace("?", "%s"), kind


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


class _Silent:
    """A statement run on the connection's shared cursor: it has a row count (read before the next
    statement is sent) and no rows."""

    def __init__(self, cursor: Cursor, conn: PostgresConnection, sent: int) -> None:
        self._cursor = cursor
        self._conn = conn
        self._sent = sent

    @property
    def rowcount(self) -> int:
        return self._conn._rowcount(self._cursor, self._sent)

    def fetchone(self) -> Any:
        return None

    def fetchall(self) -> list[Any]:
        return []

    def __iter__(self) -> Iterator[Any]:
        return iter(())
