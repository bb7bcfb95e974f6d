"""Schedules through the contract: the Schedule service on a real control plane, in process and killed.

On both stores (MGMT_TEST_STORE=postgres runs them on PostgreSQL); the timing rules themselves are
checked on a fake clock in tests/core/test_schedule_timing.py.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime

import pytest

from control_plane import errors
from hms.mgmt.v1 import bus_pb2 as bpb
from hms.mgmt.v1 import schedule_pb2 as spb
from hms.mgmt.v1 import workflow_pb2 as pb
from hms_mgmt import BusSubscription, Client
from tests.conftest import ServerProcess

Start = Callable[..., Awaitable[ServerProcess]]

QUICK = """
name: ticks
steps:
  - id: nap
    sleep: 10ms
"""
WAITING = """
name: waits
steps:
  - id: wait
    wait_signal: {name: go}
"""


async def processes_page(client: Client, request: pb.ListProcessesRequest) -> pb.ListProcessesResponse:
    return await client.endpoints.unary(lambda e: e.workflow.ListProcesses(request), retry=True)


async def schedules_page(client: Client, request: spb.ListSchedulesRequest) -> spb.ListSchedulesResponse:
    return await client.endpoints.unary(lambda e: e.schedule.ListSchedules(request))


async def started_keys(client: Client, definition: str) -> list[str]:
    """Business keys of every process of `definition`."""
    keys: list[str] = []
    token = ""
    while True:
        request = pb.ListProcessesRequest(definition=definition, page_size=1000, page_token=token)
        response = await processes_page(client, request)
        keys += [p.business_key for p in response.processes]
        token = response.next_page_token
        if not token:
            return keys


def nominal(key: str) -> float:
    """The nominal time of a scheduled start's business key ("schedule:<id>:<RFC 3339>")."""
    return datetime.fromisoformat(key.split(":", 2)[2].replace("Z", "+00:00")).timestamp()


@asynccontextmanager
async def process_starts(client: Client, definition: str) -> AsyncIterator[BusSubscription]:
    """The process_started events of `definition`, from the Bus's beginning on (the starts before count).

    The event is published in the transaction that stores the process: a process it names is listed.
    """
    pattern = f"workflow.{definition}.*.process_started"
    async with client.bus.subscribe(pattern, start=bpb.START_POSITION_ALL) as events:
        yield events


async def until_started(client: Client, definition: str, count: int, timeout_s: float = 30.0) -> list[str]:
    """Wait for `count` processes of `definition` to start; the business keys of all its processes."""
    seen: set[str] = set()
    async with asyncio.timeout(timeout_s), process_starts(client, definition) as starts:
        while len(seen) < count:
            seen.add((await anext(starts)).message.subject.split(".")[2])  # workflow.<def>.<id>.<event>
    return await started_keys(client, definition)


async def until_counted(
    client: Client, schedule_id: str, definition: str, count: int, timeout_s: float = 30.0
) -> int:
    """Wait until the schedule counts at least `count` starts of `definition`.

    The schedule's row (its counter) is written once a pass has started the processes of its due
    nominal times, and passes run one after the other: so the counter is read again at each start,
    and a start in the next pass finds the ones before counted.
    """
    async with asyncio.timeout(timeout_s), process_starts(client, definition) as starts:
        while (started := (await client.schedules.get(schedule_id)).started) < count:
            await anext(starts)
    return started


def assert_every_second_once(keys: list[str], schedule_id: str) -> None:
    """One start per nominal time and none missing: consecutive seconds, no key twice."""
    assert all(k.startswith(f"schedule:{schedule_id}:") for k in keys), keys
    times = sorted(nominal(k) for k in keys)
    assert len(set(times)) == len(times), keys
    assert times == [times[0] + i for i in range(len(times))], keys


async def test_a_schedule_through_the_contract(client: Client) -> None:
    await client.workflow.apply(QUICK)
    created = await client.schedules.create(
        "ticker", "ticks", {"n": 1}, every_s=1.0, overlap="allow_all", note="by the test"
    )
    assert created.overlap == spb.OVERLAP_POLICY_ALLOW_ALL
    assert created.catchup_window.seconds == 60
    assert created.HasField("next_nominal_time") and created.note == "by the test"
    keys = await until_started(client, "ticks", 3)
    assert_every_second_once(keys, "ticker")

    paused = await client.schedules.pause("ticker", "maintenance")
    assert paused.paused and paused.note == "maintenance"
    triggered = await client.schedules.trigger("ticker", request_id="once")
    again = await client.schedules.trigger("ticker", request_id="once")
    assert triggered.outcome == spb.TRIGGER_OUTCOME_STARTED
    assert again.process_id == triggered.process_id
    process = await client.workflow.status(triggered.process_id)
    assert process.business_key == "schedule:ticker:trigger:once"
    assert dict(process.input) == {"n": 1}

    resumed = await client.schedules.unpause("ticker")
    assert not resumed.paused
    counted = await until_counted(client, "ticker", "ticks", len(keys) + 1)
    assert counted <= len(await started_keys(client, "ticks"))
    assert [s.id for s in await client.schedules.list()] == ["ticker"]
    await client.schedules.delete("ticker")
    with pytest.raises(errors.NotFound):
        await client.schedules.get("ticker")
    assert await client.schedules.list() == []


async def test_bad_schedules_are_refused_with_the_field_at_fault(client: Client) -> None:
    await client.workflow.apply(QUICK)
    with pytest.raises(errors.InvalidArgument) as bad_cron:
        await client.schedules.create("s", "ticks", cron="0 25 * * *")
    with pytest.raises(errors.InvalidArgument) as bad_zone:
        await client.schedules.create("s", "ticks", cron="0 1 * * *", time_zone="Nowhere/Town")
    with pytest.raises(errors.InvalidArgument) as neither:
        await client.schedules.create("s", "ticks")
    with pytest.raises(errors.NotFound):
        await client.schedules.create("s", "unknown", every_s=60)
    with pytest.raises(errors.InvalidArgument) as bad_token:
        await client.endpoints.unary(
            lambda e: e.schedule.ListSchedules(spb.ListSchedulesRequest(page_token="x"))
        )
    await client.schedules.create("s", "ticks", every_s=60)
    with pytest.raises(errors.AlreadyExists):
        await client.schedules.create("s", "ticks", every_s=60)
    with pytest.raises(errors.NotFound):
        await client.schedules.pause("missing")

    assert [v.field for v in bad_cron.value.violations] == ["spec.cron"]
    assert [v.field for v in bad_zone.value.violations] == ["spec.time_zone"]
    assert [v.field for v in neither.value.violations] == ["spec"]
    assert [v.field for v in bad_token.value.violations] == ["page_token"]


async def test_schedules_are_listed_in_pages(client: Client) -> None:
    await client.workflow.apply(QUICK)
    for n in range(5):
        await client.schedules.create(f"s{n}", "ticks", every_s=3600, paused=True)
    seen: list[str] = []
    token = ""
    while True:
        request = spb.ListSchedulesRequest(page_size=2, page_token=token)
        page = await schedules_page(client, request)
        assert len(page.schedules) <= 2
        seen += [s.id for s in page.schedules]
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"s{n}" for n in range(5)]


@pytest.mark.timeout(120)
async def test_a_schedule_fires_exactly_once_per_nominal_time_across_a_sigkill(
    server_process: Start, store_args: tuple[str, ...]
) -> None:
    first = await server_process(*store_args)
    async with Client(first.address) as client:
        await client.workflow.apply(WAITING)
        await client.schedules.create(
            "beat", "waits", every_s=1.0, overlap="allow_all", catchup_window_s=3600
        )
        before = await until_started(client, "waits", 3)
    await first.stop(signal.SIGKILL)
    # Down for as long as a restart takes; the times missed meanwhile are within the catch-up window.
    second = await server_process(*store_args)
    async with Client(second.address) as client:
        keys = await until_started(client, "waits", len(before) + 4)
        counted = await until_counted(client, "beat", "waits", len(keys))
        total = len(await started_keys(client, "waits"))
        shown = await client.schedules.get("beat")
    assert_every_second_once(keys, "beat")
    assert set(before) <= set(keys)
    assert counted <= total  # every start counted once, none counted that did not happen
    assert shown.missed_catchup == 0
