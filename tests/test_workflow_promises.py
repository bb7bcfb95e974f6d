"""What workflow.proto promises a client in any language, checked through the generated stubs only.

One test per promise (or per small group of promises of one comment), named after it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from google.protobuf import json_format

from control_plane.core.workflow.history_json import history_json
from control_plane.models import EventType, HistoryEvent, ProcessState
from control_plane.server import App
from control_plane.servicers import workflow_convert
from hms.mgmt.v1 import bus_pb2
from hms.mgmt.v1 import workflow_pb2 as pb
from tests.promise_support import Wire, next_task, read, seconds, types


@pytest.fixture
async def wire(server: App) -> AsyncIterator[Wire]:
    """Stubs on a channel to `server`."""
    connection = Wire(server.address)
    yield connection
    await connection.close()


TIMED = """
name: timed
steps:
  - id: work
    task: {service: Timed, type: work}
    timeout: 30s
    heartbeat_timeout: 10s
    retry: {max_attempts: 2, initial_interval: 1h}
"""


def started(token: str) -> pb.TaskEvent:
    return pb.TaskEvent(task_token=token, started=pb.TaskStarted())


def completed(token: str, **output: Any) -> pb.TaskEvent:
    event = pb.TaskEvent(task_token=token, completed=pb.TaskCompleted())
    event.completed.output.update(output)
    return event


def of_type(events: list[pb.HistoryEvent], kind: pb.HistoryEventType.ValueType) -> list[pb.HistoryEvent]:
    return [e for e in events if e.type == kind]


# -- item 1 of issue 12 ---------------------------------------------------------------------------


async def test_task_scheduled_history_carries_the_timeout_and_started_the_deadline(wire: Wire) -> None:
    """TASK_SCHEDULED: {"service", "task_type", "input", "compensation", "timeout", "heartbeat_timeout"};
    the deadline exists once a worker holds the attempt: Task.deadline, and TASK_STARTED's "deadline"."""
    await wire.apply(TIMED)
    process = await wire.start("timed", input={"n": 1})
    async with wire.worker("Timed", "timed-1") as stream:
        task = await next_task(stream)
        assert await wire.report(started(task.task_token)) == [pb.REPORT_RESULT_ACCEPTED]
    history = await wire.history(process.id)

    (scheduled,) = of_type(history, pb.HISTORY_EVENT_TYPE_TASK_SCHEDULED)
    assert (scheduled.step_id, scheduled.attempt) == ("work", 1)
    assert json_format.MessageToDict(scheduled.details) == {
        "service": "Timed",
        "task_type": "work",
        "input": {},
        "compensation": False,
        "timeout": 30.0,
        "heartbeat_timeout": 10.0,
    }
    (start,) = of_type(history, pb.HISTORY_EVENT_TYPE_TASK_STARTED)
    assert task.HasField("deadline")
    assert seconds(start.details.fields["deadline"].number_value) == task.deadline


async def test_task_started_is_recorded(wire: Wire) -> None:
    """TASK_STARTED: once per attempt, {"worker_instance_id", "deadline", "compensation"}, between the
    attempt's TASK_SCHEDULED and its outcome; a repeat is accepted and records nothing more; a started
    event for an attempt no worker holds is STALE_ATTEMPT."""
    await wire.apply(TIMED)
    process = await wire.start("timed")
    async with wire.worker("Timed", "timed-1") as stream:
        task = await next_task(stream)
        first = await wire.report(started(task.task_token))
        again = await wire.report(started(task.task_token))
        done = await wire.report(completed(task.task_token, ok=True))
        late = await wire.report(started(task.task_token))
    history = await wire.history(process.id)

    assert (first, again, done) == ([pb.REPORT_RESULT_ACCEPTED],) * 3
    assert late == [pb.REPORT_RESULT_STALE_ATTEMPT]
    assert types(history) == [
        "process_started",
        "process_running",
        "step_started:work",
        "task_scheduled:work",
        "task_started:work",
        "step_completed:work",
        "process_completed",
    ]
    (start,) = of_type(history, pb.HISTORY_EVENT_TYPE_TASK_STARTED)
    assert start.attempt == 1 and start.process_state == pb.PROCESS_STATE_RUNNING
    assert start.details["worker_instance_id"] == "timed-1" and start.details["compensation"] is False


async def test_step_status_shows_worker_instance_and_timer_at(wire: Wire) -> None:
    """StepStatus of a task step: SCHEDULED with no worker and no timer_at; once its worker reported
    `started`, RUNNING on that worker with timer_at = the attempt's deadline; RETRYING with timer_at =
    the next attempt's time; timer_at unset once the step ended."""
    await wire.apply(TIMED)
    process = await wire.start("timed")
    queued = await wire.step(process.id, "work")
    async with wire.worker("Timed", "timed-1") as stream:
        task = await next_task(stream)
        handed = await wire.step(process.id, "work")
        await wire.report(started(task.task_token))
        running = await wire.step(process.id, "work")
        failed = await wire.workflow.FailTask(
            pb.FailTaskRequest(task_token=task.task_token, error_code="FLAKY", message="try again")
        )
        retrying = await wire.step(process.id, "work")
    await wire.workflow.CancelProcess(pb.CancelProcessRequest(process_id=process.id, reason="enough"))
    cancelled = await wire.step(process.id, "work")

    assert queued.state == handed.state == pb.STEP_STATE_SCHEDULED
    assert (
        not queued.worker_instance_id and not queued.HasField("timer_at") and not handed.HasField("timer_at")
    )
    assert (running.state, running.worker_instance_id) == (pb.STEP_STATE_RUNNING, "timed-1")
    assert running.timer_at == task.deadline and running.attempts == 1
    assert failed.will_retry and retrying.state == pb.STEP_STATE_RETRYING
    assert retrying.timer_at == failed.retry_at
    assert cancelled.state == pb.STEP_STATE_CANCELLED and not cancelled.HasField("timer_at")
    assert cancelled.HasField("ended_at")


CHOOSE = """
name: choose
steps:
  - id: route
    choice:
      - when: "input.path == 'a'"
        steps:
          - {id: a1, sleep: 1ms}
          - id: a2
            parallel:
              - steps: [{id: a2x, sleep: 1ms}]
              - steps: [{id: a2y, sleep: 1ms}]
      - when: "input.path == 'b'"
        steps:
          - {id: b1, sleep: 1ms}
    default:
      - {id: d1, sleep: 1ms}
  - {id: after, sleep: 1ms}
"""


@pytest.mark.parametrize(
    ("path", "skipped"),
    [
        ("b", ["a1", "a2", "a2x", "a2y", "d1"]),
        ("a", ["b1", "d1"]),
    ],
)
async def test_branches_not_taken_are_skipped(wire: Wire, path: str, skipped: list[str]) -> None:
    """Every step of a branch a choice did not take, nested ones included, is SKIPPED (ended_at set,
    started_at unset) and has a STEP_SKIPPED event, published, right after the choice's STEP_STARTED."""
    await wire.apply(CHOOSE)
    process = await wire.start("choose", input={"path": path})
    done = await wire.ended(process.id)
    history = await wire.history(process.id)

    assert done.state == pb.PROCESS_STATE_COMPLETED
    states = {s.step_id: s for s in done.steps}
    assert sorted(s for s, status in states.items() if status.state == pb.STEP_STATE_SKIPPED) == sorted(
        skipped
    )
    for step_id in skipped:
        assert states[step_id].HasField("ended_at") and not states[step_id].HasField("started_at")
    assert states["a2x"].parent_step_id == "a2" if path == "b" else states["b1"].parent_step_id == "route"
    # Process.steps stays in definition order, skipped steps included.
    order = ["route", "a1", "a2", "a2x", "a2y", "b1", "d1", "after"]
    assert [s.step_id for s in done.steps] == [s for s in order if s in states]
    named = types(history)
    choice = named.index("step_started:route")
    assert named[choice + 1 : choice + 1 + len(skipped)] == [f"step_skipped:{s}" for s in skipped]


async def test_a_choice_with_no_branch_taken_skips_every_branch(wire: Wire) -> None:
    """A choice whose conditions all fail and that has no default completes at once, its branches SKIPPED."""
    await wire.apply(CHOOSE.replace("    default:\n      - {id: d1, sleep: 1ms}\n", ""))
    process = await wire.start("choose", input={"path": "z"})
    done = await wire.ended(process.id)

    states = {s.step_id: s.state for s in done.steps}
    assert states == {
        "route": pb.STEP_STATE_COMPLETED,
        "a1": pb.STEP_STATE_SKIPPED,
        "a2": pb.STEP_STATE_SKIPPED,
        "a2x": pb.STEP_STATE_SKIPPED,
        "a2y": pb.STEP_STATE_SKIPPED,
        "b1": pb.STEP_STATE_SKIPPED,
        "after": pb.STEP_STATE_COMPLETED,
    }


PUBLISH = """
name: publish
steps:
  - id: work
    task: {service: Pub, type: work}
    compensate: {service: Pub, type: undo}
  - id: gate
    wait_signal: {name: go}
  - id: route
    choice:
      - when: "steps.gate.output.ok == true"
        steps: [{id: yes, sleep: 1ms}]
    default: [{id: no, sleep: 1ms}]
  - id: doomed
    task: {service: Pub, type: fail}
"""


async def test_bus_events_carry_the_history_event_as_protobuf_json(wire: Wire) -> None:
    """Published events: subject workflow.<definition>.<process id>.<event>, content type
    application/json, data = the HistoryEvent in protobuf JSON (parsed strictly, it equals GetHistory's
    event); exactly the PROCESS_*, STEP_* and COMPENSATION_* events are published, in history order."""
    await wire.apply(PUBLISH)
    subscription = wire.bus.Subscribe(bus_pb2.SubscribeRequest(pattern="workflow.publish.>", max_batch=1000))
    try:
        async with asyncio.timeout(10):
            assert (await read(subscription)).HasField("ready")
        async with wire.worker("Pub", "pub-1") as stream:
            process = await wire.start("publish")
            work = await next_task(stream)
            await wire.report(started(work.task_token), completed(work.task_token))
            signal = pb.SignalProcessRequest(process_id=process.id, name="go")
            signal.payload.update({"ok": False})
            await wire.workflow.SignalProcess(signal)
            for _ in range(2):  # the doomed task fails for good; the compensation of work completes
                task = await next_task(stream)
                if task.task_type == "fail":
                    failure = pb.TaskFailed(error_code="NO", non_retryable=True)
                    await wire.report(pb.TaskEvent(task_token=task.task_token, failed=failure))
                else:
                    await wire.report(completed(task.task_token))
            done = await wire.ended(process.id)
        history = await wire.history(process.id)
        published = [e for e in history if e.type in _PUBLISHED]
        messages: list[bus_pb2.BusMessage] = []
        async with asyncio.timeout(10):
            while len(messages) < len(published):
                messages.extend(d.message for d in (await read(subscription)).deliveries)
    finally:
        subscription.cancel()

    assert done.state == pb.PROCESS_STATE_COMPENSATED
    unpublished = {pb.HistoryEventType.Name(e.type) for e in history if e.type not in _PUBLISHED}
    assert unpublished == {
        "HISTORY_EVENT_TYPE_TASK_SCHEDULED",
        "HISTORY_EVENT_TYPE_TASK_STARTED",
        "HISTORY_EVENT_TYPE_TASK_FAILED",
        "HISTORY_EVENT_TYPE_SIGNAL_RECEIVED",
    }
    assert {"step_skipped:yes", "compensation_started:work", "compensation_completed:work"} <= set(
        types(published)
    )
    assert len(messages) == len(published)
    for message, event in zip(messages, published, strict=True):
        name = pb.HistoryEventType.Name(event.type).removeprefix("HISTORY_EVENT_TYPE_").lower()
        assert message.subject == f"workflow.publish.{process.id}.{name}"
        assert message.content_type == "application/json"
        parsed = json_format.Parse(message.data, pb.HistoryEvent())  # unknown fields would raise
        assert parsed == event


_PUBLISHED = {
    value
    for name, value in pb.HistoryEventType.items()
    if name.startswith(
        ("HISTORY_EVENT_TYPE_PROCESS_", "HISTORY_EVENT_TYPE_STEP_", "HISTORY_EVENT_TYPE_COMPENSATION_")
    )
}


@pytest.mark.parametrize(
    "at", [1_700_000_000.0, 1_700_000_000.5, 1_700_000_000.123456, 1_700_000_000.123456789]
)
@pytest.mark.parametrize("kind", list(EventType))
def test_the_bus_json_of_every_event_is_what_json_format_writes(kind: EventType, at: float) -> None:
    """The hand-written JSON equals json_format's for every event type, with 0, 3, 6 and 9 fraction digits."""
    event = HistoryEvent(
        "p-1",
        2**40,
        at,
        kind,
        "step" if kind.name.startswith("STEP") else "",
        3 if kind.name.startswith("TASK") else 0,
        ProcessState.COMPENSATING,
        {"n": 1, "s": "x", "none": None, "list": [1, "a"], "nested": {"b": True}},
    )
    wire_form = json_format.MessageToDict(workflow_convert.event(event))

    assert json.loads(history_json(event)) == wire_form


async def test_cancelled_error_code_exists_where_documented(wire: Wire) -> None:
    """A process ending CANCELLED carries error {code "CANCELLED", message: the reason}, on the process
    and in PROCESS_CANCELLED's details, whether it compensated first or not."""
    await wire.apply(TIMED)
    plain = await wire.start("timed")
    quiet = await wire.start("timed")
    await wire.workflow.CancelProcess(pb.CancelProcessRequest(process_id=plain.id, reason="withdrawn"))
    await wire.workflow.CancelProcess(pb.CancelProcessRequest(process_id=quiet.id, compensate=True))
    ended = await wire.process(plain.id)
    unexplained = await wire.process(quiet.id)
    history = await wire.history(plain.id)

    assert ended.state == pb.PROCESS_STATE_CANCELLED
    assert (ended.error.code, ended.error.message) == ("CANCELLED", "withdrawn")
    assert ended.error.time == ended.ended_at
    (last,) = of_type(history, pb.HISTORY_EVENT_TYPE_PROCESS_CANCELLED)
    assert json_format.MessageToDict(last.details)["error"]["code"] == "CANCELLED"
    assert unexplained.state == pb.PROCESS_STATE_CANCELLED and unexplained.error.code == "CANCELLED"
