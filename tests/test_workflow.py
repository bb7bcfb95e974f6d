"""The workflow engine through a real server with real SDK workers."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from control_plane.errors import InvalidArgument
from control_plane.server import running
from control_plane.settings import Settings
from hms.mgmt.v1 import workflow_pb2 as pb
from hms.mgmt.v1 import workflow_pb2_grpc
from hms_mgmt import Client, TaskContext, TaskFailure, Unavailable, Worker
from hms_mgmt.types import Applied, Definition, HistoryEvent, HistoryEventType, ProcessState, StepState
from tests.workflow_support import Services, finish, next_tasks, permit_services, wait_for_step

FAST_RETRY = "retry: {max_attempts: 3, initial_interval: 10ms, backoff: 2.0, max_interval: 50ms}"

PERMIT = f"""
name: permit
steps:
  - id: validate
    task: {{service: Docs, type: validate}}
    input: {{application: "input.application_id"}}
  - id: charge
    task: {{service: Pay, type: charge}}
    input: {{amount: "input.cost / 100.0"}}
    {FAST_RETRY}
    compensate: {{service: Pay, type: refund, input: {{receipt: "steps.charge.output.receipt"}}}}
  - id: schedule
    task: {{service: Inspect, type: schedule}}
    {FAST_RETRY}
    compensate: {{service: Inspect, type: unschedule}}
  - id: decide
    task: {{service: Docs, type: decide}}
    input: {{slot: "steps.schedule.output.slot"}}
    retry: {{max_attempts: 2, initial_interval: 10ms, non_retryable: [REJECTED_FOR_GOOD]}}
output: {{decision: "steps.decide.output.decision", receipt: "steps.charge.output.receipt"}}
"""


async def test_a_process_runs_its_steps_in_order_and_completes(client: Client, services: Services) -> None:
    await permit_services(services, PERMIT)
    async with client.bus.subscribe("workflow.permit.>") as events:
        process = await client.workflow.start("permit", {"application_id": "a1", "cost": 12000})
        done = await finish(client, process.id)
        published: list[str] = []
        async with asyncio.timeout(5):
            while not published or published[-1] != "process_completed":
                published.append((await anext(events)).message.subject.rsplit(".", 1)[-1])

    assert done.state == ProcessState.COMPLETED
    assert dict(done.output) == {"decision": "approved", "receipt": "r-120"}
    assert services.types(process.id) == ["validate", "charge", "schedule", "decide"]
    assert [s.state for s in done.steps] == [StepState.COMPLETED] * 4
    history = list(await client.workflow.history(process.id))
    assert [e.sequence for e in history] == list(range(1, len(history) + 1))
    completed = [e.step_id for e in history if e.type == HistoryEventType.STEP_COMPLETED]
    assert completed == ["validate", "charge", "schedule", "decide"]
    started = history[0]
    assert isinstance(started, HistoryEvent) and started.type is HistoryEventType.PROCESS_STARTED
    assert started.process_id == process.id and started.time is not None and started.time.tzinfo is not None
    assert started.proto.type == pb.HISTORY_EVENT_TYPE_PROCESS_STARTED and isinstance(started.details, dict)
    assert published[0] == "process_started" and published.count("step_completed") == 4


TYPED = """
name: typed_defs
description: Typed answers
steps:
  - id: nap
    sleep: 1ms
"""


async def test_definitions_and_their_application_are_typed_values_keeping_their_messages(
    client: Client,
) -> None:
    first = await client.workflow.apply(TYPED)
    again = await client.workflow.apply(TYPED)
    stored = await client.workflow.definition("typed_defs")
    (listed,) = await client.workflow.definitions("typed_defs")

    assert isinstance(first, Applied) and (first.name, first.version, first.created) == (
        "typed_defs",
        1,
        True,
    )
    assert (again.version, again.created) == (1, False) and again.definition.digest == first.definition.digest
    assert isinstance(stored, Definition) and stored.source == TYPED and stored.description == "Typed answers"
    assert stored.spec["steps"] == [{"id": "nap", "sleep": "1ms"}] and stored.created_at is not None
    assert isinstance(stored.proto, pb.Definition) and stored.proto.digest == stored.digest
    assert (listed.name, listed.version, listed.source) == ("typed_defs", 1, "")
    assert isinstance(first.proto, pb.RegisterDefinitionResponse) and first.proto.created


async def test_retries_with_backoff_then_success(client: Client, services: Services) -> None:
    await permit_services(services, PERMIT)

    def flaky(task: TaskContext) -> dict[str, Any]:
        if task.attempt < 3:
            raise TaskFailure("GATEWAY_DOWN", "try again")
        return {"receipt": "r-ok"}

    services.behaviour["charge"] = flaky
    process = await client.workflow.start("permit", {"application_id": "a2", "cost": 100})
    done = await finish(client, process.id)

    assert done.state == ProcessState.COMPLETED
    charge = next(s for s in done.steps if s.step_id == "charge")
    assert charge.attempts == 3
    assert charge.last_error.code == "GATEWAY_DOWN"
    assert [a for t, p, a in services.calls if t == "charge" and p == process.id] == [1, 2, 3]


async def test_a_step_failing_for_good_compensates_completed_steps_in_reverse(
    client: Client, services: Services
) -> None:
    await permit_services(services, PERMIT)

    def reject(task: TaskContext) -> None:
        raise TaskFailure("REJECTED_FOR_GOOD", "no")

    services.behaviour["decide"] = reject
    process = await client.workflow.start("permit", {"application_id": "a3", "cost": 5000})
    done = await finish(client, process.id)

    assert done.state == ProcessState.COMPENSATED
    assert done.error.code == "REJECTED_FOR_GOOD" and done.error.step_id == "decide"
    assert services.types(process.id) == ["validate", "charge", "schedule", "decide", "unschedule", "refund"]
    states = {s.step_id: s.state for s in done.steps}
    assert states == {
        "validate": StepState.COMPLETED,
        "charge": StepState.COMPENSATED,
        "schedule": StepState.COMPENSATED,
        "decide": pb.STEP_STATE_FAILED,
    }
    refund = next(c for c in services.calls if c[0] == "refund")
    assert refund[2] == 1


async def test_nothing_to_compensate_ends_failed(client: Client, services: Services) -> None:
    await permit_services(services, PERMIT)
    services.behaviour["validate"] = lambda t: (_ for _ in ()).throw(
        TaskFailure("INVALID_DOCUMENTS", non_retryable=True)
    )
    process = await client.workflow.start("permit", {"application_id": "a4", "cost": 1})
    done = await finish(client, process.id)

    assert done.state == ProcessState.FAILED
    assert done.error.code == "INVALID_DOCUMENTS"
    assert services.types(process.id) == ["validate"]


async def test_starting_twice_with_a_business_key_returns_the_same_process(
    client: Client, services: Services
) -> None:
    await permit_services(services, PERMIT)
    first = await client.workflow.start("permit", {"application_id": "a5", "cost": 1}, business_key="app-5")
    second = await client.workflow.start(
        "permit", {"application_id": "other", "cost": 2}, business_key="app-5"
    )

    assert second.id == first.id
    assert dict(second.input)["application_id"] == "a5"


SIGNALS = """
name: signals
steps:
  - id: prepare
    task: {service: Docs, type: validate}
  - id: result
    wait_signal: {name: inspection_result, timeout: 30s}
  - id: route
    choice:
      - when: "steps.result.output.approved == true"
        steps:
          - id: approve
            task: {service: Docs, type: decide}
    default:
      - id: reject
        task: {service: Docs, type: validate}
output: {approved: "steps.result.output.approved"}
"""


async def test_signals_before_and_after_the_wait_and_a_choice(client: Client, services: Services) -> None:
    await client.workflow.apply(SIGNALS)
    await services.start("Docs", "validate", "decide")

    gate = asyncio.Event()

    async def held(task: TaskContext) -> dict[str, Any]:
        await gate.wait()  # the first step cannot finish before the signal is sent
        return {}

    services.behaviour["validate"] = held
    early = await client.workflow.start("signals", {})
    buffered = await client.workflow.signal(early.id, "inspection_result", {"approved": True})
    gate.set()
    late = await client.workflow.start("signals", {})
    await wait_for_step(client, late.id, "result")
    delivered = await client.workflow.signal(
        late.id, "inspection_result", {"approved": False}, signal_id="s1"
    )
    again = await client.workflow.signal(late.id, "inspection_result", {"approved": True}, signal_id="s1")

    first, second = await finish(client, early.id), await finish(client, late.id)

    assert buffered.buffered and not delivered.buffered and again.duplicate
    assert (first.state, dict(first.output)) == (ProcessState.COMPLETED, {"approved": True})
    assert services.types(early.id) == ["validate", "decide"]
    assert services.types(late.id) == ["validate", "validate"]
    assert second.state == ProcessState.COMPLETED
    assert {s.step_id: s.state for s in second.steps}["reject"] == StepState.COMPLETED


PARALLEL = """
name: fanout
steps:
  - id: both
    parallel:
      - steps:
          - {id: left, task: {service: Docs, type: validate}}
      - steps:
          - {id: right, task: {service: Docs, type: decide}}
  - id: pause
    sleep: 50ms
"""


async def test_parallel_branches_join_then_a_sleep(client: Client, services: Services) -> None:
    await client.workflow.apply(PARALLEL)
    await services.start("Docs", "validate", "decide")
    process = await client.workflow.start("fanout", {})
    done = await finish(client, process.id)

    assert done.state == ProcessState.COMPLETED
    assert sorted(services.types(process.id)) == ["decide", "validate"]
    both = next(s for s in done.steps if s.step_id == "both")
    assert set(dict(both.output)) == {"left", "right"}


HOLD = """
name: hold
steps:
  - id: hold
    task: {service: Solo, type: hold}
"""

HOLD_ONE_SECOND = """
name: hold_1s
steps:
  - id: hold
    task: {service: Solo, type: hold}
    timeout: 1s
    retry: {max_attempts: 1}
"""


@pytest.mark.parametrize("stopped_by", ["process_cancelled", "timed_out"])
async def test_worker_cancels_handler_and_frees_credit(client: Client, stopped_by: str) -> None:
    await client.workflow.apply(HOLD)
    await client.workflow.apply(HOLD_ONE_SECOND)
    running: set[str] = set()
    most_at_once = 0
    cancelled: list[str] = []
    entered = asyncio.Event()

    async def hold(task: TaskContext) -> dict[str, Any]:
        nonlocal most_at_once
        running.add(task.process_id)
        most_at_once = max(most_at_once, len(running))
        try:
            if not entered.is_set():  # the first task never finishes by itself
                entered.set()
                await asyncio.Event().wait()
            return {"held": task.process_id}
        except asyncio.CancelledError:
            cancelled.append(task.process_id)
            raise
        finally:
            running.discard(task.process_id)

    worker = Worker(client, "Solo", instance_id="solo-1", max_in_flight=1, drain_timeout_s=1.0)
    worker.task("hold")(hold)
    run = asyncio.create_task(worker.run())
    try:
        definition = "hold" if stopped_by == "process_cancelled" else "hold_1s"
        stuck = await client.workflow.start(definition, {})
        async with asyncio.timeout(10):
            await entered.wait()
        if stopped_by == "process_cancelled":
            await client.workflow.cancel(stuck.id, "applicant withdrew")
        ended = await finish(client, stuck.id)
        # The worker's only credit must be free again, and its handler not still running beside the next.
        after = await client.workflow.start("hold", {})
        done = await finish(client, after.id)
        cancelled_while_serving = list(cancelled)  # stopping the worker would cancel what still runs
    finally:
        worker.stop()
        async with asyncio.timeout(10):
            await run

    if stopped_by == "process_cancelled":
        assert ended.state == ProcessState.CANCELLED and ended.cancel_reason == "applicant withdrew"
    else:
        assert ended.state == ProcessState.FAILED and ended.error.code == "TIMEOUT"
    assert cancelled_while_serving == [stuck.id]
    assert done.state == ProcessState.COMPLETED and dict(done.output) == {"held": after.id}
    assert most_at_once == 1


WAITING = """
name: waiting
steps:
  - id: result
    wait_signal: {name: go}
"""


async def test_watch_process_ends_unavailable_on_shutdown(settings: Settings) -> None:
    async with running(settings) as app:
        client = Client(app.address)
        await client.workflow.apply(WAITING)
        process = await client.workflow.start("waiting", {})
        raw = client.channel
        stream = workflow_pb2_grpc.WorkflowStub(raw).WatchProcess(
            pb.WatchProcessRequest(process_id=process.id)
        )
        watch = client.workflow.watch(process.id)
        async with asyncio.timeout(10):
            first = await stream.read()
            sdk_first = await anext(watch)
    # The control plane has stopped while the process still waits.
    try:
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async with asyncio.timeout(10):
                await stream.read()
        with pytest.raises(Unavailable):
            async with asyncio.timeout(10):
                await anext(watch)  # with a single address: no process that has not ended
    finally:
        await client.close()

    assert isinstance(first, pb.WatchProcessResponse) and first.process.state == pb.PROCESS_STATE_RUNNING
    assert sdk_first.process is not None and sdk_first.process.state == ProcessState.RUNNING
    assert sdk_first.proto.process.state == pb.PROCESS_STATE_RUNNING  # the message it was made from
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_reports_for_stale_attempts_change_nothing(client: Client, services: Services) -> None:
    await client.workflow.apply(PERMIT)
    await client.registry.register("Docs", "127.0.0.1:1", instance_id="manual")
    process = await client.workflow.start("permit", {"application_id": "a7", "cost": 1})
    stream = client.workflow.subscribe_tasks("Docs", "manual", ["validate"], 1)
    try:
        frame = await next_tasks(stream)
        token = frame.tasks[0].task_token
        first = await client.workflow.complete(token, {"ok": True})
        repeated = await client.workflow.complete(token, {"ok": False})
        with pytest.raises(InvalidArgument):  # a made-up attempt: the token's MAC no longer matches
            await client.workflow.complete(token.replace("/1/", "/7/"), {})
    finally:
        stream.cancel()

    assert first.result == pb.REPORT_RESULT_ACCEPTED
    assert repeated.result == pb.REPORT_RESULT_ALREADY_REPORTED
    status = await client.workflow.status(process.id)
    assert dict(next(s for s in status.steps if s.step_id == "validate").output) == {"ok": True}


async def test_a_completion_after_the_attempt_failed_changes_nothing(client: Client) -> None:
    await client.workflow.apply(PERMIT)
    await client.registry.register("Docs", "127.0.0.1:1", instance_id="manual")
    await client.workflow.start("permit", {"application_id": "a7", "cost": 1})
    stream = client.workflow.subscribe_tasks("Docs", "manual", ["validate"], 1)
    try:
        token = (await next_tasks(stream)).tasks[0].task_token
        failed = await client.workflow.fail(token, "FLAKY", "try again")  # attempt 2 is scheduled
        late = await client.workflow.complete(token, {"ok": True})
    finally:
        stream.cancel()

    assert failed.result == pb.REPORT_RESULT_ACCEPTED
    assert late.result == pb.REPORT_RESULT_ALREADY_REPORTED


async def test_a_task_held_by_a_vanished_worker_goes_to_another(client: Client, services: Services) -> None:
    await permit_services(services, PERMIT)
    blocked = asyncio.Event()

    async def hang(task: TaskContext) -> dict[str, Any]:
        blocked.set()
        await asyncio.Event().wait()
        return {}

    services.behaviour["validate"] = hang
    first_docs = services.workers[0]
    process = await client.workflow.start("permit", {"application_id": "a8", "cost": 1})
    async with asyncio.timeout(10):
        await blocked.wait()
    services.behaviour["validate"] = lambda t: {"by": "second"}
    await services.start("Docs", "validate", "decide", instance_id="docs-2")
    first_docs.stop()  # its stream closes: the held task is requeued at once
    done = await finish(client, process.id)

    assert done.state == ProcessState.COMPLETED
    assert dict(next(s for s in done.steps if s.step_id == "validate").output) == {"by": "second"}


async def test_invalid_definitions_name_the_path_at_fault(client: Client) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await client.workflow.apply(
            "name: bad\nsteps:\n  - id: a\n    task: {service: S, type: t}\n    retires: 3\n"
        )

    assert any(v.field.startswith("steps[0]") for v in caught.value.violations), caught.value.violations
