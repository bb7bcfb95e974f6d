"""PostgreSQL's connection adapter: statements whose rows nobody reads share one cursor; deferred writes."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from control_plane.storage.connection import KeyedWrites, PostgresConnection

pytestmark = pytest.mark.postgres


@pytest.fixture
def conn(postgres_url: str) -> Iterator[PostgresConnection]:
    connection = PostgresConnection(psycopg.connect(postgres_url, autocommit=True))
    connection.execute("CREATE TEMP TABLE t (k INTEGER PRIMARY KEY)")
    yield connection
    connection.close()


def test_a_write_tells_its_row_count_pipelined_or_not(conn: PostgresConnection) -> None:
    conn.execute("INSERT INTO t (k) VALUES (1), (2), (3)")
    assert conn.execute("DELETE FROM t WHERE k < ?", (3,)).rowcount == 2
    with conn.pipelined():
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t (k) VALUES (?)", [(4,), (5,)])
        assert conn.execute("UPDATE t SET k = k + 10 WHERE k > ?", (3,)).rowcount == 2
        conn.execute("COMMIT")
    assert [k for (k,) in conn.execute("SELECT k FROM t ORDER BY k")] == [3, 14, 15]


def test_a_row_count_read_after_the_next_statement_is_refused(conn: PostgresConnection) -> None:
    # Both statements ran on the shared cursor, which now holds the second one's count (0), not the first's.
    first = conn.execute("INSERT INTO t (k) VALUES (1)")
    conn.execute("DELETE FROM t WHERE k = ?", (2,))
    with pytest.raises(RuntimeError, match="after another statement"):
        first.rowcount  # noqa: B018


def test_only_statements_that_may_change_something_count_as_writes(conn: PostgresConnection) -> None:
    conn.execute("INSERT INTO t (k) VALUES (1)")
    before = conn.writes
    conn.execute("SELECT k FROM t WHERE k = ? FOR UPDATE", (1,)).fetchall()
    assert conn.writes == before
    conn.execute("UPDATE t SET k = 2 RETURNING k").fetchall()
    conn.executemany("DELETE FROM t WHERE k = ?", [(2,)])
    assert conn.writes == before + 2


# Rows deferred by the connection (see PostgresConnection.defer_rows and defer_keyed).
_INSERT = "INSERT INTO t (k) VALUES "
_DELETE_PAIRS = "DELETE FROM c WHERE (a, b) IN (SELECT * FROM unnest(?::text[], ?::text[]))"
_KEYED = KeyedWrites(
    "INSERT INTO d (k, v) VALUES ",
    " ON CONFLICT (k) DO UPDATE SET v = excluded.v",
    2,
    "DELETE FROM d WHERE k = ANY(?)",
)


@pytest.fixture
def keyed(conn: PostgresConnection) -> PostgresConnection:
    conn.execute("CREATE TEMP TABLE d (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    return conn


def _rows(conn: PostgresConnection, table: str) -> list[tuple[object, ...]]:
    return [tuple(row) for row in conn.execute(f"SELECT * FROM {table} ORDER BY k")]


def test_deferred_rows_go_in_one_statement_at_the_commit(keyed: PostgresConnection) -> None:
    with keyed.pipelined():
        keyed.execute("BEGIN")
        keyed.defer_rows(_INSERT, [1, 2], 1)
        keyed.defer_rows(_INSERT, [3, 4], 1)
        keyed.defer_keyed(_KEYED, 1, (1, "a"))
        keyed.defer_keyed(_KEYED, 2, (2, "b"))
        sent = keyed._sent
        keyed.execute("SELECT 1").fetchall()
        keyed.execute("COMMIT")
    # One INSERT of t's four rows, one upsert of d's two (sent before the SELECT), the SELECT, COMMIT.
    assert keyed._sent - sent == 4
    assert _rows(keyed, "t") == [(1,), (2,), (3,), (4,)]
    assert _rows(keyed, "d") == [(1, "a"), (2, "b")]


def test_a_statement_naming_a_deferred_table_sees_its_rows(keyed: PostgresConnection) -> None:
    keyed.execute("BEGIN")
    keyed.defer_rows(_INSERT, [1, 2], 1)
    assert keyed.execute("DELETE FROM t WHERE k = ?", (1,)).rowcount == 1
    keyed.defer_keyed(_KEYED, 5, (5, "x"))
    keyed.execute("UPDATE d SET v = 'y'")
    keyed.execute("COMMIT")
    assert _rows(keyed, "t") == [(2,)]
    assert _rows(keyed, "d") == [(5, "y")]


def test_the_last_write_of_a_key_wins(keyed: PostgresConnection) -> None:
    keyed.execute("INSERT INTO d (k, v) VALUES (1, 'old'), (2, 'old'), (3, 'old')")
    keyed.execute("BEGIN")
    keyed.defer_keyed(_KEYED, 1, None)
    keyed.defer_keyed(_KEYED, 1, (1, "again"))  # deleted, then written: written
    keyed.defer_keyed(_KEYED, 2, (2, "new"))
    keyed.defer_keyed(_KEYED, 2, None)  # written, then deleted: gone
    keyed.defer_keyed(_KEYED, 4, (4, "first"))
    keyed.defer_keyed(_KEYED, 4, (4, "second"))
    keyed.execute("COMMIT")
    assert _rows(keyed, "d") == [(1, "again"), (3, "old"), (4, "second")]


def test_a_rollback_forgets_deferred_rows(keyed: PostgresConnection) -> None:
    keyed.execute("BEGIN")
    keyed.defer_rows(_INSERT, [1], 1)
    keyed.execute("SAVEPOINT item")  # sends the rows deferred before it
    keyed.defer_rows(_INSERT, [2], 1)
    keyed.defer_keyed(_KEYED, 1, (1, "a"))
    keyed.execute("ROLLBACK TO item")
    keyed.execute("RELEASE item")
    keyed.execute("COMMIT")
    keyed.execute("BEGIN")
    keyed.defer_rows(_INSERT, [3], 1)
    keyed.rollback()
    assert _rows(keyed, "t") == [(1,)]
    assert _rows(keyed, "d") == []


def test_deferring_counts_as_a_write(conn: PostgresConnection) -> None:
    before = conn.writes
    conn.defer_rows(_INSERT, [1], 1)
    conn.defer_keyed(_KEYED, 1, None)
    assert conn.writes == before + 2
    conn.rollback()


def test_keys_of_several_columns_are_deleted_together(conn: PostgresConnection) -> None:
    conn.execute("CREATE TEMP TABLE c (a TEXT, b TEXT, PRIMARY KEY (a, b))")
    conn.execute("INSERT INTO c (a, b) VALUES ('p', 'x'), ('p', 'y'), ('q', 'x')")
    pairs = KeyedWrites("INSERT INTO c (a, b) VALUES ", "", 2, _DELETE_PAIRS)
    conn.execute("BEGIN")
    conn.defer_keyed(pairs, ("p", "x"), None)
    conn.defer_keyed(pairs, ("q", "x"), None)
    conn.execute("COMMIT")
    assert [tuple(row) for row in conn.execute("SELECT a, b FROM c")] == [("p", "y")]


def test_rows_left_unsent_by_a_transaction_that_did_not_commit_are_not_sent_by_the_next(
    conn: PostgresConnection,
) -> None:
    conn.execute("BEGIN")
    conn.defer_rows(_INSERT, [1], 1)
    conn.execute("BEGIN")  # (a warning only: a transaction is in progress) the deferred row is gone
    conn.execute("COMMIT")
    assert _rows(conn, "t") == []
