"""What follows a write's commit in memory happens even when its caller stopped waiting for it: with the
writer's work on its thread (Writer, PostgreSQL) or on the event loop (LoopWriter, SQLite)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any, cast

import pytest

from control_plane.storage.connection import Connection
from control_plane.storage.loop_writer import LoopWriter
from control_plane.storage.writer import Writer


@pytest.fixture(params=["thread", "loop"])
def writer(request: pytest.FixtureRequest, tmp_path: Path) -> Writer:
    conn = cast(Connection, sqlite3.connect(tmp_path / "w.db", isolation_level=None, check_same_thread=False))
    if request.param == "loop":
        return LoopWriter(
            conn, "BEGIN IMMEDIATE", changes=lambda c: cast(sqlite3.Connection, c).total_changes
        )
    return Writer(conn, "BEGIN IMMEDIATE")


class Held:
    """Write work that waits, on the writer's thread, until released: its caller can give up meanwhile."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, conn: Any) -> str:
        self.entered.set()
        self.release.wait(30)
        conn.execute("CREATE TABLE t (x INTEGER)")
        return "committed"


async def test_follow_is_told_of_the_commit_of_a_caller_that_gave_up(writer: Writer) -> None:
    followed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    try:
        held = Held()
        caller = asyncio.ensure_future(writer.submit(held, followed.set_result, slow=True))
        await asyncio.to_thread(held.entered.wait, 10)
        caller.cancel()
        held.release.set()

        async with asyncio.timeout(10):
            assert await followed == "committed"
        assert caller.cancelled()
        assert writer.pending == 0
    finally:
        await writer.aclose()


async def test_follow_is_not_called_for_work_that_failed(writer: Writer) -> None:
    followed: list[object] = []

    def failing(conn: Any) -> None:
        raise ValueError("refused")

    try:
        async with asyncio.timeout(10):
            with pytest.raises(ValueError):
                await writer.submit(failing, followed.append)
            assert await writer.submit(lambda c: 1, followed.append) == 1
        assert followed == [1]
    finally:
        await writer.aclose()
