"""The store contract: one suite, run against every backend (PostgreSQL joins when it lands)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from control_plane.models import ChangeType, Health, Instance, ProbeSpec
from control_plane.storage import Store, StoreURLError, open_store
from control_plane.storage.migrations import migrations


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'cp.db'}"
    opened = await open_store(url)
    yield opened
    await opened.close()


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


async def test_compaction_keeps_the_newest_changes(store: Store) -> None:
    for n in range(10):
        await store.registry_commit(instance(n), ChangeType.UP, reason="", now=float(n))

    dropped = await store.registry_compact(keep=4)
    snapshot = await store.registry_load(history=100)

    assert dropped == 6
    assert [c.revision for c in snapshot.changes] == [7, 8, 9, 10]
    assert snapshot.revision == 10


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
