"""Timing rules of workflow operations on a fake clock: compensation at the process timeout, retention."""

from __future__ import annotations

from control_plane.core.workflow.workflows import DEFAULT_RETENTION_S
from control_plane.errors import NotFound
from control_plane.models import EventType, ProcessState, StepState, TaskAttempt
from tests.core.conftest import Cores
from tests.core.test_workflow_timing import next_task, process, start, worker


async def complete(cores: Cores, task: TaskAttempt, output: dict[str, object]) -> None:
    token = cores.workflows.wire_token(task.token, task.service)
    await cores.workflows.complete(token, output, [])


TIMEOUT_AFTER_BOOKING = """
name: booking
timeout: 10m
steps:
  - id: book
    task: {service: Book, type: book}
    compensate: {service: Book, type: unbook, input: {ref: "steps.book.output.ref"}}
  - id: forever
    wait_signal: {name: never}
"""


async def test_a_process_timeout_compensates_its_completed_steps_then_ends_compensated(cores: Cores) -> None:
    async with worker(cores, "Book") as session:
        process_id = await start(cores, TIMEOUT_AFTER_BOOKING)
        book = await next_task(session)
        await complete(cores, book, {"ref": "B-1"})

        await cores.advance_to(599.999)
        waiting = await process(cores, process_id)
        await cores.advance_to(600.0)
        compensating = await process(cores, process_id)
        unbook = await next_task(session)
        await complete(cores, unbook, {})
        ended = await process(cores, process_id)

    assert waiting.state is ProcessState.RUNNING
    assert compensating.state is ProcessState.COMPENSATING
    assert compensating.steps["forever"].state is StepState.CANCELLED
    assert (unbook.compensation, unbook.step_id, unbook.input) == (True, "book", {"ref": "B-1"})
    assert ended.state is ProcessState.COMPENSATED
    assert ended.error is not None and ended.error["code"] == "PROCESS_TIMEOUT"
    assert ended.steps["book"].state is StepState.COMPENSATED


async def test_a_process_timeout_with_nothing_to_compensate_still_fails(cores: Cores) -> None:
    process_id = await start(cores, "name: idle\ntimeout: 1m\nsteps:\n  - {id: w, wait_signal: {name: x}}\n")

    await cores.advance_to(60.0)

    assert (await process(cores, process_id)).state is ProcessState.FAILED


ENDS_AFTER_SLEEP = """
name: short
steps:
  - id: nap
    sleep: {seconds}s
"""
FOREVER = "name: forever\nsteps:\n  - {id: w, wait_signal: {name: never}}\n"


async def test_retention_deletes_only_processes_that_ended_longer_ago_than_the_retention(
    cores: Cores,
) -> None:
    first = await start(cores, ENDS_AFTER_SLEEP.format(seconds=1))  # ends at 1 s
    second = await start(cores, ENDS_AFTER_SLEEP.replace("short", "longer").format(seconds=3600))  # at 1 h
    running = await start(cores, FOREVER)
    await cores.advance_to(3600.0)
    assert (await process(cores, second)).state is ProcessState.COMPLETED

    await cores.advance_to(1.0 + DEFAULT_RETENTION_S - 0.001)
    kept_all = await cores.workflows.apply_retention()
    await cores.advance_to(1.0 + DEFAULT_RETENTION_S + 0.001)
    removed_first = await cores.workflows.apply_retention()
    await cores.advance_to(3600.0 + DEFAULT_RETENTION_S + 1)
    removed_second = await cores.workflows.apply_retention()
    await cores.advance_to(10 * DEFAULT_RETENTION_S)
    removed_later = await cores.workflows.apply_retention()

    assert (kept_all, removed_first, removed_second, removed_later) == (0, 1, 1, 0)
    for gone in (first, second):
        try:
            await process(cores, gone)
            raise AssertionError(f"{gone} was kept")
        except NotFound:
            pass
        assert await cores.store.wf_history(gone, 0, 10) == []
    alive = await process(cores, running)
    assert alive.state is ProcessState.RUNNING
    events = await cores.store.wf_history(running, 0, 10)
    assert [e.type for e in events][:2] == [EventType.PROCESS_STARTED, EventType.PROCESS_RUNNING]
