"""The store's schedule rows on both backends: create once, compare-and-set, due and buffered reads."""

from __future__ import annotations

import dataclasses

from control_plane.models.schedule import OverlapPolicy, ScheduleRecord, ScheduleSpec
from control_plane.storage import Store


def record(schedule_id: str, **changes: object) -> ScheduleRecord:
    base = ScheduleRecord(
        id=schedule_id,
        spec=ScheduleSpec(cron="0 1 * * *", time_zone="Europe/Berlin", jitter_s=30.0, start_time=5.0),
        definition="nightly",
        version=0,
        input={"a": [1, "x"]},
        overlap=OverlapPolicy.BUFFER_ONE,
        catchup_window_s=60.0,
        created_at=1.0,
        next_nominal=100.0,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def test_a_schedule_is_created_once_and_read_back_whole(store: Store) -> None:
    assert await store.sched_create(record("a"), 100.0)
    assert not await store.sched_create(record("a", definition="other"), 100.0)
    assert await store.sched_get("a") == record("a", revision=1)
    assert await store.sched_get("missing") is None


async def test_updates_are_compare_and_set_on_the_revision(store: Store) -> None:
    await store.sched_create(record("a"), 100.0)
    current = await store.sched_get("a")
    assert current is not None
    assert await store.sched_update(dataclasses.replace(current, started=1), 160.0)
    # A writer that read revision 1 too has lost: nothing it wrote is kept.
    assert not await store.sched_update(dataclasses.replace(current, paused=True), None)
    stored = await store.sched_get("a")
    assert stored is not None and (stored.revision, stored.started, stored.paused) == (2, 1, False)


async def test_due_and_buffered_schedules_are_read_apart(store: Store) -> None:
    await store.sched_create(record("due"), 100.0)
    await store.sched_create(record("later"), 500.0)
    await store.sched_create(record("paused"), None)
    await store.sched_create(record("held", buffered_nominal=90.0, buffered_key="k"), 500.0)
    await store.sched_create(record("held-paused", buffered_nominal=90.0, paused=True), None)

    due, buffered = await store.sched_due(200.0, 10)
    assert [r.id for r in due] == ["due"]
    assert [r.id for r in buffered] == ["held"]
    assert await store.sched_next_due() == (100.0, True)


async def test_pages_by_id_and_delete(store: Store) -> None:
    for name in ("c", "a", "b"):
        await store.sched_create(record(name), None)
    assert [r.id for r in await store.sched_page("", 2)] == ["a", "b"]
    assert [r.id for r in await store.sched_page("b", 2)] == ["c"]
    assert await store.sched_delete("b")
    assert not await store.sched_delete("b")
    assert [r.id for r in await store.sched_page("", 10)] == ["a", "c"]
    assert await store.sched_next_due() == (None, False)
