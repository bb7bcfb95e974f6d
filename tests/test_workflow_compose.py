"""Call and map steps through the contract, with real SDK workers (SQLite or PostgreSQL)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from control_plane.errors import InvalidArgument
from control_plane.server import App
from hms.mgmt.v1 import workflow_pb2 as pb
from hms_mgmt import Client, Process, ProcessState, StepKind, StepState, TaskContext, TaskFailure, Worker
from tests.workflow_support import Services, finish

# The child: holds a slot (undone by release), then waits for a decision.
REVIEW = """
name: review
input_schema: {type: object, required: [application], properties: {application: {type: string}}}
steps:
  - id: hold
    task: {service: Review, type: hold}
    input: {application: "input.application"}
    compensate: {service: Review, type: release, input: {slot: "steps.hold.output.slot"}}
  - id: decide
    task: {service: Review, type: decide}
output: {decision: "steps.decide.output.decision", slot: "steps.hold.output.slot"}
"""

# The parent: charges (undone by refund), calls review, then files the result.
PERMIT = """
name: permit
steps:
  - id: charge
    task: {service: Pay, type: charge}
    compensate: {service: Pay, type: refund}
  - id: review
    call: {definition: review, version: ">=1,<2", input: {application: "input.application_id"}}
  - id: file
    task: {service: Pay, type: file}
    input: {decision: "steps.review.output.decision"}
    retry: {max_attempts: 1}
output: {decision: "steps.review.output.decision"}
"""


async def _permit_and_review(client: Client, services: Services) -> None:
    await client.workflow.apply(REVIEW)
    await client.workflow.apply(PERMIT)
    await services.start("Pay", "charge", "refund", "file")
    await services.start("Review", "hold", "release", "decide")
    services.behaviour["hold"] = lambda t: {"slot": f"slot-{t.input['application']}"}


async def _wait_state(client: Client, process_id: str, *states: pb.ProcessState.ValueType) -> Process:
    async with asyncio.timeout(20):
        async for frame in client.workflow.watch(process_id):
            if frame.process is not None and int(frame.process.state) in states:
                return await client.workflow.status(process_id)
    return await client.workflow.status(process_id)


async def test_a_call_step_runs_the_child_and_takes_its_output(client: Client, services: Services) -> None:
    await _permit_and_review(client, services)
    services.behaviour["decide"] = lambda t: {"decision": "approved"}
    parent = await client.workflow.start("permit", {"application_id": "A-1"}, business_key="A-1")
    done = await finish(client, parent.id)

    assert done.state == ProcessState.COMPLETED, done.error
    assert dict(done.output) == {"decision": "approved"}
    review = next(s for s in done.steps if s.step_id == "review")
    assert review.kind == StepKind.CALL and review.child_process_id
    assert list(done.child_process_ids) == [review.child_process_id]
    child = await client.workflow.status(review.child_process_id)
    assert child.state == ProcessState.COMPLETED
    assert child.parent_process_id == parent.id and child.parent_step_id == "review"
    assert child.business_key == "permit:A-1/review"
    assert dict(child.input) == {"application": "A-1"}
    listed = await client.workflow.list(parent_process_id=parent.id)
    assert [p.id for p in listed] == [child.id]
    assert all(p.parent_process_id == "" for p in await client.workflow.list(definition="permit"))
    # Starting the parent again with its key returns it: the child is not started twice.
    again = await client.workflow.start("permit", {"application_id": "A-1"}, business_key="A-1")
    assert again.id == parent.id
    assert len(await client.workflow.list(definition="review")) == 1


async def test_cancelling_the_parent_mid_child_cancels_the_child_and_compensates_both(
    client: Client, services: Services
) -> None:
    await _permit_and_review(client, services)
    deciding = asyncio.Event()

    async def decide_slowly(task: TaskContext) -> dict[str, Any]:
        deciding.set()
        await asyncio.Event().wait()  # until the task is withdrawn (the worker cancels the handler)
        return {}

    services.behaviour["decide"] = decide_slowly
    parent = await client.workflow.start("permit", {"application_id": "A-2"})
    async with asyncio.timeout(20):
        await deciding.wait()
    running = await client.workflow.status(parent.id)
    assert running.state == ProcessState.RUNNING
    (child_id,) = running.child_process_ids

    await client.workflow.cancel(parent.id, reason="applicant withdrew", compensate=True)
    done = await _wait_state(client, parent.id, pb.PROCESS_STATE_CANCELLED, pb.PROCESS_STATE_FAILED)
    child = await _wait_state(client, child_id, pb.PROCESS_STATE_CANCELLED, pb.PROCESS_STATE_FAILED)

    assert done.state == ProcessState.CANCELLED
    assert child.state == ProcessState.CANCELLED
    assert services.types(parent.id) == ["charge", "refund"]
    assert services.types(child_id) == ["hold", "decide", "release"]
    steps = {s.step_id: s.state for s in child.steps}
    assert steps == {"hold": StepState.COMPENSATED, "decide": StepState.CANCELLED}


async def test_compensating_the_parent_compensates_its_completed_child_first(
    client: Client, services: Services
) -> None:
    await _permit_and_review(client, services)
    services.behaviour["decide"] = lambda t: {"decision": "rejected"}

    def file(task: TaskContext) -> dict[str, Any]:
        raise TaskFailure("REGISTRY_CLOSED", "the registry refuses", non_retryable=True)

    services.behaviour["file"] = file
    parent = await client.workflow.start("permit", {"application_id": "A-3"})
    done = await _wait_state(client, parent.id, pb.PROCESS_STATE_COMPENSATED, pb.PROCESS_STATE_FAILED)

    assert done.state == ProcessState.COMPENSATED, done.error
    (child_id,) = done.child_process_ids
    child = await client.workflow.status(child_id)
    assert child.state == ProcessState.COMPENSATED
    # Reverse order of completion: the child's own compensations (release) before the refund.
    order = [t for t, p, _ in services.calls if t in ("release", "refund")]
    assert order == ["release", "refund"]
    review = next(s for s in done.steps if s.step_id == "review")
    assert review.state == StepState.COMPENSATED


async def test_a_call_to_a_missing_version_fails_the_step(client: Client, services: Services) -> None:
    await client.workflow.apply(PERMIT.replace('">=1,<2"', '">=2"'))
    await client.workflow.apply(REVIEW)
    await services.start("Pay", "charge", "refund", "file")
    parent = await client.workflow.start("permit", {"application_id": "A-4"})
    done = await _wait_state(client, parent.id, pb.PROCESS_STATE_COMPENSATED, pb.PROCESS_STATE_FAILED)
    assert done.state == ProcessState.COMPENSATED
    assert done.error.code == "CALL_DEFINITION" and done.error.step_id == "review"
    assert not done.child_process_ids


def _inspections(concurrency: int, tolerance: str = "") -> str:
    return f"""
name: inspections
steps:
  - id: inspect
    map:
      items: "input.buildings"
      max_concurrency: {concurrency}
      {tolerance}
      steps:
        - id: look
          task: {{service: Inspect, type: look}}
          input: {{building: "item", position: "index"}}
          retry: {{max_attempts: 1}}
        - id: report
          task: {{service: Inspect, type: report}}
          input: {{building: "item", seen: "steps.look.output.seen"}}
  - id: summary
    task: {{service: Inspect, type: summarise}}
    input: {{reports: "steps.inspect.output"}}
output: {{reports: "steps.inspect.output"}}
"""


class _Gauge:
    """Tasks outstanding at the worker: started by a handler and not yet returned."""

    def __init__(self, watched: int) -> None:
        self.now = 0
        self.most = 0
        self.watched = watched
        self.reached = asyncio.Event()  # set once `watched` tasks were outstanding together

    async def hold(self, release: asyncio.Event) -> None:
        self.now += 1
        self.most = max(self.most, self.now)
        if self.now >= self.watched:
            self.reached.set()
        try:
            await release.wait()
        finally:
            self.now -= 1


async def _inspect_worker(client: Client, gauge: _Gauge, release: asyncio.Event, fail: set[int]) -> Worker:
    worker = Worker(client, "Inspect", max_in_flight=200, drain_timeout_s=1.0)

    @worker.task("look")
    async def look(task: TaskContext) -> dict[str, Any]:
        await gauge.hold(release)
        if task.input["building"] in fail:
            raise TaskFailure("UNSAFE", f"building {task.input['building']} is unsafe", non_retryable=True)
        assert task.input["position"] == task.input["building"]
        return {"seen": task.input["building"] * 10}

    @worker.task("report")
    async def report(task: TaskContext) -> dict[str, Any]:
        await gauge.hold(release)
        return {"building": task.input["building"], "seen": task.input["seen"]}

    @worker.task("summarise")
    async def summarise(task: TaskContext) -> dict[str, Any]:
        return {"count": len(task.input["reports"])}

    return worker


async def _run_worker(worker: Worker) -> asyncio.Task[None]:
    run = asyncio.create_task(worker.run())
    async with asyncio.timeout(10):
        await worker.ready.wait()
    return run


async def test_a_map_of_1000_items_keeps_to_max_concurrency_and_item_order(client: Client) -> None:
    await client.workflow.apply(_inspections(50))
    gauge, release = _Gauge(50), asyncio.Event()
    worker = await _inspect_worker(client, gauge, release, set())
    run = await _run_worker(worker)
    try:
        process = await client.workflow.start("inspections", {"buildings": list(range(1000))})
        async with asyncio.timeout(20):
            await gauge.reached.wait()  # the first 50 items' tasks reach the worker (the worker takes 200)
        running = await client.workflow.status(process.id)
        inspect = next(s for s in running.steps if s.step_id == "inspect")
        assert (inspect.items_total, inspect.items_started) == (1000, 50)
        release.set()
        async with asyncio.timeout(120):
            done = await client.workflow.wait(process.id)
    finally:
        worker.stop()
        await run

    assert done.state == ProcessState.COMPLETED, done.error
    assert gauge.most == 50
    assert done.output["reports"] == [{"building": i, "seen": i * 10} for i in range(1000)]
    summary = next(s for s in done.steps if s.step_id == "summary")
    assert dict(summary.output) == {"count": 1000}
    inspect = next(s for s in done.steps if s.step_id == "inspect")
    assert inspect.output["value"] == [{"building": i, "seen": i * 10} for i in range(1000)]
    assert (inspect.items_completed, inspect.items_failed) == (1000, 0)
    # The record holds no item's steps once they ended.
    assert {s.step_id for s in done.steps} == {"inspect", "summary"}


@pytest.mark.parametrize(
    ("tolerance", "completes"),
    [
        ("", False),
        ("tolerated_failures: 4", True),
        ("tolerated_failures: 3", False),
        ("tolerated_failure_percent: 40", True),
        ("tolerated_failure_percent: 30", False),
    ],
)
async def test_a_map_tolerates_as_many_failed_items_as_it_says(
    client: Client, tolerance: str, completes: bool
) -> None:
    await client.workflow.apply(_inspections(3, tolerance))
    release = asyncio.Event()
    release.set()
    worker = await _inspect_worker(client, _Gauge(1), release, {0, 3, 6, 9})
    run = await _run_worker(worker)
    try:
        process = await client.workflow.start("inspections", {"buildings": list(range(10))})
        async with asyncio.timeout(30):
            done = await client.workflow.wait(process.id)
    finally:
        worker.stop()
        await run

    inspect = next(s for s in done.steps if s.step_id == "inspect")
    if completes:
        assert done.state == ProcessState.COMPLETED, done.error
        expected = [None if i % 3 == 0 else {"building": i, "seen": i * 10} for i in range(10)]
        assert done.output["reports"] == expected
        assert (inspect.items_completed, inspect.items_failed) == (6, 4)
    else:
        assert done.state == ProcessState.FAILED
        assert done.error.code == "MAP_ITEMS_FAILED" and done.error.step_id == "inspect"
        assert inspect.state == StepState.FAILED
        assert inspect.items_failed <= 4


async def test_an_empty_map_completes_with_an_empty_list(client: Client) -> None:
    await client.workflow.apply(_inspections(5))
    worker = await _inspect_worker(client, _Gauge(1), asyncio.Event(), set())
    run = await _run_worker(worker)
    try:
        process = await client.workflow.start("inspections", {"buildings": []})
        async with asyncio.timeout(20):
            done = await client.workflow.wait(process.id)
    finally:
        worker.stop()
        await run
    assert done.state == ProcessState.COMPLETED
    assert done.output["reports"] == []


async def test_a_map_over_something_not_a_list_fails_the_step(client: Client) -> None:
    await client.workflow.apply(_inspections(5))
    process = await client.workflow.start("inspections", {"buildings": "all of them"})
    async with asyncio.timeout(20):
        done = await client.workflow.wait(process.id)
    assert done.state == ProcessState.FAILED
    assert done.error.code == "MAP_ITEMS"


@pytest.mark.parametrize(
    ("steps", "field", "says"),
    [
        (
            """
  - id: each
    map:
      items: "input.xs"
      steps:
        - {id: nap, sleep: 1s}""",
            "steps[0].map.steps[0]",
            "task steps",
        ),
        (
            """
  - id: each
    map:
      items: "input.xs"
      steps:
        - {id: look, task: {service: S, type: t}}
  - id: after
    task: {service: S, type: t}
    input: {seen: "steps.look.output"}""",
            "steps[1].input.seen",
            "once per item of map step 'each'",
        ),
        (
            """
  - id: each
    map:
      items: "input.xs"
      max_concurrency: 0
      steps:
        - {id: look, task: {service: S, type: t}}""",
            "steps[0].map.max_concurrency",
            "whole number",
        ),
        (
            """
  - id: each
    task: {service: S, type: t}
    input: {x: "item"}""",
            "steps[0].input.x",
            "unknown variable 'item'",
        ),
        (
            """
  - id: sub
    call: {definition: review, version: "not a range!"}""",
            "steps[0].call.version",
            "not a version",
        ),
        (
            """
  - id: sub
    call: {version: "1"}""",
            "steps[0].call.definition",
            "is required",
        ),
    ],
)
async def test_bad_call_and_map_steps_are_refused_with_the_field_at_fault(
    client: Client, steps: str, field: str, says: str
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await client.workflow.apply(f"name: bad\nsteps:{steps}\n")
    violations = {v.field: v.description for v in refused.value.violations}
    assert field in violations, violations
    assert says in violations[field]


async def test_a_definition_calling_itself_stops_at_the_depth_limit(client: Client) -> None:
    await client.workflow.apply("name: loop\nsteps:\n  - id: again\n    call: {definition: loop}\n")
    process = await client.workflow.start("loop", {})
    async with asyncio.timeout(30):
        done = await client.workflow.wait(process.id)
    # Each process started the next in the same transition, down to the deepest, whose step failed.
    assert done.state == ProcessState.FAILED
    assert done.error.code == "CALL_FAILED"
    depth, current = 0, done
    while current.child_process_ids:
        (child_id,) = current.child_process_ids
        current = await client.workflow.status(child_id)
        depth += 1
    assert depth == 16
    assert current.error.code == "CALL_DEPTH"


TEN_THOUSAND = """
name: many
steps:
  - id: each
    map:
      items: "input.xs"
      max_concurrency: 100
      steps:
        - {id: one, task: {service: Many, type: one}, input: {x: "item"}}
"""


@pytest.mark.timeout(300)
async def test_a_map_of_10000_items_completes_without_growing_the_process_record(
    server: App, client: Client
) -> None:
    await client.workflow.apply(TEN_THOUSAND)
    handled = 0
    every_thousand = asyncio.Event()
    worker = Worker(client, "Many", max_in_flight=200, drain_timeout_s=1.0)

    @worker.task("one")
    async def one(task: TaskContext) -> dict[str, Any]:
        nonlocal handled
        handled += 1
        if handled % 1000 == 0:
            every_thousand.set()
        return {"x": task.input["x"]}

    run = await _run_worker(worker)
    sizes: list[int] = []
    try:
        process = await client.workflow.start("many", {"xs": list(range(10_000))})
        empty = await server.store.wf_process(process.id)
        assert empty is not None
        async with asyncio.timeout(240):
            while handled < 9000:
                every_thousand.clear()
                await every_thousand.wait()
                record = await server.store.wf_process(process.id)
                assert record is not None
                sizes.append(len(orjson.dumps(record.to_json())))
            done = await client.workflow.wait(process.id)
    finally:
        worker.stop()
        await run

    assert done.state == ProcessState.COMPLETED, done.error
    # The last step's output is the process's: the items' outputs, in item order.
    assert done.output["value"] == [{"x": x} for x in range(10_000)]
    # While it ran, the record held the input, the counters and at most 100 running items' steps:
    # what it holds besides the input stays under 100 step runs' worth, however many items ended.
    beside_input = [size - len(orjson.dumps(empty.to_json())) for size in sizes]
    assert len(sizes) >= 5 and max(beside_input) < 100 * 400, beside_input


async def test_a_parent_that_times_out_cancels_its_running_child(client: Client, services: Services) -> None:
    await _permit_and_review(client, services)
    await client.workflow.apply(PERMIT.replace("name: permit", "name: permit\ntimeout: 1s"))

    async def decide_never(task: TaskContext) -> dict[str, Any]:
        await asyncio.Event().wait()  # until the task is withdrawn
        return {}

    services.behaviour["decide"] = decide_never
    parent = await client.workflow.start("permit", {"application_id": "A-5"})
    done = await _wait_state(client, parent.id, pb.PROCESS_STATE_FAILED, pb.PROCESS_STATE_COMPENSATED)
    (child_id,) = done.child_process_ids
    child = await _wait_state(client, child_id, pb.PROCESS_STATE_CANCELLED, pb.PROCESS_STATE_FAILED)

    assert done.error.code == "PROCESS_TIMEOUT"
    assert child.state == ProcessState.CANCELLED
    assert services.types(child_id) == ["hold", "decide", "release"]
