"""The DB-API surface the shared SQL needs, and an adapter that lets PostgreSQL run it unchanged."""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
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
        # The statements that send deferred rows, on a cursor taking PostgreSQL's own placeholders ($1):
        # psycopg parses a statement's %s placeholders again on every run once it has more than 50
        # parameters (it caches only smaller ones), which cost a quarter of the writer thread's time.
        from psycopg import RawCursor  # (only here: the shared SQL's modules need no psycopg to import)

        self._raw = RawCursor(conn)
        # Statements sent so far, and how many of them may have changed something (not a plain SELECT):
        # a silent statement's row count is its cursor's only until the next statement is sent.
        self._sent = 0
        self.writes = 0
        # Values this transaction has written and nobody else can change before it ends (a counter row
        # it updated stays locked by it), by name: what the SQL may use instead of asking the server
        # again, which in a pipeline costs a round trip. Forgotten whenever work may have been undone.
        self.known: dict[str, int] = {}
        # Rows appended to tables (history, Bus messages) and not sent yet, by INSERT text: see defer_rows.
        self._deferred: dict[str, _Deferred] = {}
        # Rows written or deleted by key (task attempts, process rows) and not sent yet: see defer_keyed.
        self._keyed: dict[KeyedWrites, _Keyed] = {}
        # The tables those rows (and their leads' counters) go to, empty while nothing is deferred: a
        # statement naming one sends them first.
        self._deferred_tables: tuple[str, ...] = ()

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

    def defer_rows(
        self, insert: str, values: list[Any], width: int, lead: tuple[str, list[Any]] | None = None
    ) -> None:
        """Append rows (as `write_rows` would) later in the transaction, with the other rows of `insert`.

        Statements per transition are what the writer's thread spends most on (psycopg's Python per
        statement, a pipelined round trip's share): a commit's transitions each appended history rows
        and Bus messages in statements of their own. The rows are sent before the next statement that
        could see or undo them: one that names their table (or the counter their `lead` moves on), one
        that returns rows, COMMIT, SAVEPOINT or RELEASE (so a careful run's savepoint covers its own);
        a rollback forgets them. `lead`'s one parameter is a count: the leads of a table's rows add up.
        """
        self.writes += 1
        pending = self._deferred.get(insert)
        if pending is None:
            pending = self._deferred[insert] = _Deferred(width)
            self._deferred_tables += _tables_of(insert)
        pending.values += values
        if lead is not None:
            if pending.lead and pending.lead != lead[0]:
                raise ValueError(f"rows of one INSERT deferred with two leads: {pending.lead!r}, {lead[0]!r}")
            (count,) = lead[1]
            if not pending.lead:
                pending.lead = lead[0]
                self._deferred_tables += _tables_of(lead[0])
            pending.lead_count += int(count)

    def defer_keyed(self, writes: KeyedWrites, key: Any, row: Sequence[Any] | None) -> None:
        """Write `row` (or, if None, delete the row) of `key` later in the transaction, as `writes` says.

        As `defer_rows`, for rows a transition rewrites or deletes (its process row, its task attempts):
        the commit sends one statement per kind of write, not one per transition. Only the last write
        of a key counts; deletions run before the rows are written, so a key deleted and written again
        ends written, as it would have been.
        """
        self.writes += 1
        pending = self._keyed.get(writes)
        if pending is None:
            pending = self._keyed[writes] = _Keyed()
            self._deferred_tables += _tables_of(writes.write) + _tables_of(writes.delete)
        if row is None:
            pending.rows.pop(key, None)
            pending.deleted.add(key)
        else:
            pending.rows[key] = row

    def _send_deferred(self) -> None:
        """Send the rows deferred so far (see defer_rows, defer_keyed): appended rows first, so that a
        row inserted in the transaction is there for its later rewrite."""
        deferred, keyed = self._deferred, self._keyed
        self._forget_deferred()
        for insert, pending in deferred.items():
            lead = (pending.lead, [pending.lead_count]) if pending.lead else None
            self._send_rows(insert, pending.values, pending.width, lead)
        for writes, changes in keyed.items():
            # In key order, as replicas writing the same rows at once must lock them.
            if changes.deleted:
                self.execute(writes.delete, _key_arrays(sorted(changes.deleted)))
            if changes.rows:
                values = [value for _, row in sorted(changes.rows.items()) for value in row]
                self._send_rows(writes.write, values, writes.width, suffix=writes.suffix)

    def _send_rows(
        self,
        insert: str,
        values: list[Any],
        width: int,
        lead: tuple[str, list[Any]] | None = None,
        *,
        suffix: str = "",
    ) -> None:
        """`write_rows`, on the cursor that takes numbered placeholders."""
        for text, parameters in _chunks(insert, values, width, lead, suffix):
            self._sent += 1
            self.writes += 1
            self._raw.execute(_numbered(text), parameters)

    def _forget_deferred(self) -> None:
        """Drop the deferred writes (a rollback undid the work that made them)."""
        self._deferred, self._deferred_tables, self._keyed = {}, (), {}

    def _before(self, sql: str, kind: _Kind) -> None:
        """What the deferred rows need before `sql` runs: sent first, or forgotten by a rollback."""
        if sql.startswith(_UNDOES):
            self._forget_deferred()
        elif (
            kind is not _Kind.SILENT or sql.startswith(_SENDS) or any(t in sql for t in self._deferred_tables)
        ):
            self._send_deferred()

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        """Run one statement."""
        if self.known and sql.startswith(_TRANSACTION_ENDS):
            # A rollback (to a savepoint, too) undoes the writes and releases their row locks.
            self.known.clear()
        text, kind = _translated(sql)
        if self._deferred_tables:  # something is deferred
            self._before(sql, kind)
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
        if self._deferred_tables:  # something is deferred
            self._before(sql, kind)
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
        self._forget_deferred()
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
# Statements before which deferred rows are sent whatever they name, or forgotten (see defer_rows): a
# BEGIN too, as what was deferred and not sent by then belongs to a transaction that did not commit.
_SENDS = ("COMMIT", "SAVEPOINT", "RELEASE")
_UNDOES = ("ROLLBACK", "BEGIN")
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


class _Deferred:
    """Rows of one INSERT deferred in a transaction (see PostgresConnection.defer_rows)."""

    __slots__ = ("lead", "lead_count", "values", "width")

    def __init__(self, width: int) -> None:
        self.width = width
        self.values: list[Any] = []
        self.lead = ""
        self.lead_count = 0


@dataclass(frozen=True, slots=True)
class KeyedWrites:
    """How a connection that defers them (see PostgresConnection.defer_keyed) writes rows by key in bulk.

    `write` + rows of `width` parameters + `suffix` writes them (an upsert, or an UPDATE ... FROM
    (VALUES ...)); `delete`, with an array of the keys (one per column of tuple keys), deletes them.
    """

    write: str
    suffix: str
    width: int
    delete: str = ""


class _Keyed:
    """Writes by key deferred in a transaction: the last row written of each key, the keys deleted."""

    __slots__ = ("deleted", "rows")

    def __init__(self) -> None:
        self.rows: dict[Any, Sequence[Any]] = {}
        self.deleted: set[Any] = set()


def _key_arrays(keys: list[Any]) -> list[list[Any]]:
    """The parameters of a keyed deletion: an array of the keys, or of each column of composite keys."""
    if keys and isinstance(keys[0], tuple):
        return [list(column) for column in zip(*keys, strict=True)]
    return [keys]


# Table names follow these words in the shared SQL (lower case, unlike the keywords: not `DO UPDATE SET`).
_TABLE = re.compile(r"\b(?:INTO|UPDATE|FROM)\s+([a-z_][a-z0-9_]*)")


def _tables_of(sql: str) -> tuple[str, ...]:
    """The tables a statement names after INTO, UPDATE or FROM."""
    return tuple(_TABLE.findall(sql))


# Most rows in one INSERT: 1,024 parameters, within SQLite's and PostgreSQL's limits on any version.
_ROWS_PER_STATEMENT = 128
# Fewer rows than this go in one statement of exactly their count. A transition writes 2-3 history rows
# and 1-2 Bus messages: as powers of two, 3 rows took two statements (2 + 1), each a bind and step of
# ~15-35 us on the loop; this way every small write is one, for at most 15 more statement texts a table.
_EXACT_BELOW = 16


def write_rows(
    conn: Connection,
    insert: str,
    values: list[Any],
    width: int,
    lead: tuple[str, list[Any]] | None = None,
    *,
    suffix: str = "",
    row: str = "",
) -> None:
    """Run `insert` ("INSERT INTO t (...) VALUES ") over rows of `width` values, flattened in `values`.

    Many rows per statement rather than one per executemany step: SQLite spends about half as much CPU
    per row (one statement run instead of a reset, bind and step per row; measured 7.7 -> 3.8 us a
    128 B message on the bench machine), and PostgreSQL gets one round trip per chunk. Chunks are
    powers of two (128, 64, 32, 16 rows), then what is left (fewer than 16) in one statement, so at most
    19 statement texts exist per table, each prepared once and cached. `lead`, a WITH clause and its
    parameters, goes before the first chunk; `suffix` after the rows of each (ON CONFLICT ..., or the
    rest of an UPDATE ... FROM (VALUES). `row`: a row's text, when it is not `width` placeholders (some
    of its columns given as literals).
    """
    for text, parameters in _chunks(insert, values, width, lead, suffix, row):
        conn.execute(text, parameters)


def _chunks(
    insert: str,
    values: list[Any],
    width: int,
    lead: tuple[str, list[Any]] | None,
    suffix: str,
    row: str = "",
) -> Iterator[tuple[str, list[Any]]]:
    """The statements (with `?` placeholders) and parameters that `write_rows` runs."""
    rows = len(values) // width
    start = 0
    size = _ROWS_PER_STATEMENT
    while rows:
        if rows < _EXACT_BELOW:
            size = rows
        while size > rows:
            size //= 2
        end = start + size * width
        if lead is None:
            yield _statement(insert, width, size, suffix, row), values[start:end]
        else:
            yield _statement(lead[0] + insert, width, size, suffix, row), lead[1] + values[start:end]
            lead = None
        start, rows = end, rows - size


@functools.lru_cache(maxsize=256)
def _numbered(sql: str) -> bytes:
    """The statement with PostgreSQL's placeholders ($1, $2, ...) for `?`, encoded."""
    parts = sql.split("?")
    numbered = [parts[0]]
    for number, part in enumerate(parts[1:], start=1):
        numbered += (f"${number}", part)
    return "".join(numbered).encode()


@functools.cache
def _statement(insert: str, width: int, rows: int, suffix: str, row: str = "") -> str:
    row = row or "(" + ", ".join("?" * width) + ")"
    return insert + ", ".join([row] * rows) + suffix
