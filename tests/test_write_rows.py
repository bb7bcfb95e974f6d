"""write_rows: every row lands, in as few statements as the chunking promises, on a real SQLite."""

from __future__ import annotations

import sqlite3

import pytest

from control_plane.storage.connection import write_rows

INSERT = "INSERT INTO t (a, b) VALUES "


def inserted(rows: int) -> tuple[list[tuple[int, int]], list[int]]:
    """The table after write_rows of `rows` rows, and the row count of each statement it ran."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (a INTEGER, b INTEGER)")
    statements: list[int] = []
    conn.set_trace_callback(lambda sql: statements.append(sql.count("),") + 1))
    write_rows(conn, INSERT, [value for n in range(rows) for value in (n, -n)], 2)
    conn.set_trace_callback(None)
    return conn.execute("SELECT a, b FROM t ORDER BY a").fetchall(), statements


@pytest.mark.parametrize("rows", [1, 2, 3, 5, 15])
def test_a_small_write_is_one_statement(rows: int) -> None:
    # A transition's 2-3 history rows or 1-2 messages: one bind and step each, not one per power of two.
    table, statements = inserted(rows)
    assert table == [(n, -n) for n in range(rows)]
    assert statements == [rows]


@pytest.mark.parametrize(
    ("rows", "chunks"),
    [(16, [16]), (17, [16, 1]), (31, [16, 15]), (40, [32, 8]), (129, [128, 1]), (300, [128, 128, 32, 12])],
)
def test_a_large_write_goes_in_powers_of_two_then_the_rest_at_once(rows: int, chunks: list[int]) -> None:
    table, statements = inserted(rows)
    assert table == [(n, -n) for n in range(rows)]
    assert statements == chunks
