"""The store contract, registry part: every test runs on SQLite and on PostgreSQL (the `store` fixture).

The Bus and Workflow parts are test_store_bus.py and test_store_workflow.py.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
from pathlib import Path
from typing import Any, cast

import pytest

from control_plane.errors import Unavailable
from control_plane.models import ChangeType, Health, Instance, OutgoingMessage, ProbeSpec
from control_plane.storage import Store, StoreURLError, open_store
from control_plane.storage.connection import Connection
from control_plane.storage.migrations import migrations
from control_plane.storage.sqlite import CHECKPOINT_BUSY_FRAMES, WalCheckpointer


def instance(n: int, **changes: object) -> Instance:
    fields: dict[str, object] = {
        "service": "svc",
        "instance_id": f"i{n}",
        "address": f"127.0.0.1:{1000 + n}",
        "lease_id": f"lease-{n}",
        "ttl_s": 10.0,
        "registered_at": 1_700_000_000.0,
        "version": "1.0.0",
        "tags": ("a", "b"),
        "metadata": {"zone": "eu"},
    }
    fields.update(changes)
    return Instance(**fields)  # type: ignore[arg-type]


async def test_commits_get_consecutive_revisions_and_reload(store: Store) -> None:
    probed = instance(2, probe=ProbeSpec(service_name="x", interval_s=1.0), health=Health.CRITICAL)
    up = await store.registry_commit(instance(1), ChangeType.UP, reason="", now=1.0)
    other = await store.registry_commit(probed, ChangeType.UP, reason="", now=2.0)
    down = await store.registry_commit(instance(1), ChangeType.DOWN, reason="deregistered", now=3.0)

    snapshot = await store.registry_load(history=10)

    assert [up.revision, other.revision, down.revision] == [1, 2, 3]
    assert snapshot.revision == 3
    assert snapshot.instances == [other.instance]
    assert snapshot.instances[0].probe == probed.probe
    assert [(c.revision, c.type, c.reason) for c in snapshot.changes] == [
        (1, ChangeType.UP, ""),
        (2, ChangeType.UP, ""),
        (3, ChangeType.DOWN, "deregistered"),
    ]
    assert snapshot.changes[0].instance == up.instance


async def test_concurrent_commits_share_transactions_without_losing_any(store: Store) -> None:
    changes = await asyncio.gather(
        *(store.registry_commit(instance(n), ChangeType.UP, reason="", now=float(n)) for n in range(200))
    )

    snapshot = await store.registry_load(history=1000)

    assert sorted(c.revision for c in changes) == list(range(1, 201))
    assert len(snapshot.instances) == 200
    assert [c.revision for c in snapshot.changes] == list(range(1, 201))


async def test_a_failing_write_leaves_the_others_of_its_batch_intact(store: Store) -> None:
    duplicate_lease = instance(2, lease_id="lease-1")  # lease ids are unique
    results = await asyncio.gather(
        store.registry_commit(instance(1), ChangeType.UP, reason="", now=1.0),
        store.registry_commit(duplicate_lease, ChangeType.UP, reason="", now=1.0),
        store.registry_commit(instance(3), ChangeType.UP, reason="", now=1.0),
        return_exceptions=True,
    )

    snapshot = await store.registry_load(history=10)

    assert isinstance(results[1], Exception)
    assert sorted(i.instance_id for i in snapshot.instances) == ["i1", "i3"]
    assert [c.revision for c in snapshot.changes] == [1, 2]


async def test_the_revision_is_the_last_committed_change(store: Store) -> None:
    assert await store.registry_revision() == 0
    await store.registry_commit(instance(1), ChangeType.UP, reason="", now=1.0)
    await store.registry_commit(instance(1), ChangeType.DOWN, reason="deregistered", now=2.0)

    assert await store.registry_revision() == 2


async def test_compaction_keeps_the_newest_changes(store: Store) -> None:
    for n in range(10):
        await store.registry_commit(instance(n), ChangeType.UP, reason="", now=float(n))

    dropped = await store.registry_compact(keep=4)
    snapshot = await store.registry_load(history=100)

    assert dropped == 6
    assert [c.revision for c in snapshot.changes] == [7, 8, 9, 10]
    assert snapshot.revision == 10


async def test_changes_after_a_revision_come_in_order_up_to_the_limit(store: Store) -> None:
    for n in range(5):
        await store.registry_commit(instance(n), ChangeType.UP, reason="", now=float(n))
    await store.registry_commit(instance(0), ChangeType.DOWN, reason="lease_expired", now=9.0)

    page = await store.registry_changes_after(2, limit=2)
    rest = await store.registry_changes_after(4, limit=100)

    assert [(c.revision, c.instance.instance_id) for c in page] == [(3, "i2"), (4, "i3")]
    assert [(c.revision, c.type, c.reason, c.time) for c in rest] == [
        (5, ChangeType.UP, "", 4.0),
        (6, ChangeType.DOWN, "lease_expired", 9.0),
    ]
    assert rest[0].instance.revision == 5
    assert await store.registry_changes_after(6, limit=100) == []


async def test_lease_renewals_keep_the_latest_expiry_until_the_instance_goes(store: Store) -> None:
    await store.registry_commit(instance(1), ChangeType.UP, reason="", now=1.0)
    await store.registry_commit(instance(2), ChangeType.UP, reason="", now=1.0)

    await store.registry_renew({"lease-1": 110.0, "lease-2": 120.0})
    await store.registry_renew({"lease-1": 105.0})  # an older renewal arriving late changes nothing
    await store.registry_renew({"lease-2": 130.0})
    renewed = await store.registry_lease_expiry(["lease-1", "lease-2", "never-renewed"])
    await store.registry_commit(instance(1), ChangeType.DOWN, reason="deregistered", now=2.0)
    after_down = await store.registry_lease_expiry(["lease-1", "lease-2"])

    assert renewed == {"lease-1": 110.0, "lease-2": 130.0}
    assert after_down == {"lease-2": 130.0}
    assert await store.registry_lease_expiry([]) == {}


async def test_a_closed_store_refuses_reads_and_writes_and_closes_twice(store_url: str) -> None:
    store = await open_store(store_url)
    await store.close()
    await store.close()

    with pytest.raises(Unavailable):
        await store.registry_load(history=10)
    with pytest.raises(Unavailable):
        await store.registry_commit(instance(1), ChangeType.UP, reason="", now=1.0)


async def test_reopening_applies_no_migration_twice(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cp.db'}"
    first = await open_store(url)
    await first.registry_commit(instance(1), ChangeType.UP, reason="", now=1.0)
    await first.close()
    await first.close()  # idempotent

    second = await open_store(url)
    snapshot = await second.registry_load(history=10)
    await second.close()

    assert snapshot.revision == 1
    assert [m.version for m in migrations("sqlite")] == sorted({m.version for m in migrations("sqlite")})


async def test_the_sync_mode_and_the_cache_are_options_of_the_url(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'fast.db'}?synchronous=normal&cache_mib=8")
    change = await store.registry_commit(instance(1), ChangeType.UP, reason="", now=1.0)
    await store.close()

    assert change.revision == 1


async def test_the_sqlite_writer_checkpoints_the_wal_between_commits(tmp_path: Path) -> None:
    # Autocheckpoint is off (it would run inside a caller's COMMIT); the writer checkpoints between its
    # batches instead. Without that the frames waiting to be copied would only grow.
    path = tmp_path / "cp.db"
    store = await open_store(f"sqlite:///{path}")
    backlog = WalCheckpointer(path).backlog
    padded = {"pad": "x" * 8000}  # a few pages per row
    seen = [backlog()]
    try:
        for round_ in range(14):
            await asyncio.gather(
                *(
                    store.registry_commit(instance(n, metadata=padded), ChangeType.UP, reason="", now=1.0)
                    for n in range(round_ * 50, round_ * 50 + 50)
                )
            )
            seen.append(backlog())
    finally:
        await store.close()

    steps = [after - before for before, after in itertools.pairwise(seen)]
    assert sum(step for step in steps if step > 0) > 2000, f"too few frames to cross the threshold: {seen}"
    assert any(step < 0 for step in steps), f"no checkpoint: {seen}"
    assert max(seen) < CHECKPOINT_BUSY_FRAMES, f"the WAL grew past the bound: {seen}"


class _Counting:
    """A connection that counts the checkpoints run on it, and tells of each."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn, self.checkpoints = conn, 0
        self.checkpointed = threading.Event()

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        cursor = self.conn.execute(sql, *args)
        if "wal_checkpoint" in sql:
            self.checkpoints += 1
            self.checkpointed.set()
        return cursor

    def close(self) -> None:
        self.conn.close()


def _wal_with_frames(path: Path, rows: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("PRAGMA synchronous=OFF")  # durability is not what these tests are about
    conn.execute("CREATE TABLE IF NOT EXISTS t (v BLOB)")
    for _ in range(rows):
        conn.execute("INSERT INTO t VALUES (zeroblob(4000))")  # a frame or two each
    return conn


async def test_an_idle_checkpoint_runs_beside_the_writer_on_its_own_connection(tmp_path: Path) -> None:
    # A checkpoint on the writer's thread held up the next commit for its length (~4 ms, the database file
    # fsynced): once the writer is idle, it is handed to a thread with a connection of its own.
    path = tmp_path / "beside.db"
    writer = _Counting(_wal_with_frames(path, 1100))
    beside = _Counting(sqlite3.connect(path, check_same_thread=False))
    checkpointer = WalCheckpointer(path, lambda: cast(Connection, beside))
    try:
        waiting = checkpointer.backlog()
        checkpointer(cast(Connection, writer), False)  # idle: asked of the thread beside
        assert await asyncio.to_thread(beside.checkpointed.wait, 10)
        copied = checkpointer.backlog()
        assert writer.checkpoints == 0
        # Past the busy bound the writer checkpoints itself: no commit can overtake it there.
        writer.conn.executemany("INSERT INTO t VALUES (zeroblob(4000))", [()] * CHECKPOINT_BUSY_FRAMES)
        checkpointer(cast(Connection, writer), True)
        left = checkpointer.backlog()
    finally:
        checkpointer.close()
        writer.conn.close()

    assert 1100 <= waiting < CHECKPOINT_BUSY_FRAMES
    assert copied == 0
    assert (writer.checkpoints, beside.checkpoints) == (1, 1)
    assert left == 0


def test_the_wal_checkpointer_waits_for_idle_time_until_the_wal_is_long(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("PRAGMA synchronous=OFF")  # durability is not what this test is about
    conn.execute("CREATE TABLE t (v BLOB)")
    for _ in range(1100):
        conn.execute("INSERT INTO t VALUES (zeroblob(4000))")  # a frame or two each
    checkpointer = WalCheckpointer(path)
    try:
        waiting = checkpointer.backlog()
        checkpointer(cast(Connection, conn), True)  # writes waiting, WAL short of the busy bound: later
        kept = checkpointer.backlog()
        checkpointer(cast(Connection, conn), False)  # idle: now
        left = checkpointer.backlog()
    finally:
        checkpointer.close()
        conn.close()

    assert 1100 <= waiting < CHECKPOINT_BUSY_FRAMES
    assert kept == waiting
    assert left == 0


@pytest.mark.parametrize(
    "url",
    [
        "mysql://db",
        "sqlite://",
        "postgresql://localhost/x",
        "sqlite:///x.db?synchronous=off",
        "sqlite:///x.db?cache=1",
        "sqlite:///x.db?cache_mib=lots",
    ],
)
async def test_unusable_store_urls_are_refused_clearly(url: str) -> None:
    with pytest.raises(StoreURLError):
        await open_store(url)


async def test_bus_pages_of_large_messages_stop_at_their_data_budget(store: Store) -> None:
    batch = [OutgoingMessage("big.a" if n % 2 else "big.b", bytes([n]) * 1000) for n in range(10)]
    await store.bus_append(batch, now=1.0, dedup_window_s=0.0)

    capped = await store.bus_read(0, 100, max_data=2500)
    one_subject = await store.bus_read(0, 100, "big.a", max_data=2500)
    first_alone = await store.bus_read(0, 100, max_data=10)
    uncapped = await store.bus_read(0, 100)

    assert [m.sequence for m in capped] == [1, 2, 3]  # the third reaches the budget
    assert [m.sequence for m in one_subject] == [2, 4, 6]
    assert [m.sequence for m in first_alone] == [1]  # a message larger than the budget comes alone
    assert len(uncapped) == 10
    assert capped[2].data == bytes([2]) * 1000
