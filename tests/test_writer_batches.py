"""How the embedded store's writer shares a commit among callers: each caller's work runs without a savepoint
of its own, and a batch runs again with savepoints only when a failed work left something to undo."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from control_plane.storage import open_store
from control_plane.storage.sqlite import SqliteStore
from control_plane.storage.writer import Writer
from tests.writer_support import Blocked, after_started


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[Writer]:
    """The writer of an embedded store (configured as the control plane configures it), with a scratch table."""
    store = await open_store(f"sqlite:///{tmp_path / 'w.db'}")
    assert isinstance(store, SqliteStore)
    writer: Writer = store._writer
    await writer.submit(lambda conn: conn.execute("CREATE TABLE t (name TEXT PRIMARY KEY)"))
    try:
        yield writer
    finally:
        await store.close()


async def one_batch(writer: Writer, works: list[Callable[[Any], Any]]) -> list[Any]:
    """Submit `works` while the writer is held, so that they share one transaction; their outcomes."""
    gate = Blocked()
    held = asyncio.ensure_future(writer.submit(gate, slow=True))
    await asyncio.to_thread(gate.entered.wait, 10)
    callers = [asyncio.ensure_future(writer.submit(work)) for work in works]
    async with asyncio.timeout(10):
        await asyncio.ensure_future(after_started())
        assert writer.pending == len(works) + 1  # every caller queued behind the gate
        gate.release.set()
        await held
        return await asyncio.gather(*callers, return_exceptions=True)


async def names(writer: Writer) -> list[str]:
    rows = await writer.submit(lambda conn: conn.execute("SELECT name FROM t ORDER BY name").fetchall())
    return [name for (name,) in rows]


async def test_a_work_that_fails_before_writing_leaves_the_batch_to_commit_once(writer: Writer) -> None:
    calls: Counter[str] = Counter()

    def insert(name: str) -> Callable[[Any], str]:
        def work(conn: Any) -> str:
            calls[name] += 1
            conn.execute("INSERT INTO t (name) VALUES (?)", (name,))
            return name

        return work

    def refuse(conn: Any) -> None:
        calls["refused"] += 1
        raise ValueError("refused before writing")

    outcomes = await one_batch(writer, [insert("a"), refuse, insert("c")])

    assert outcomes[0] == "a" and outcomes[2] == "c"
    assert isinstance(outcomes[1], ValueError)
    assert await names(writer) == ["a", "c"]
    assert calls == {"a": 1, "refused": 1, "c": 1}  # nothing to undo: no second run


async def test_a_work_that_fails_after_writing_is_undone_alone(writer: Writer) -> None:
    calls: Counter[str] = Counter()

    def insert(name: str, *, then_fail: bool = False) -> Callable[[Any], str]:
        def work(conn: Any) -> str:
            calls[name] += 1
            conn.execute("INSERT INTO t (name) VALUES (?)", (name,))
            if then_fail:
                raise ValueError("refused after writing")
            return name

        return work

    outcomes = await one_batch(writer, [insert("a"), insert("b", then_fail=True), insert("c")])

    assert outcomes[0] == "a" and outcomes[2] == "c"
    assert isinstance(outcomes[1], ValueError)
    assert await names(writer) == ["a", "c"]
    # The first run stopped at the failure and was rolled back; the batch ran again, each work under a
    # savepoint of its own, and the failed one's row went with its savepoint.
    assert calls == {"a": 2, "b": 2, "c": 1}


async def test_a_database_error_in_one_work_spares_the_others(writer: Writer) -> None:
    await writer.submit(lambda conn: conn.execute("INSERT INTO t (name) VALUES ('taken')"))

    def insert(name: str) -> Callable[[Any], str]:
        def work(conn: Any) -> str:
            conn.execute("INSERT INTO t (name) VALUES (?)", (name,))
            return name

        return work

    outcomes = await one_batch(writer, [insert("a"), insert("taken"), insert("c")])

    assert outcomes[0] == "a" and outcomes[2] == "c"
    assert "UNIQUE" in str(outcomes[1])
    assert await names(writer) == ["a", "c", "taken"]
