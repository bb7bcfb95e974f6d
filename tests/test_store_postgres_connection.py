"""PostgreSQL's connection adapter: statements whose rows nobody reads share one cursor."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from control_plane.storage.connection import PostgresConnection

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
