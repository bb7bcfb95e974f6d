"""Schedule timing on a fake clock: nominal times, time zones, jitter, overlap policies, catch-up, pause."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from control_plane.core.schedules.calendar import following, rfc3339
from control_plane.core.schedules.schedules import NewSchedule, Schedules, business_key
from control_plane.core.workflow.workflows import Workflows
from control_plane.errors import AlreadyExists, InvalidArgument, NotFound
from control_plane.models import ProcessRecord, ProcessState
from control_plane.models.schedule import OverlapPolicy, ScheduleSpec, TriggerOutcome
from tests.core.clock import EPOCH, FakeClock
from tests.core.conftest import Cores, running_cores

# A process that runs until it is sent "go": the previous start "still runs" for as long as a test wants.
WAITING = """
name: nightly
steps:
  - id: wait
    wait_signal: {name: go}
"""
MINUTE = 60.0


def first_minute_after(at: float) -> float:
    """The first whole UTC minute after `at` (an interval of 60 s is aligned on the Unix epoch)."""
    return (math.floor(at / MINUTE) + 1) * MINUTE


@asynccontextmanager
async def scheduler(cores: Cores) -> AsyncIterator[Schedules]:
    """A scheduler on the cores' store and clock, its loop running for the duration of the block."""
    schedules = Schedules(cores.store, cores.workflows, wall_clock=cores.clock.wall, wait=cores.clock.wait)
    stop = asyncio.Event()
    task = asyncio.create_task(schedules.run(stop))
    try:
        await cores.settle(1)
        yield schedules
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def at(cores: Cores, wall: float) -> None:
    """Move the clock to wall-clock time `wall`, every loop (the scheduler's too) having run up to it."""
    await cores.advance_to(wall - EPOCH, extra=1)
    await cores.settle(1)


async def processes(cores: Cores) -> list[ProcessRecord]:
    """Every process of `nightly`, oldest first."""
    found = await cores.workflows.list_processes(
        definition="nightly", version=0, states=[], business_key="", before=None, limit=1000
    )
    return sorted(found, key=lambda p: (p.created_at, p.business_key))


async def end(cores: Cores, process: ProcessRecord) -> None:
    await cores.workflows.signal(process.id, "go", {}, "")
    assert (await cores.workflows.process(process.id)).state is ProcessState.COMPLETED


def every_minute(schedule_id: str = "s", **options: object) -> NewSchedule:
    return NewSchedule(
        id=schedule_id,
        spec=ScheduleSpec(interval_s=MINUTE),
        definition="nightly",
        version=0,
        input={"from": "schedule"},
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def registered(request: pytest.FixtureRequest, core_url: str, clock: FakeClock) -> AsyncIterator[Cores]:
    """The cores with `nightly` registered, on each store; on PostgreSQL this replica leads.

    On PostgreSQL a migrated database of the pool (emptied, as a new one would be), not a new one per
    test: creating and migrating one cost more than most of these tests.
    """
    url = request.getfixturevalue("control_plane_database") if request.param == "postgres" else core_url
    async with running_cores(url, clock) as cores:
        # Alone on the database (its listener is not started here): as the leader would, once it took the lock.
        cores.store.cluster.leader = True
        await cores.workflows.register_definition(WAITING, validate_only=False)
        yield cores


# -- nominal times --------------------------------------------------------------------------------


async def test_an_interval_fires_once_per_nominal_time_with_it_in_the_business_key(registered: Cores) -> None:
    cores = registered
    async with scheduler(cores) as schedules:
        await schedules.create(every_minute(overlap=OverlapPolicy.ALLOW_ALL))
        first = first_minute_after(cores.clock.wall())
        await at(cores, first - 0.001)
        assert await processes(cores) == []
        await at(cores, first)
        assert [p.business_key for p in await processes(cores)] == [business_key("s", first)]
        await at(cores, first + 3 * MINUTE + 30)
        started = await processes(cores)
    assert [p.business_key for p in started] == [business_key("s", first + k * MINUTE) for k in range(4)]
    assert started[0].business_key == f"schedule:s:{rfc3339(first)}"
    assert all(p.input == {"from": "schedule"} for p in started)
    info = await schedules.get("s")
    assert info.started == 4
    assert info.next_nominal == first + 4 * MINUTE
    assert info.last_process_id == started[-1].id


async def test_cron_runs_in_its_time_zone(registered: Cores) -> None:
    cores = registered
    # The clock starts at 2023-11-14T22:13:20Z (23:13:20 in Berlin, CET, UTC+1): 00:10 on the 15th in
    # Berlin is 23:10 UTC on the 14th, a day and an hour away from 00:10 UTC. The clock gets there in
    # under an hour, firing every loop's waits on the way (each a round of store reads on PostgreSQL).
    berlin_ten_past_midnight = datetime(2023, 11, 14, 23, 10, tzinfo=UTC).timestamp()
    async with scheduler(cores) as schedules:
        spec = ScheduleSpec(cron="10 0 * * *", time_zone="Europe/Berlin")
        created = await schedules.create(NewSchedule("berlin", spec, "nightly", 0, {}))
        assert created.next_nominal == berlin_ten_past_midnight
        await at(cores, berlin_ten_past_midnight - 1)
        assert await processes(cores) == []
        await at(cores, berlin_ten_past_midnight + 1)
        (started,) = await processes(cores)
    assert started.business_key == "schedule:berlin:2023-11-14T23:10:00Z"


def test_cron_follows_daylight_saving_changes() -> None:
    spec = ScheduleSpec(cron="30 2 * * *", time_zone="Europe/Berlin")
    # 2026-03-29: clocks go from 02:00 to 03:00 CET->CEST; 02:30 does not exist and fires at 03:00 CEST.
    before = datetime(2026, 3, 28, 12, 0, tzinfo=UTC).timestamp()
    spring = following(spec, before)
    assert spring == datetime(2026, 3, 29, 1, 0, tzinfo=UTC).timestamp()
    assert following(spec, spring) == datetime(2026, 3, 30, 0, 30, tzinfo=UTC).timestamp()
    # 2026-10-25: 02:30 happens twice (CEST, then CET); it fires once.
    autumn_eve = datetime(2026, 10, 24, 12, 0, tzinfo=UTC).timestamp()
    first = following(spec, autumn_eve)
    assert first is not None
    assert following(spec, first) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC).timestamp()


async def test_jitter_delays_the_start_but_not_its_nominal_time(registered: Cores) -> None:
    cores = registered
    async with scheduler(cores) as schedules:
        created = await schedules.create(
            NewSchedule("j", ScheduleSpec(interval_s=3600.0, jitter_s=600.0), "nightly", 0, {})
        )
        nominal = created.next_nominal
        assert nominal is not None
        await at(cores, nominal)
        fired_at = []
        while not await processes(cores):
            await at(cores, cores.clock.wall() + 10)
        fired_at.append(cores.clock.wall())
        (started,) = await processes(cores)
    assert started.business_key == business_key("j", nominal)
    assert nominal < started.created_at < nominal + 600.0
    assert fired_at[0] - started.created_at <= 10.0


async def test_start_and_end_time_bound_the_nominal_times(registered: Cores) -> None:
    cores = registered
    start = first_minute_after(cores.clock.wall()) + 10 * MINUTE
    async with scheduler(cores) as schedules:
        spec = ScheduleSpec(interval_s=MINUTE, start_time=start, end_time=start + 2 * MINUTE)
        created = await schedules.create(
            NewSchedule("bounded", spec, "nightly", 0, {}, overlap=OverlapPolicy.ALLOW_ALL)
        )
        assert created.next_nominal == start
        await at(cores, start + 10 * MINUTE)
        keys = [p.business_key for p in await processes(cores)]
        info = await schedules.get("bounded")
    assert keys == [business_key("bounded", start + k * MINUTE) for k in range(3)]
    assert info.next_nominal is None


async def test_only_the_leader_fires(registered: Cores) -> None:
    cores = registered
    first = first_minute_after(cores.clock.wall())
    cluster = cores.store.cluster
    cluster.leader = False  # as a follower replica: the leader lock is held elsewhere
    try:
        async with scheduler(cores) as schedules:
            await schedules.create(every_minute(overlap=OverlapPolicy.ALLOW_ALL))
            await at(cores, first + 30)
            assert await processes(cores) == []
            cluster.leader = True  # the leader died and this replica took the lock
            await at(cores, first + 31)
            keys = [p.business_key for p in await processes(cores)]
    finally:
        cluster.leader = True
    assert keys == [business_key("s", first)]


# -- overlap policies -----------------------------------------------------------------------------


async def test_skip_skips_nominal_times_while_the_previous_start_runs(registered: Cores) -> None:
    cores = registered
    first = first_minute_after(cores.clock.wall())
    async with scheduler(cores) as schedules:
        await schedules.create(every_minute(overlap=OverlapPolicy.SKIP))
        await at(cores, first + 2 * MINUTE)
        (running,) = await processes(cores)
        assert (await schedules.get("s")).skipped_overlaps == 2
        await end(cores, running)
        await at(cores, first + 3 * MINUTE)
        started = await processes(cores)
    assert [p.business_key for p in started] == [
        business_key("s", first),
        business_key("s", first + 3 * MINUTE),
    ]


async def test_buffer_one_starts_one_held_back_time_once_the_previous_ends(registered: Cores) -> None:
    cores = registered
    first = first_minute_after(cores.clock.wall())
    async with scheduler(cores) as schedules:
        await schedules.create(every_minute(overlap=OverlapPolicy.BUFFER_ONE))
        await at(cores, first + 2 * MINUTE + 10)
        (running,) = await processes(cores)
        info = await schedules.get("s")
        assert info.buffered_nominal == first + MINUTE  # the second time waits; the third is skipped
        assert info.skipped_overlaps == 1
        await end(cores, running)
        await at(cores, cores.clock.wall() + 1.0)  # the leader looks at buffered starts every second
        started = await processes(cores)
        info = await schedules.get("s")
    assert [p.business_key for p in started] == [business_key("s", first), business_key("s", first + MINUTE)]
    assert info.buffered_nominal is None
    assert info.last_process_id == started[1].id


async def test_allow_all_starts_every_time_side_by_side(registered: Cores) -> None:
    cores = registered
    first = first_minute_after(cores.clock.wall())
    async with scheduler(cores) as schedules:
        await schedules.create(every_minute(overlap=OverlapPolicy.ALLOW_ALL))
        await at(cores, first + 2 * MINUTE)
        started = await processes(cores)
    assert len(started) == 3
    assert all(p.state is ProcessState.RUNNING for p in started)


# -- downtime, crashes ----------------------------------------------------------------------------


async def test_after_downtime_only_times_within_the_catchup_window_start(registered: Cores) -> None:
    cores = registered
    first = first_minute_after(cores.clock.wall())
    async with scheduler(cores) as schedules:
        await schedules.create(every_minute(overlap=OverlapPolicy.ALLOW_ALL, catchup_window_s=150.0))
        await at(cores, first)
    # No scheduler runs for ten minutes (the control plane is down), then one starts again.
    await cores.clock.advance(10 * MINUTE + 30)
    back = cores.clock.wall()
    async with scheduler(cores) as schedules:
        keys = [p.business_key for p in await processes(cores)]
        info = await schedules.get("s")
    within = [t for t in (first + k * MINUTE for k in range(1, 12)) if back - 150.0 <= t <= back]
    assert len(within) == 3
    assert keys == [business_key("s", first)] + [business_key("s", t) for t in within]
    assert info.missed_catchup == 10 - len(within)
    assert info.next_nominal == within[-1] + MINUTE


async def test_a_time_started_before_a_crash_is_not_started_again(registered: Cores) -> None:
    cores = registered
    first = first_minute_after(cores.clock.wall())
    async with scheduler(cores) as schedules:
        await schedules.create(every_minute(overlap=OverlapPolicy.SKIP))
        await at(cores, first)
        (running,) = await processes(cores)
        # As if a scheduler started the second time and died before it stored so: the process exists,
        # while the first still runs (SKIP would skip a time it had not started).
        second, _ = await cores.workflows.start("nightly", 0, {}, business_key("s", first + MINUTE))
        await at(cores, first + MINUTE)
        started = await processes(cores)
        info = await schedules.get("s")
    assert [p.id for p in started] == [running.id, second.id]
    assert info.last_process_id == second.id
    assert info.started == 2
    assert info.skipped_overlaps == 0


# -- pause, trigger, validation -------------------------------------------------------------------


async def test_a_paused_schedule_fires_nothing_and_does_not_catch_up_when_unpaused(registered: Cores) -> None:
    cores = registered
    first = first_minute_after(cores.clock.wall())
    async with scheduler(cores) as schedules:
        await schedules.create(every_minute(overlap=OverlapPolicy.ALLOW_ALL, catchup_window_s=3600.0))
        paused = await schedules.pause("s", "maintenance")
        assert paused.paused and paused.note == "maintenance"
        await at(cores, first + 5 * MINUTE + 30)
        assert await processes(cores) == []
        resumed = await schedules.unpause("s", "")
        assert resumed.next_nominal == first + 6 * MINUTE
        await at(cores, first + 6 * MINUTE)
        keys = [p.business_key for p in await processes(cores)]
    assert keys == [business_key("s", first + 6 * MINUTE)]


async def test_trigger_starts_now_once_per_request_id_and_obeys_the_overlap_policy(registered: Cores) -> None:
    cores = registered
    async with scheduler(cores) as schedules:
        await schedules.create(every_minute(overlap=OverlapPolicy.SKIP, paused=True))
        first = await schedules.trigger("s", "r1")
        again = await schedules.trigger("s", "r1")
        other = await schedules.trigger("s", "r2")
        started = await processes(cores)
    assert first.outcome is TriggerOutcome.STARTED
    assert again.outcome is TriggerOutcome.STARTED and again.process_id == first.process_id
    assert other.outcome is TriggerOutcome.SKIPPED  # r1's process still runs
    assert [p.business_key for p in started] == ["schedule:s:trigger:r1"]
    assert again.schedule.started == 1


async def test_bad_schedules_are_refused_naming_the_field(registered: Cores) -> None:
    cores = registered
    async with scheduler(cores) as schedules:
        cases = {
            "spec.cron": ScheduleSpec(cron="61 * * * *"),
            "spec.time_zone": ScheduleSpec(cron="0 1 * * *", time_zone="Mars/Olympus"),
            "spec.interval": ScheduleSpec(interval_s=0.5),
            "spec": ScheduleSpec(),
            "spec.end_time": ScheduleSpec(interval_s=60.0, start_time=EPOCH + 100, end_time=EPOCH),
        }
        for field, spec in cases.items():
            with pytest.raises(InvalidArgument) as refused:
                await schedules.create(NewSchedule("bad", spec, "nightly", 0, {}))
            assert field in [v.field for v in refused.value.violations], field
        with pytest.raises(InvalidArgument):
            await schedules.create(NewSchedule("bad id!", ScheduleSpec(interval_s=60.0), "nightly", 0, {}))
        with pytest.raises(NotFound):
            await schedules.create(NewSchedule("x", ScheduleSpec(interval_s=60.0), "unknown", 0, {}))
        await schedules.create(every_minute())
        with pytest.raises(AlreadyExists):
            await schedules.create(every_minute())
        await schedules.delete("s")
        with pytest.raises(NotFound):
            await schedules.get("s")
        assert await schedules.page("", 10) == []


class PausedMidPass:
    """The engine as the scheduler sees it, where a pause (from another replica) lands right after a start."""

    def __init__(self, cores: Cores, other: Schedules) -> None:
        self._workflows = cores.workflows
        self._other = other
        self.list_processes = cores.workflows.list_processes

    async def start(self, name: str, version: int, value: Any, key: str) -> tuple[ProcessRecord, bool]:
        started = await self._workflows.start(name, version, value, key)
        await self._other.pause("s", "paused while the leader was firing")
        return started


async def test_a_pass_that_loses_its_race_with_a_pause_keeps_what_it_started(registered: Cores) -> None:
    cores = registered
    first = first_minute_after(cores.clock.wall())
    other = Schedules(cores.store, cores.workflows, wall_clock=cores.clock.wall, wait=cores.clock.wait)
    engine = cast(Workflows, PausedMidPass(cores, other))
    leader = Schedules(cores.store, engine, wall_clock=cores.clock.wall, wait=cores.clock.wait)
    await other.create(every_minute(overlap=OverlapPolicy.ALLOW_ALL))
    await cores.clock.advance(first - cores.clock.wall() + 1)
    await leader.fire_due()  # no loop runs: one pass, by hand
    (started,) = await processes(cores)
    info = await other.get("s")
    assert info.paused and info.note == "paused while the leader was firing"
    assert (info.started, info.last_process_id) == (1, started.id)
    assert info.next_nominal == first + MINUTE
