"""Workflow timing on a fake clock: retry backoff, durable timers, attempt timeouts, lapsed workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from control_plane.core.registry import Registration
from control_plane.core.workflow.dispatch import WorkerSession
from control_plane.errors import ControlPlaneError
from control_plane.models import EventType, ProcessRecord, ProcessState, StepState, TaskAttempt
from tests.core.clock import FakeClock
from tests.core.conftest import Cores, running_cores

# A worker's lease longer than any test: only what a test is about ends it.
LONG_TTL_S = 3600.0


@asynccontextmanager
async def worker(
    cores: Cores, service: str, instance_id: str = "w1", ttl_s: float = LONG_TTL_S
) -> AsyncIterator[WorkerSession]:
    await cores.registry.register(Registration(service, "127.0.0.1:1", instance_id=instance_id, ttl_s=ttl_s))
    async with cores.workflows.worker(service, instance_id, [], 16) as session:
        yield session


async def next_task(session: WorkerSession) -> TaskAttempt:
    """The one task of the session's next frame (sent at once, or when what the test did lets it)."""
    async with asyncio.timeout(5):
        tasks, _ = await session.next_frame()
    (task,) = tasks
    return task


async def start(cores: Cores, source: str) -> str:
    definition, _ = await cores.workflows.register_definition(source, validate_only=False)
    record, _ = await cores.workflows.start(definition.name, 0, {}, "")
    return record.id


async def fail(cores: Cores, task: TaskAttempt) -> float | None:
    """Report a retryable failure now; returns when the next attempt is due (None: no more)."""
    token = cores.workflows.wire_token(task.token, task.service)
    report = await cores.workflows.fail(token, "DECLINED", "card declined", non_retryable=False, details=None)
    return report.retry_at


async def process(cores: Cores, process_id: str) -> ProcessRecord:
    return await cores.workflows.process(process_id)


@asynccontextmanager
async def transitions(cores: Cores, process_id: str) -> AsyncIterator[asyncio.Future[None]]:
    """A future done at the process's next transition (one that a spawned task commits, say)."""
    async with cores.workflows.watch(process_id) as changed:
        waiter = changed.waiter()
        yield waiter
        async with asyncio.timeout(5):
            await waiter


# -- retry backoff --------------------------------------------------------------------------------

BOUNDED = """
name: bounded
steps:
  - id: charge
    task: {service: Pay, type: charge}
    retry: {max_attempts: 5, initial_interval: 1s, backoff: 2.0, max_interval: 3s}
"""


async def test_retries_back_off_from_the_initial_interval_up_to_the_max_interval(cores: Cores) -> None:
    async with worker(cores, "Pay") as session:
        process_id = await start(cores, BOUNDED)
        started: list[float] = []
        retry_at: list[float | None] = []
        early: list[list[TaskAttempt]] = []
        for attempt in range(1, 6):
            task = await next_task(session)
            started.append(cores.clock.elapsed)
            assert task.attempt == attempt
            retry_at.append(await fail(cores, task))
            due = retry_at[-1]
            if due is not None:
                await cores.advance_to(due - cores.clock.at(0.0) - 0.001)
                early.append(list(session.to_send))
                await cores.advance_to(due - cores.clock.at(0.0))
        record = await process(cores, process_id)

    # Delays 1, 2, then 4 and 8 capped at 3: attempts at 0, 1, 3, 6 and 9 s; the fifth was the last.
    assert started == [0.0, 1.0, 3.0, 6.0, 9.0]
    assert retry_at == [cores.clock.at(t) for t in (1.0, 3.0, 6.0, 9.0)] + [None]
    assert early == [[], [], [], []]  # never a moment early
    assert record.state is ProcessState.FAILED
    assert record.steps["charge"].attempts == 5
    assert record.error is not None and record.error["code"] == "DECLINED"


DEFAULT_RETRY = """
name: defaulted
steps:
  - id: charge
    task: {service: Pay, type: charge}
"""


async def test_the_default_retry_is_3_attempts_1_s_apart_then_2_s(cores: Cores) -> None:
    async with worker(cores, "Pay") as session:
        process_id = await start(cores, DEFAULT_RETRY)
        first = await next_task(session)
        second_due = await fail(cores, first)
        await cores.advance_to(1.0)
        second = await next_task(session)
        third_due = await fail(cores, second)
        await cores.advance_to(3.0)
        third = await next_task(session)
        last = await fail(cores, third)
        record = await process(cores, process_id)

    assert (second_due, third_due, last) == (cores.clock.at(1.0), cores.clock.at(3.0), None)
    assert [t.attempt for t in (first, second, third)] == [1, 2, 3]
    assert record.state is ProcessState.FAILED


LONG_RETRY = """
name: persistent
steps:
  - id: charge
    task: {service: Pay, type: charge}
    retry: {max_attempts: 9}
"""


async def test_the_default_max_interval_is_100_times_the_initial_interval(cores: Cores) -> None:
    async with worker(cores, "Pay") as session:
        await start(cores, LONG_RETRY)
        started: list[float] = []
        while True:
            task = await next_task(session)
            started.append(cores.clock.elapsed)
            due = await fail(cores, task)
            if due is None:
                break
            await cores.advance_to(due - cores.clock.at(0.0))

    # 1, 2, 4, ... 64 s, then 128 capped at 100 s.
    assert started == [0.0, 1.0, 3.0, 7.0, 15.0, 31.0, 63.0, 127.0, 227.0]


async def test_a_retry_survives_a_restart_and_comes_at_its_time(core_url: str, clock: FakeClock) -> None:
    async with running_cores(core_url, clock) as before, worker(before, "Pay") as session:
        process_id = await start(before, BOUNDED)
        await fail(before, await next_task(session))  # attempt 2 due at 1 s
    # The same store opened again, as after a crash: the retry timer is durable.
    async with running_cores(core_url, clock) as after, worker(after, "Pay", "w2") as session:
        await after.advance_to(0.999)
        early = list(session.to_send)
        await after.advance_to(1.0)
        again = await next_task(session)

    assert early == []
    assert (again.process_id, again.attempt) == (process_id, 2)


# -- durable timers -------------------------------------------------------------------------------

NAP = """
name: nap
steps:
  - id: nap
    sleep: 30s
"""


async def test_a_sleep_ends_at_its_time(cores: Cores) -> None:
    await cores.advance_to(5.0)
    process_id = await start(cores, NAP)

    await cores.advance_to(34.999)
    asleep = await process(cores, process_id)
    await cores.advance_to(35.0)
    awake = await process(cores, process_id)

    assert (asleep.state, asleep.steps["nap"].state) == (ProcessState.RUNNING, StepState.WAITING)
    assert asleep.steps["nap"].timer_at == cores.clock.at(35.0)
    assert (awake.state, awake.ended_at) == (ProcessState.COMPLETED, cores.clock.at(35.0))


APPROVAL = """
name: approval
steps:
  - id: approve
    wait_signal: {name: approve, timeout: 1h}
"""


async def test_a_signal_wait_times_out_at_its_time(cores: Cores) -> None:
    process_id = await start(cores, APPROVAL)

    await cores.advance_to(3599.999)
    waiting = await process(cores, process_id)
    await cores.advance_to(3600.0)
    timed_out = await process(cores, process_id)

    assert waiting.state is ProcessState.RUNNING
    assert timed_out.state is ProcessState.FAILED
    assert timed_out.error is not None and timed_out.error["code"] == "SIGNAL_TIMEOUT"
    assert timed_out.ended_at == cores.clock.at(3600.0)


async def test_a_signal_in_time_clears_the_wait_timeout(cores: Cores) -> None:
    process_id = await start(cores, APPROVAL)
    await cores.advance_to(3599.0)

    await cores.workflows.signal(process_id, "approve", {"by": "clerk"}, "")
    await cores.advance_to(7200.0)
    record = await process(cores, process_id)

    assert (record.state, record.output) == (ProcessState.COMPLETED, {"by": "clerk"})
    assert await cores.store.wf_timers() == []


DEADLINE = """
name: deadline
timeout: 10m
steps:
  - id: forever
    wait_signal: {name: never}
"""


async def test_a_process_that_runs_out_of_time_fails_at_its_timeout(cores: Cores) -> None:
    process_id = await start(cores, DEADLINE)

    await cores.advance_to(599.999)
    running = await process(cores, process_id)
    await cores.advance_to(600.0)
    failed = await process(cores, process_id)

    assert running.state is ProcessState.RUNNING
    assert failed.state is ProcessState.FAILED
    assert failed.error is not None and failed.error["code"] == "PROCESS_TIMEOUT"
    assert failed.ended_at == cores.clock.at(600.0)


# -- attempt timeouts -----------------------------------------------------------------------------

TIMED = """
name: timed
steps:
  - id: slow
    task: {service: Slow, type: work}
    timeout: 1m
    heartbeat_timeout: 20s
    retry: {max_attempts: 2, initial_interval: 1s}
"""


async def heartbeat(cores: Cores, task: TaskAttempt, details: Any = None) -> None:
    await cores.workflows.heartbeat(cores.workflows.wire_token(task.token, task.service), details)


async def test_an_attempt_without_heartbeats_times_out_at_its_heartbeat_timeout(cores: Cores) -> None:
    async with worker(cores, "Slow") as session:
        process_id = await start(cores, TIMED)
        first = await next_task(session)
        await cores.advance_to(19.999)
        held = cores.workflows.dispatcher.holder(first.token)
        async with transitions(cores, process_id):
            await cores.advance_to(20.0)
        record = await process(cores, process_id)
        await cores.advance_to(21.0)  # the retry, 1 s after the timeout
        second = await next_task(session)

    assert held == "w1"
    assert record.steps["slow"].last_error is not None
    assert record.steps["slow"].last_error["code"] == "HEARTBEAT_TIMEOUT"
    assert record.steps["slow"].last_error["time"] == cores.clock.at(20.0)
    assert second.attempt == 2
    history = await cores.store.wf_history(process_id, 0, 100)
    assert [(e.attempt, e.time) for e in history if e.type is EventType.TASK_TIMED_OUT] == [
        (1, cores.clock.at(20.0))
    ]


async def test_heartbeats_keep_an_attempt_until_its_start_to_close_timeout(cores: Cores) -> None:
    async with worker(cores, "Slow") as session:
        process_id = await start(cores, TIMED)
        first = await next_task(session)
        for t in (15.0, 30.0, 45.0):  # each within 20 s of the one before
            await cores.advance_to(t)
            await heartbeat(cores, first, {"at": t})
        await cores.advance_to(59.999)
        held = cores.workflows.dispatcher.holder(first.token)
        async with transitions(cores, process_id):
            await cores.advance_to(60.0)  # heartbeats do not stretch the start-to-close timeout
        record = await process(cores, process_id)

    assert held == "w1"
    assert record.steps["slow"].last_error is not None
    assert record.steps["slow"].last_error["code"] == "TIMEOUT"
    assert record.steps["slow"].last_error["time"] == cores.clock.at(60.0)
    assert record.steps["slow"].heartbeat_details == {"at": 45.0}  # kept for the next attempt


async def test_a_heartbeat_moves_the_heartbeat_deadline_to_now_plus_the_timeout(cores: Cores) -> None:
    async with worker(cores, "Slow") as session:
        process_id = await start(cores, TIMED)
        first = await next_task(session)
        await cores.advance_to(12.0)
        await heartbeat(cores, first)
        await cores.advance_to(31.999)
        held = cores.workflows.dispatcher.holder(first.token)
        async with transitions(cores, process_id):
            await cores.advance_to(32.0)
        record = await process(cores, process_id)

    assert held == "w1"
    assert record.steps["slow"].last_error is not None
    assert record.steps["slow"].last_error["time"] == cores.clock.at(32.0)


ONE_STEP = """
name: onestep
steps:
  - id: only
    task: {service: Batch, type: job}
"""


async def test_a_worker_whose_lease_lapses_loses_its_tasks_at_that_moment(cores: Cores) -> None:
    async with worker(cores, "Batch", "lapsing", ttl_s=10.0) as doomed:
        await start(cores, ONE_STEP)
        held = await next_task(doomed)
        async with worker(cores, "Batch", "healthy") as rescuer:
            await cores.advance_to(9.999)
            still_held = cores.workflows.dispatcher.holder(held.token)
            await cores.advance_to(10.0)
            requeued = await next_task(rescuer)
            taken_at = cores.clock.elapsed
        with pytest.raises(ControlPlaneError, match="lease_expired"):
            await doomed.next_frame()

    assert still_held == "lapsing"
    assert (requeued.token, taken_at) == (held.token, 10.0)  # the same attempt, at once
