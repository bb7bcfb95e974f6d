"""The embedded store's writer: a batch's works on the event loop, its COMMIT on a thread, slow works off the
loop entirely, nothing queued lost at close, and a failed COMMIT charged to its batch alone."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from control_plane.storage import loop_writer
from control_plane.storage.connection import Connection
from control_plane.storage.loop_writer import LoopWriter
from tests.writer_support import Blocked, after_started


class Recorded:
    """A connection that records each statement with the thread that ran it, and can fail COMMITs."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.statements: list[tuple[str, int]] = []
        self.failing_commits = 0

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        self.statements.append((sql, threading.get_ident()))
        if sql == "COMMIT" and self.failing_commits:
            self.failing_commits -= 1
            raise sqlite3.OperationalError("disk I/O error")
        return self.conn.execute(sql, parameters)

    def close(self) -> None:
        self.conn.close()

    @property
    def total_changes(self) -> int:
        return self.conn.total_changes


def _changes(conn: Connection) -> int:
    return cast(Recorded, conn).total_changes


@pytest.fixture
async def recorded(tmp_path: Path) -> AsyncIterator[tuple[LoopWriter, Recorded]]:
    conn = Recorded(sqlite3.connect(tmp_path / "w.db", isolation_level=None, check_same_thread=False))
    conn.conn.execute("PRAGMA journal_mode=WAL")
    conn.conn.execute("CREATE TABLE t (name TEXT PRIMARY KEY)")
    writer = LoopWriter(
        cast(Connection, conn), "BEGIN IMMEDIATE", changes=_changes, database_error=sqlite3.Error
    )
    try:
        yield writer, conn
    finally:
        await writer.aclose()


def insert(name: str) -> Any:
    def work(conn: Any) -> str:
        conn.execute("INSERT INTO t (name) VALUES (?)", (name,))
        return name

    return work


async def names(writer: LoopWriter) -> list[str]:
    rows = await writer.submit(lambda conn: conn.execute("SELECT name FROM t ORDER BY name").fetchall())
    return [name for (name,) in rows]


async def test_the_works_run_on_the_loop_and_the_commit_on_the_thread(
    recorded: tuple[LoopWriter, Recorded],
) -> None:
    writer, conn = recorded
    here = threading.get_ident()
    async with asyncio.timeout(10):
        assert list(await asyncio.gather(writer.submit(insert("a")), writer.submit(insert("b")))) == [
            "a",
            "b",
        ]
    ran = conn.statements
    assert [sql for sql, _ in ran] == ["BEGIN IMMEDIATE", *["INSERT INTO t (name) VALUES (?)"] * 2, "COMMIT"]
    assert [thread == here for _, thread in ran] == [True, True, True, False]  # one batch, one commit


async def test_a_slow_work_runs_its_whole_batch_off_the_loop(recorded: tuple[LoopWriter, Recorded]) -> None:
    writer, conn = recorded
    here = threading.get_ident()
    async with asyncio.timeout(10):
        assert await writer.submit(insert("sweep"), slow=True) == "sweep"
    assert [sql for sql, _ in conn.statements] == [
        "BEGIN IMMEDIATE",
        "INSERT INTO t (name) VALUES (?)",
        "COMMIT",
    ]
    assert all(thread != here for _, thread in conn.statements)


async def test_a_long_batch_lets_the_loop_serve_between_its_works(
    recorded: tuple[LoopWriter, Recorded], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Works share a commit, and the loop runs what else is ready between slices of them."""
    monkeypatch.setattr(loop_writer, "SLICE_S", 0.0)  # a slice of one work
    writer, conn = recorded
    order: list[str] = []
    loop = asyncio.get_running_loop()

    def step(name: str) -> Any:
        def work(conn: Any) -> str:
            order.append(name)
            loop.call_soon(order.append, f"loop after {name}")  # ready while the batch is under way
            return name

        return work

    gate = Blocked()
    held = asyncio.ensure_future(writer.submit(gate, slow=True))
    async with asyncio.timeout(10):
        await asyncio.to_thread(gate.entered.wait, 10)
        callers = [asyncio.ensure_future(writer.submit(step(name))) for name in ("w1", "w2", "w3")]
        await asyncio.ensure_future(after_started())
        assert writer.pending == 4
        gate.release.set()
        await held
        assert await asyncio.gather(*callers) == ["w1", "w2", "w3"]

    assert order[:5] == ["w1", "loop after w1", "w2", "loop after w2", "w3"]
    assert [sql for sql, _ in conn.statements].count("COMMIT") == 2  # the gate's, then one for the three


async def test_closing_commits_what_is_queued(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("CREATE TABLE t (name TEXT PRIMARY KEY)")
    writer = LoopWriter(
        cast(Connection, conn), "BEGIN IMMEDIATE", changes=lambda c: cast(sqlite3.Connection, c).total_changes
    )
    callers = [asyncio.ensure_future(writer.submit(insert(f"n{n}"))) for n in range(50)]
    await asyncio.ensure_future(after_started())
    async with asyncio.timeout(10):
        await writer.aclose()
        assert len(await asyncio.gather(*callers)) == 50

    check = sqlite3.connect(path)
    try:
        assert check.execute("SELECT count(*) FROM t").fetchone() == (50,)
    finally:
        check.close()


async def test_a_failed_commit_fails_its_batch_and_the_next_one_goes_on(
    recorded: tuple[LoopWriter, Recorded],
) -> None:
    writer, conn = recorded
    conn.failing_commits = 1
    async with asyncio.timeout(10):
        with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
            await writer.submit(insert("lost"))
        assert await writer.submit(insert("kept")) == "kept"
        assert await names(writer) == ["kept"]
    assert writer.pending == 0
