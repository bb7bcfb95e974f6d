"""What workflow.proto promises a client in any language, checked through the generated stubs only.

One test per promise (or per small group of promises of one comment), named after it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from control_plane.core.workflow.history_json import history_json
from control_plane.core.workflow.workflows import ReportOutcome
from control_plane.models import EventType, HistoryEvent, ProcessState
from control_plane.server import App, running
from control_plane.servicers import workflow_convert
from control_plane.servicers.reports import EventBatch, ReportStream
from control_plane.settings import Settings
from hms.mgmt.v1 import bus_pb2, registry_pb2
from hms.mgmt.v1 import workflow_pb2 as pb
from tests.promise_support import Tasks, Wire, next_task, read, seconds, types


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
    event); exactly the PROCESS_*, STEP_* and COMPENSATION_* events are published, in history order,
    each subject's messages numbered 1, 2, 3, ... (subject_sequence)."""
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
    # Each subject numbered 1, 2, 3, ... in history order (the engine numbers its own subjects).
    numbers: dict[str, list[int]] = {}
    for message in messages:
        numbers.setdefault(message.subject, []).append(message.subject_sequence)
    assert all(got == list(range(1, len(got) + 1)) for got in numbers.values()), numbers
    assert max(len(got) for got in numbers.values()) > 1


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


# -- definitions ----------------------------------------------------------------------------------

GREET = """
name: greet
description: Say hello
steps:
  - {id: hello, sleep: 1ms}
"""


async def test_definition_versions_count_content_changes_only(wire: Wire) -> None:
    """RegisterDefinition: version 1, 2, ... per content change (formatting and comments make none:
    created false, the latest version); validate_only stores nothing and says which version it would
    be; GetDefinition gives the latest by default, any version by number, the source exactly as
    registered with its spec and description, NOT_FOUND for an unknown name or version."""
    first = await wire.apply(GREET)
    same = await wire.apply(
        "# reformatted\n" + GREET.replace("{id: hello, sleep: 1ms}", "{sleep: 1ms, id: hello}")
    )
    would = await wire.workflow.RegisterDefinition(
        pb.RegisterDefinitionRequest(source=GREET.replace("1ms", "2ms"), validate_only=True)
    )
    unchanged = await wire.workflow.RegisterDefinition(
        pb.RegisterDefinitionRequest(source=GREET, validate_only=True)
    )
    latest_after_dry_run = await wire.workflow.GetDefinition(pb.GetDefinitionRequest(name="greet"))
    second = await wire.apply(GREET.replace("1ms", "2ms"))
    latest = (await wire.workflow.GetDefinition(pb.GetDefinitionRequest(name="greet"))).definition
    one = (await wire.workflow.GetDefinition(pb.GetDefinitionRequest(name="greet", version=1))).definition
    missing = [
        await _code(wire.workflow.GetDefinition(pb.GetDefinitionRequest(name="nope"))),
        await _code(wire.workflow.GetDefinition(pb.GetDefinitionRequest(name="greet", version=3))),
    ]

    assert (first.name, first.version, first.created) == ("greet", 1, True)
    assert (same.version, same.created) == (1, False) and same.definition.source == GREET
    assert (would.version, would.created) == (2, True) and (unchanged.version, unchanged.created) == (
        1,
        False,
    )
    assert latest_after_dry_run.definition.version == 1
    assert (second.version, second.created) == (2, True)
    assert (latest.version, latest.source, latest.description) == (
        2,
        GREET.replace("1ms", "2ms"),
        "Say hello",
    )
    assert json_format.MessageToDict(one.spec)["steps"] == [{"id": "hello", "sleep": "1ms"}]
    assert one.digest == same.definition.digest != latest.digest and len(one.digest) == 64
    assert one.HasField("created_at")
    assert missing == [grpc.StatusCode.NOT_FOUND, grpc.StatusCode.NOT_FOUND]


async def test_list_definitions_gives_latest_versions_in_name_order_without_source(wire: Wire) -> None:
    """ListDefinitions: latest version of each name, in name order; all_versions: every version,
    newest first per name; only one name when asked; source and spec left out; pages follow
    next_page_token, empty on the last page."""
    for name in ("beta", "alpha", "gamma"):
        await wire.apply(GREET.replace("greet", name))
    await wire.apply(GREET.replace("greet", "beta").replace("1ms", "2ms"))
    latest = await wire.workflow.ListDefinitions(pb.ListDefinitionsRequest())
    every = await wire.workflow.ListDefinitions(pb.ListDefinitionsRequest(all_versions=True))
    betas = await wire.workflow.ListDefinitions(pb.ListDefinitionsRequest(name="beta", all_versions=True))
    pages: list[list[tuple[str, int]]] = []
    token = ""
    while True:
        page = await wire.workflow.ListDefinitions(
            pb.ListDefinitionsRequest(all_versions=True, page_size=3, page_token=token)
        )
        pages.append([(d.name, d.version) for d in page.definitions])
        token = page.next_page_token
        if not token:
            break

    assert [(d.name, d.version) for d in latest.definitions] == [("alpha", 1), ("beta", 2), ("gamma", 1)]
    assert not latest.next_page_token
    assert [(d.name, d.version) for d in every.definitions] == [
        ("alpha", 1),
        ("beta", 2),
        ("beta", 1),
        ("gamma", 1),
    ]
    assert [(d.name, d.version) for d in betas.definitions] == [("beta", 2), ("beta", 1)]
    assert all(not d.source and not d.HasField("spec") and d.digest for d in every.definitions)
    assert pages == [[("alpha", 1), ("beta", 2), ("beta", 1)], [("gamma", 1)]]


async def _code(call: Any) -> grpc.StatusCode:
    """The status code a unary call ends with (OK when it succeeds)."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


# -- processes ------------------------------------------------------------------------------------

GATED = """
name: gated
input_schema:
  type: object
  properties: {n: {type: integer}}
steps:
  - id: gate
    wait_signal: {name: go}
  - {id: nap, sleep: 1ms}
output: {n: "input.n", got: "steps.gate.output"}
"""


async def test_a_process_reports_its_state_times_and_output_as_documented(wire: Wire) -> None:
    """StartProcess answers RUNNING (STARTED shows only in PROCESS_STARTED's process_state) with a
    UUID id, the version it runs, no ended_at and no output; current_step_ids names the waiting step;
    last_event_sequence is its last history event; once COMPLETED, output is the output mapping,
    ended_at is set, updated_at is the last transition's time and current_step_ids is empty."""
    await wire.apply(GATED)
    process = await wire.start("gated", input={"n": 7}, business_key="k-1")
    history = await wire.history(process.id)
    await wire.workflow.SignalProcess(_signal(process.id, "go", ok=True))
    done = await wire.ended(process.id)
    final_history = await wire.history(process.id)

    assert str(uuid.UUID(process.id)) == process.id
    assert (process.state, process.definition, process.definition_version) == (
        pb.PROCESS_STATE_RUNNING,
        "gated",
        1,
    )
    assert process.business_key == "k-1" and json_format.MessageToDict(process.input) == {"n": 7}
    assert (
        not process.HasField("ended_at") and not process.HasField("output") and not process.HasField("error")
    )
    assert list(process.current_step_ids) == ["gate"]
    assert process.last_event_sequence == history[-1].sequence == len(history)
    assert history[0].type == pb.HISTORY_EVENT_TYPE_PROCESS_STARTED
    assert history[0].process_state == pb.PROCESS_STATE_STARTED
    assert {e.process_state for e in history[1:]} == {pb.PROCESS_STATE_RUNNING}
    assert done.state == pb.PROCESS_STATE_COMPLETED and not done.current_step_ids
    assert json_format.MessageToDict(done.output) == {"n": 7, "got": {"ok": True}}
    assert done.ended_at == done.updated_at == final_history[-1].time
    assert done.created_at == process.created_at and done.last_event_sequence == len(final_history)
    assert [e.sequence for e in final_history] == list(range(1, len(final_history) + 1))


async def test_start_with_a_known_business_key_returns_that_process_whatever_its_state(wire: Wire) -> None:
    """A start with a business key that already has a process (of this definition name) returns it,
    already_existed, whatever its state, version or input; the same key under another name is free;
    an input against the input schema is INVALID_ARGUMENT."""
    await wire.apply(GATED)
    first = await wire.start("gated", input={"n": 1}, business_key="app-1")
    await wire.workflow.CancelProcess(pb.CancelProcessRequest(process_id=first.id))
    await wire.apply(GATED.replace("1ms", "2ms"))  # version 2
    again = await wire.workflow.StartProcess(
        pb.StartProcessRequest(definition="gated", business_key="app-1", input=_struct(n=2))
    )
    await wire.apply(GATED.replace("gated", "other"))
    elsewhere = await wire.workflow.StartProcess(
        pb.StartProcessRequest(definition="other", business_key="app-1")
    )
    refused = await _code(
        wire.workflow.StartProcess(pb.StartProcessRequest(definition="gated", input=_struct(n="seven")))
    )
    unknown = await _code(wire.workflow.StartProcess(pb.StartProcessRequest(definition="nope")))

    assert again.already_existed and again.process.id == first.id
    assert again.process.state == pb.PROCESS_STATE_CANCELLED and again.process.definition_version == 1
    assert json_format.MessageToDict(again.process.input) == {"n": 1}
    assert not elsewhere.already_existed and elsewhere.process.id != first.id
    assert refused == grpc.StatusCode.INVALID_ARGUMENT and unknown == grpc.StatusCode.NOT_FOUND


async def test_list_processes_filters_newest_first_and_leaves_details_out_unless_asked(wire: Wire) -> None:
    """ListProcesses: filters by definition, version, states and business key; newest first; input,
    output and steps only with include_details; default page 50; pages with the same filters neither
    repeat nor skip."""
    await wire.apply(GATED)
    started = [await wire.start("gated", input={"n": n}) for n in range(53)]
    await wire.apply(GATED.replace("1ms", "2ms"))
    newer = await wire.start("gated", input={"n": 99}, business_key="late")
    await wire.workflow.CancelProcess(pb.CancelProcessRequest(process_id=started[0].id))
    first = await wire.workflow.ListProcesses(pb.ListProcessesRequest(definition="gated"))
    second = await wire.workflow.ListProcesses(
        pb.ListProcessesRequest(definition="gated", page_token=first.next_page_token)
    )
    v2 = await wire.workflow.ListProcesses(pb.ListProcessesRequest(definition="gated", definition_version=2))
    cancelled = await wire.workflow.ListProcesses(
        pb.ListProcessesRequest(states=[pb.PROCESS_STATE_CANCELLED])
    )
    keyed = await wire.workflow.ListProcesses(
        pb.ListProcessesRequest(business_key="late", include_details=True)
    )
    nothing = await wire.workflow.ListProcesses(pb.ListProcessesRequest(definition="nope"))

    listed = [p.id for p in first.processes] + [p.id for p in second.processes]
    assert len(first.processes) == 50 and first.next_page_token and not second.next_page_token
    assert listed == [newer.id] + [p.id for p in reversed(started)]
    assert all(not p.HasField("input") and not p.steps for p in first.processes)
    assert [p.id for p in v2.processes] == [newer.id]
    assert [p.id for p in cancelled.processes] == [started[0].id]
    (late,) = keyed.processes
    assert json_format.MessageToDict(late.input) == {"n": 99} and [s.step_id for s in late.steps] == ["gate"]
    assert not nothing.processes and not nothing.next_page_token


async def test_watch_sends_the_process_and_its_history_then_live_events_then_the_final_process(
    wire: Wire,
) -> None:
    """WatchProcess: the first frame carries the process and its history so far; live events follow
    in sequence order; the last frame carries the final process and the stream ends OK;
    after_sequence resumes after an event; a process that has ended gives its history and the final
    process at once; NOT_FOUND for an unknown process."""
    await wire.apply(GATED)
    process = await wire.start("gated", input={"n": 1})
    watch = wire.workflow.WatchProcess(pb.WatchProcessRequest(process_id=process.id))
    frames: list[pb.WatchProcessResponse] = []
    async with asyncio.timeout(10):
        frames.append(await _frame(watch))
        await wire.workflow.SignalProcess(_signal(process.id, "go"))
        while (frame := await watch.read()) is not grpc.aio.EOF:
            assert isinstance(frame, pb.WatchProcessResponse)
            frames.append(frame)
    status = await watch.code()
    history = await wire.history(process.id)
    resumed = [
        f
        async for f in wire.workflow.WatchProcess(
            pb.WatchProcessRequest(process_id=process.id, after_sequence=3)
        )
    ]
    unknown = wire.workflow.WatchProcess(pb.WatchProcessRequest(process_id="nope"))
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await _frame(unknown)

    first, last = frames[0], frames[-1]
    assert first.process.state == pb.PROCESS_STATE_RUNNING
    assert [e.sequence for e in first.events] == list(range(1, first.process.last_event_sequence + 1))
    assert [e.sequence for f in frames for e in f.events] == [e.sequence for e in history]
    assert all(not f.HasField("process") for f in frames[1:-1])
    assert (
        last.process.state == pb.PROCESS_STATE_COMPLETED and not last.events and status == grpc.StatusCode.OK
    )
    assert [e.sequence for f in resumed for e in f.events] == [e.sequence for e in history[3:]]
    assert resumed[0].process.state == resumed[-1].process.state == pb.PROCESS_STATE_COMPLETED
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_history_pages_in_sequence_order_after_a_sequence(wire: Wire) -> None:
    """GetHistory: events in sequence order after after_sequence, page_size of them (default 100),
    next_page_token (which overrides after_sequence) until no more events exist: empty then, also when
    the last page is full; NOT_FOUND for an unknown process."""
    await wire.apply(GATED)
    process = await wire.start("gated")
    for n in range(99):  # buffered: one SIGNAL_RECEIVED event each (no step waits for "later")
        await wire.workflow.SignalProcess(_signal(process.id, "later", n=n))
    count = len(await wire.history(process.id))
    default = await wire.workflow.GetHistory(pb.GetHistoryRequest(process_id=process.id))
    after = await wire.workflow.GetHistory(
        pb.GetHistoryRequest(process_id=process.id, after_sequence=95, page_size=2)
    )
    rest = await wire.workflow.GetHistory(
        pb.GetHistoryRequest(process_id=process.id, after_sequence=1, page_token=after.next_page_token)
    )
    exact = await wire.workflow.GetHistory(
        pb.GetHistoryRequest(process_id=process.id, after_sequence=count - 2, page_size=2)
    )
    missing = await _code(wire.workflow.GetHistory(pb.GetHistoryRequest(process_id="nope")))

    assert count > 100 and len(default.events) == 100 and default.next_page_token
    assert [e.sequence for e in after.events] == [96, 97]
    assert [e.sequence for e in rest.events] == list(range(98, count + 1)) and not rest.next_page_token
    assert [e.sequence for e in exact.events] == [count - 1, count] and not exact.next_page_token
    assert missing == grpc.StatusCode.NOT_FOUND


def _struct(**fields: Any) -> struct_pb2.Struct:
    value = struct_pb2.Struct()
    value.update(fields)
    return value


def _signal(process_id: str, name: str, signal_id: str = "", **payload: Any) -> pb.SignalProcessRequest:
    return pb.SignalProcessRequest(
        process_id=process_id, name=name, payload=_struct(**payload), signal_id=signal_id
    )


async def _frame(watch: Any) -> pb.WatchProcessResponse:
    async with asyncio.timeout(10):
        frame = await watch.read()
    assert isinstance(frame, pb.WatchProcessResponse), frame
    return frame


# -- signals and cancelling -----------------------------------------------------------------------


async def test_signals_are_buffered_in_order_deduplicated_and_refused_once_the_process_ended(
    wire: Wire,
) -> None:
    """SignalProcess: buffered (in arrival order per name) while no step waits, delivered to a waiting
    step otherwise; a repeated signal_id is a duplicate that changes nothing, even after the process
    ended; a new signal to an ended process is FAILED_PRECONDITION, to an unknown one NOT_FOUND."""
    await wire.apply(
        GATED.replace("  - {id: nap, sleep: 1ms}\n", "  - id: again\n    wait_signal: {name: go}\n")
    )
    process = await wire.start("gated", input={"n": 1})
    first = await wire.workflow.SignalProcess(_signal(process.id, "go", "s-1", order=1))
    second = await wire.workflow.SignalProcess(_signal(process.id, "go", "s-2", order=2))
    done = await wire.ended(process.id)
    repeat = await wire.workflow.SignalProcess(_signal(process.id, "go", "s-1", order=3))
    late = await _code(wire.workflow.SignalProcess(_signal(process.id, "go", "s-3")))
    unknown = await _code(wire.workflow.SignalProcess(_signal("nope", "go")))

    # The first signal may reach the waiting step at once or be buffered: either way, in order.
    outputs = {s.step_id: json_format.MessageToDict(s.output) for s in done.steps}
    assert outputs == {"gate": {"order": 1}, "again": {"order": 2}}
    assert not first.duplicate and not second.duplicate
    assert repeat.duplicate and not repeat.buffered
    assert (late, unknown) == (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND)


COMPENSATED = """
name: undoable
steps:
  - id: charge
    task: {service: Undo, type: charge}
    compensate: {service: Undo, type: refund}
  - id: wait
    wait_signal: {name: go}
"""


async def test_cancel_codes_and_what_the_answer_says(wire: Wire) -> None:
    """CancelProcess: NOT_FOUND for an unknown process; the answer is the process CANCELLED (or
    COMPENSATING with compensate and completed steps), its reason kept on it and in
    PROCESS_CANCEL_REQUESTED {"reason", "compensate"}; cancelling again is a no-op; cancelling a process
    that ended otherwise is FAILED_PRECONDITION."""
    await wire.apply(COMPENSATED)
    await wire.apply(GREET)
    async with wire.worker("Undo", "undo-1") as stream:
        process = await wire.start("undoable")
        await wire.report(completed((await next_task(stream)).task_token))
        await wire.until(process.id, pb.HISTORY_EVENT_TYPE_STEP_STARTED, "wait")
        answer = await wire.workflow.CancelProcess(
            pb.CancelProcessRequest(process_id=process.id, reason="withdrawn", compensate=True)
        )
        again = await wire.workflow.CancelProcess(
            pb.CancelProcessRequest(process_id=process.id, reason="twice")
        )
        refund = await next_task(stream)
        await wire.report(completed(refund.task_token))
        done = await wire.ended(process.id)
    finished = await wire.start("greet")
    await wire.ended(finished.id)
    ended_otherwise = await _code(
        wire.workflow.CancelProcess(pb.CancelProcessRequest(process_id=finished.id))
    )
    unknown = await _code(wire.workflow.CancelProcess(pb.CancelProcessRequest(process_id="nope")))
    history = await wire.history(process.id)

    assert (
        answer.process.state == pb.PROCESS_STATE_COMPENSATING and answer.process.cancel_reason == "withdrawn"
    )
    assert again.process.state == pb.PROCESS_STATE_COMPENSATING and again.process.cancel_reason == "withdrawn"
    assert (refund.task_type, refund.step_id, refund.compensation) == ("refund", "charge", True)
    assert done.state == pb.PROCESS_STATE_CANCELLED and done.cancel_reason == "withdrawn"
    assert {s.step_id: s.state for s in done.steps} == {
        "charge": pb.STEP_STATE_COMPENSATED,
        "wait": pb.STEP_STATE_CANCELLED,
    }
    (requested,) = of_type(history, pb.HISTORY_EVENT_TYPE_PROCESS_CANCEL_REQUESTED)
    assert json_format.MessageToDict(requested.details) == {"reason": "withdrawn", "compensate": True}
    assert (ended_otherwise, unknown) == (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND)


# -- the worker protocol --------------------------------------------------------------------------

TASKS = """
name: tasks
steps:
  - id: first
    task: {service: Crew, type: lift}
    input: {weight: "input.weight * 2.0", note: "'heavy'"}
    heartbeat_timeout: 1h
    retry: {max_attempts: 2, initial_interval: 1ms}
"""


async def test_a_task_carries_its_attempt_and_a_later_attempt_the_last_heartbeat(wire: Wire) -> None:
    """Task: process, definition and version, step, task type, 1-based attempt, the input mapping
    evaluated, business key, compensation false, heartbeat_timeout, no deadline without a timeout; a
    retry is attempt 2 with a new token and the details of the last heartbeat of attempt 1."""
    await wire.apply(TASKS)
    process = await wire.start("tasks", input={"weight": 21}, business_key="crane")
    async with wire.worker("Crew", "crew-1") as stream:
        one = await next_task(stream)
        beat = pb.TaskEvent(task_token=one.task_token, heartbeat=pb.TaskHeartbeat(details=_struct(lifted=10)))
        await wire.report(beat)
        await wire.workflow.FailTask(pb.FailTaskRequest(task_token=one.task_token, error_code="DROPPED"))
        two = await next_task(stream)
    status = await wire.step(process.id, "first")

    assert (one.process_id, one.definition, one.definition_version) == (process.id, "tasks", 1)
    assert (one.step_id, one.task_type, one.attempt, one.business_key) == ("first", "lift", 1, "crane")
    assert json_format.MessageToDict(one.input) == {"weight": 42, "note": "heavy"}
    assert not one.compensation and not one.HasField("deadline") and not one.HasField("heartbeat_details")
    assert one.heartbeat_timeout.seconds == 3600
    assert (two.attempt, two.task_token != one.task_token) == (2, True)
    assert json_format.MessageToDict(two.heartbeat_details) == {"lifted": 10}
    assert json_format.MessageToDict(status.heartbeat_details) == {"lifted": 10} and status.attempts == 2


async def test_a_worker_gets_at_most_its_credit_of_the_task_types_it_asked_for(wire: Wire) -> None:
    """SubscribeTasks: the first frame is only `ready`; task_types limits the types (empty: all); at
    most max_in_flight tasks are held (default 16) and each outcome frees one credit."""
    await wire.apply(TASKS)
    await wire.apply(TASKS.replace("name: tasks", "name: other").replace("lift", "carry"))
    lifts = [await wire.start("tasks", input={"weight": n}) for n in range(18)]
    carry = await wire.start("other", input={"weight": 1})
    async with wire.worker("Crew", "crew-1", task_types=("lift",)) as lifter:
        held = [await next_task(lifter) for _ in range(16)]
        async with wire.worker("Crew", "crew-2", max_in_flight=3) as anything:
            # What crew-1 did not take (its credit is used up; carry is not its type) goes to crew-2.
            rest = [await next_task(anything) for _ in range(3)]
            await wire.report(completed(held[0].task_token))
            late = await wire.start("tasks", input={"weight": 99})  # crew-2 is full: only crew-1 has credit
            seventeenth = await next_task(lifter)

    assert {t.task_type for t in held} == {"lift"}
    assert {t.process_id for t in held} | {t.process_id for t in rest} == {p.id for p in [*lifts, carry]}
    assert sorted(t.task_type for t in rest) == ["carry", "lift", "lift"]
    assert seventeenth.process_id == late.id


WAITS = """
name: waits
steps:
  - id: both
    parallel:
      - steps: [{id: slow, task: {service: Crew, type: lift}}]
      - steps: [{id: fast, task: {service: Crew, type: carry}, retry: {max_attempts: 1}}]
"""


async def test_a_withdrawn_task_says_why(wire: Wire) -> None:
    """TaskCancellation: PROCESS_CANCELLED when the process is cancelled, NOT_NEEDED when a sibling
    branch failed for good, each with a sentence; reports on it then answer TASK_CANCELLED."""
    await wire.apply(WAITS)
    async with wire.worker("Crew", "crew-1") as stream:
        sibling = await wire.start("waits")
        tasks = {t.task_type: t for t in [await next_task(stream), await next_task(stream)]}
        await wire.workflow.FailTask(
            pb.FailTaskRequest(task_token=tasks["carry"].task_token, error_code="NO")
        )
        not_needed = await _cancellation(stream)
        cancelled = await wire.start("waits")
        held = [await next_task(stream), await next_task(stream)]
        await wire.workflow.CancelProcess(pb.CancelProcessRequest(process_id=cancelled.id, reason="stop"))
        process_cancelled = [await _cancellation(stream), await _cancellation(stream)]
        late = await wire.report(completed(held[0].task_token))

    assert not_needed.task_token == tasks["lift"].task_token and sibling.id
    assert not_needed.reason == pb.TASK_CANCEL_REASON_NOT_NEEDED and not_needed.message
    assert {c.task_token for c in process_cancelled} == {t.task_token for t in held}
    assert {c.reason for c in process_cancelled} == {pb.TASK_CANCEL_REASON_PROCESS_CANCELLED}
    assert all(c.message == "the process was cancelled" for c in process_cancelled)
    assert late == [pb.REPORT_RESULT_TASK_CANCELLED]


async def _cancellation(stream: Tasks) -> pb.TaskCancellation:
    return await stream.cancellation()


async def test_an_unregistered_worker_is_told_why_with_its_service_and_instance(wire: Wire) -> None:
    """SubscribeTasks of an instance that is not registered: FAILED_PRECONDITION with ErrorInfo reason
    NOT_REGISTERED and metadata service, instance_id, cause; the same when its open stream ends
    because it was deregistered."""
    never = wire.workflow.SubscribeTasks(pb.SubscribeTasksRequest(service="Crew", instance_id="ghost"))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await never.read()
    async with wire.worker("Crew", "crew-1") as stream:
        await wire.registry.Deregister(registry_pb2.DeregisterRequest(service="Crew", instance_id="crew-1"))
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async with asyncio.timeout(10):
                await stream.read()

    assert refused.value.code() == ended.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert _error_info(refused.value) == (
        "NOT_REGISTERED",
        {"service": "Crew", "instance_id": "ghost", "cause": "not_registered"},
    )
    assert _error_info(ended.value) == (
        "NOT_REGISTERED",
        {"service": "Crew", "instance_id": "crew-1", "cause": "deregistered"},
    )


def _error_info(error: grpc.aio.AioRpcError) -> tuple[str, dict[str, str]]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason, dict(info.metadata)
    raise AssertionError(f"no ErrorInfo in {error}")


async def test_fail_task_says_whether_and_when_it_is_retried(wire: Wire) -> None:
    """FailTask: will_retry with retry_at while attempts remain; on the last attempt, or with
    non_retryable, will_retry false and no retry_at: the step failed for good."""
    await wire.apply(TASKS)
    async with wire.worker("Crew", "crew-1") as stream:
        for_good = await wire.start("tasks", input={"weight": 1})
        first = await wire.workflow.FailTask(
            pb.FailTaskRequest(task_token=(await next_task(stream)).task_token, error_code="E")
        )
        last = await wire.workflow.FailTask(
            pb.FailTaskRequest(task_token=(await next_task(stream)).task_token, error_code="E")
        )
        at_once = await wire.start("tasks", input={"weight": 1})
        refused = await wire.workflow.FailTask(
            pb.FailTaskRequest(
                task_token=(await next_task(stream)).task_token, error_code="E", non_retryable=True
            )
        )
    failed, stopped = await wire.ended(for_good.id), await wire.ended(at_once.id)

    assert first.result == pb.REPORT_RESULT_ACCEPTED and first.will_retry and first.HasField("retry_at")
    assert not last.will_retry and not last.HasField("retry_at")
    assert not refused.will_retry and not refused.HasField("retry_at")
    assert failed.state == stopped.state == pb.PROCESS_STATE_FAILED
    assert (failed.error.code, failed.error.step_id, failed.error.attempt) == ("E", "first", 2)
    assert (stopped.error.code, stopped.error.attempt) == ("E", 1)


# -- history --------------------------------------------------------------------------------------

TOUR = """
name: tour
steps:
  - id: work
    task: {service: Tour, type: work}
    compensate: {service: Tour, type: undo, retry: {max_attempts: 1}}
    retry: {max_attempts: 2, initial_interval: 1ms}
  - id: gate
    wait_signal: {name: go, timeout: 1h}
  - id: news
    wait_signal: {subject: "tour.*.news", correlate: "message.id == input.id"}
  - id: route
    choice:
      - when: "steps.gate.output.ok == true"
        steps: [{id: yes, sleep: 1ms}]
    default: [{id: no, sleep: 1ms}]
  - id: doomed
    task: {service: Tour, type: fail}
    retry: {max_attempts: 1}
"""

_DETAILS = {
    "PROCESS_STARTED": {"input", "business_key"},
    "PROCESS_RUNNING": set(),
    "PROCESS_COMPLETED": {"output"},
    "PROCESS_FAILED": {"error"},
    "PROCESS_COMPENSATING": {"error"},
    "PROCESS_COMPENSATED": {"error"},
    "STEP_COMPLETED": {"output"},
    "STEP_FAILED": {"error"},
    "STEP_SKIPPED": set(),
    "TASK_SCHEDULED": {"service", "task_type", "input", "compensation", "timeout", "heartbeat_timeout"},
    "TASK_STARTED": {"worker_instance_id", "deadline", "compensation"},
    "TASK_FAILED": {"error", "will_retry", "retry_at"},
    "COMPENSATION_STARTED": set(),
    "COMPENSATION_COMPLETED": {"output"},
    "COMPENSATION_FAILED": {"error"},
}
_STEP_STARTED = {
    "work": set(),
    "gate": {"until"},
    "news": {"until"},
    "route": {"branch"},
    "no": {"until"},
    "doomed": set(),
}
_FAILURE = {"code", "message", "details", "step_id", "attempt", "time"}


@pytest.mark.parametrize("undo", ["completes", "fails"])
async def test_history_details_have_the_documented_keys(wire: Wire, undo: str) -> None:
    """Each HistoryEventType's details carry the keys its comment lists; errors carry Failure's fields;
    SIGNAL_RECEIVED has {"name", "payload", "buffered"} (step_id empty while buffered, set when a step
    takes it) or, for a Bus message, {"subject", "sequence", "payload"}."""
    await wire.apply(TOUR)
    async with wire.worker("Tour", "tour-1") as stream:
        process = await wire.start("tour", input={"id": "t-1"}, business_key="b")
        await wire.workflow.SignalProcess(_signal(process.id, "go", ok=False))  # buffered: no step waits yet
        first = await next_task(stream)
        await wire.report(started(first.task_token))
        await wire.workflow.FailTask(pb.FailTaskRequest(task_token=first.task_token, error_code="AGAIN"))
        await wire.report(completed((await next_task(stream)).task_token, done=True))
        await wire.until(process.id, pb.HISTORY_EVENT_TYPE_STEP_STARTED, "news")
        message = bus_pb2.BusMessage(
            subject="tour.x.news", data=b'{"id": "t-1"}', content_type="application/json"
        )
        published = await wire.bus.Publish(bus_pb2.PublishRequest(message=message))
        doomed = await next_task(stream)
        await wire.workflow.FailTask(pb.FailTaskRequest(task_token=doomed.task_token, error_code="NO"))
        undo_task = await next_task(stream)
        if undo == "completes":
            await wire.report(completed(undo_task.task_token, undone=True))
        else:
            await wire.workflow.FailTask(
                pb.FailTaskRequest(task_token=undo_task.task_token, error_code="STUCK")
            )
        done = await wire.ended(process.id)
    history = await wire.history(process.id)

    assert done.state == (pb.PROCESS_STATE_COMPENSATED if undo == "completes" else pb.PROCESS_STATE_FAILED)
    seen = set()
    for event in history:
        name = pb.HistoryEventType.Name(event.type).removeprefix("HISTORY_EVENT_TYPE_")
        details = json_format.MessageToDict(event.details)
        seen.add(name)
        if name == "STEP_STARTED":
            assert set(details) == _STEP_STARTED[event.step_id], (event.step_id, details)
        elif name == "SIGNAL_RECEIVED":
            if event.step_id == "news":
                assert details == {
                    "subject": "tour.x.news",
                    "sequence": published.sequence,
                    "payload": {"id": "t-1"},
                }
            else:
                assert details == {"name": "go", "payload": {"ok": False}, "buffered": True}
        else:
            assert set(details) == _DETAILS[name], (name, details)
        if "error" in details:
            assert set(details["error"]) == _FAILURE, details
    received = [e.step_id for e in of_type(history, pb.HISTORY_EVENT_TYPE_SIGNAL_RECEIVED)]
    assert received == ["", "gate", "news"]
    if undo == "fails":
        assert {"COMPENSATION_FAILED", "PROCESS_FAILED"} <= seen and done.error.code == "STUCK"
    else:
        assert {"COMPENSATION_COMPLETED", "PROCESS_COMPENSATED"} <= seen and done.error.code == "NO"
    steps = {s.step_id: s for s in done.steps}
    assert steps["work"].state == (
        pb.STEP_STATE_COMPENSATED if undo == "completes" else pb.STEP_STATE_COMPENSATION_FAILED
    )
    assert steps["work"].ended_at == next(
        e.time for e in history if e.type == pb.HISTORY_EVENT_TYPE_STEP_COMPLETED
    )


OUTPUTS = """
name: outputs
steps:
  - id: fan
    parallel:
      - steps: [{id: l1, sleep: 1ms}, {id: left, wait_signal: {name: left}}]
      - steps: [{id: right, wait_signal: {name: right}}]
  - id: pick
    choice:
      - when: "input.pick"
        steps: [{id: picked, wait_signal: {name: picked}}]
  - {id: nap, sleep: 1ms}
"""


async def test_step_outputs_of_parallel_choice_and_sleep_steps(wire: Wire) -> None:
    """StepStatus.output: a parallel step's is {<last step of each branch>: its output}; a choice
    step's is the output of the last step of the branch it took (unset when it took none); a sleep
    step has none; Process.output without an output mapping is the last step's output (none here)."""
    await wire.apply(OUTPUTS)
    process = await wire.start("outputs", input={"pick": True})
    for name in ("left", "right", "picked"):
        await wire.workflow.SignalProcess(_signal(process.id, name, side=name))
    done = await wire.ended(process.id)
    skipping = await wire.start("outputs", input={"pick": False})
    await wire.workflow.SignalProcess(_signal(skipping.id, "left"))
    await wire.workflow.SignalProcess(_signal(skipping.id, "right"))
    none_taken = await wire.ended(skipping.id)

    outputs = {s.step_id: json_format.MessageToDict(s.output) for s in done.steps if s.HasField("output")}
    assert outputs == {
        "fan": {"left": {"side": "left"}, "right": {"side": "right"}},
        "left": {"side": "left"},
        "right": {"side": "right"},
        "pick": {"side": "picked"},
        "picked": {"side": "picked"},
    }
    assert done.state == pb.PROCESS_STATE_COMPLETED and not done.HasField("output")
    assert not next(s for s in none_taken.steps if s.step_id == "pick").HasField("output")


FAULTS = {
    "INPUT_MAPPING": "steps:\n  - id: s\n    task: {service: X, type: t}\n    input: {v: 'input.missing'}\n",
    "CONDITION": "steps:\n  - id: s\n    choice:\n      - when: 'input.missing'\n        steps: [{id: t, sleep: 1ms}]\n",
    "OUTPUT_MAPPING": "steps:\n  - {id: s, sleep: 1ms}\noutput: {v: 'input.missing'}\n",
}


@pytest.mark.parametrize(
    ("code", "step_id", "attempt"),
    [("INPUT_MAPPING", "s", 1), ("CONDITION", "s", 0), ("OUTPUT_MAPPING", "", 0)],
)
async def test_engine_failures_carry_their_documented_code(
    wire: Wire, code: str, step_id: str, attempt: int
) -> None:
    """A mapping or condition that cannot be evaluated fails the process with the engine's code,
    naming the step (empty for the output mapping) and the attempt (0 when not a task attempt's)."""
    await wire.apply(f"name: faulty\n{FAULTS[code]}")
    process = await wire.start("faulty")
    done = await wire.ended(process.id)

    assert done.state == pb.PROCESS_STATE_FAILED
    assert (done.error.code, done.error.step_id, done.error.attempt) == (code, step_id, attempt)
    assert done.error.message and done.error.HasField("time")
    if code == "CONDITION":
        (entered,) = of_type(await wire.history(process.id), pb.HISTORY_EVENT_TYPE_STEP_STARTED)
        assert json_format.MessageToDict(entered.details) == {"branch": None}
    if step_id:
        (step,) = [s for s in done.steps if s.step_id == step_id]
        assert step.state == pb.STEP_STATE_FAILED and step.last_error == done.error


def _many_skipped(count: int) -> str:
    steps = "\n".join(f"          - {{id: s{n}, sleep: 1ms}}" for n in range(count))
    return f"""
name: long
steps:
  - id: route
    choice:
      - when: "false"
        steps:
{steps}
    default:
      - {{id: only, sleep: 1ms}}
"""


async def test_a_long_history_comes_split_over_several_watch_frames(wire: Wire) -> None:
    """WatchProcess: history longer than a frame's worth comes over several frames, the first one with
    the process; then the final process."""
    await wire.apply(_many_skipped(700))
    process = await wire.start("long")
    await wire.ended(process.id)
    frames = [f async for f in wire.workflow.WatchProcess(pb.WatchProcessRequest(process_id=process.id))]
    history = await wire.history(process.id)

    assert len(history) > 700 and len(frames) >= 3
    assert frames[0].HasField("process") and all(not f.HasField("process") for f in frames[1:-1])
    assert [e.sequence for f in frames for e in f.events] == [e.sequence for e in history]
    assert frames[-1].process.state == pb.PROCESS_STATE_COMPLETED


async def test_the_events_of_one_task_apply_in_the_order_written_across_requests(wire: Wire) -> None:
    """ReportTaskEventBatches: one task's started, heartbeat and completed events, in one request or
    spread over several, apply in order (all ACCEPTED); an event with nothing set is INVALID, naming
    events[n].event; every request is answered with its batch_id."""
    await wire.apply(TIMED)
    first, second = await wire.start("timed"), await wire.start("timed")
    async with wire.worker("Timed", "timed-1") as stream:
        one, two = await next_task(stream), await next_task(stream)
        call = wire.workflow.ReportTaskEventBatches()
        beat = pb.TaskEvent(task_token=one.task_token, heartbeat=pb.TaskHeartbeat())
        requests = [
            pb.ReportTaskEventBatchesRequest(batch_id=10, events=[started(one.task_token), beat]),
            pb.ReportTaskEventBatchesRequest(batch_id=11, events=[completed(one.task_token)]),
            pb.ReportTaskEventBatchesRequest(
                batch_id=12,
                events=[
                    started(two.task_token),
                    pb.TaskEvent(task_token=two.task_token),
                    completed(two.task_token),
                ],
            ),
        ]
        answers: dict[int, pb.ReportTaskEventBatchesResponse] = {}
        try:
            async with asyncio.timeout(10):
                for request in requests:
                    await call.write(request)
                while len(answers) < 3:
                    answer = await call.read()
                    assert isinstance(answer, pb.ReportTaskEventBatchesResponse)
                    answers[answer.batch_id] = answer
        finally:
            call.cancel()
    histories = [types(await wire.history(p.id)) for p in (first, second)]

    accepted = pb.REPORT_RESULT_ACCEPTED
    assert [list(answers[n].results) for n in (10, 11, 12)] == [
        [accepted, accepted],
        [accepted],
        [accepted, pb.REPORT_RESULT_INVALID, accepted],
    ]
    assert [v.field for v in answers[12].violations] == ["events[1].event"]
    for named in histories:
        assert named[-3:] == ["task_started:work", "step_completed:work", "process_completed"]


OUTBOX = """
name: outbox
steps:
  - id: pay
    task: {service: Pay, type: charge}
"""


async def test_an_outbox_gets_its_sequences_from_the_server_and_a_bad_one_changes_nothing(wire: Wire) -> None:
    """TaskCompleted.outbox: validated as in Publish (a bad message refuses the completion and changes
    nothing: CompleteTask answers INVALID_ARGUMENT); sequence, subject_sequence and published_at given
    by the worker are ignored."""
    await wire.apply(OUTBOX)
    subscription = wire.bus.Subscribe(bus_pb2.SubscribeRequest(pattern="paid.>"))
    try:
        async with asyncio.timeout(10):
            assert (await read(subscription)).HasField("ready")
        async with wire.worker("Pay", "pay-1") as stream:
            process = await wire.start("outbox")
            token = (await next_task(stream)).task_token
            bad = bus_pb2.BusMessage(subject="paid.*", data=b"x")
            refused = await _code(
                wire.workflow.CompleteTask(pb.CompleteTaskRequest(task_token=token, outbox=[bad]))
            )
            waiting = await wire.step(process.id, "pay")
            forged = bus_pb2.BusMessage(subject="paid.ok", data=b"y", sequence=10**9, subject_sequence=77)
            forged.published_at.FromSeconds(1)
            done = await wire.workflow.CompleteTask(pb.CompleteTaskRequest(task_token=token, outbox=[forged]))
        async with asyncio.timeout(10):
            (delivery,) = (await read(subscription)).deliveries
    finally:
        subscription.cancel()

    assert refused == grpc.StatusCode.INVALID_ARGUMENT and waiting.state == pb.STEP_STATE_SCHEDULED
    assert done.result == pb.REPORT_RESULT_ACCEPTED
    assert delivery.message.data == b"y" and delivery.message.subject_sequence == 1
    assert delivery.message.sequence < 10**9 and delivery.message.published_at.seconds > 1


async def test_a_task_stream_ends_unavailable_when_the_control_plane_stops(settings: Settings) -> None:
    """SubscribeTasks: UNAVAILABLE (not NOT_REGISTERED) when the control plane goes away, so that the
    worker subscribes elsewhere."""
    async with running(settings) as app:
        wire = Wire(app.address)
        await wire.registry.Register(
            registry_pb2.RegisterRequest(
                instance=registry_pb2.ServiceInstance(service="Crew", instance_id="c1", address="127.0.0.1:1")
            )
        )
        stream = wire.workflow.SubscribeTasks(pb.SubscribeTasksRequest(service="Crew", instance_id="c1"))
        async with asyncio.timeout(10):
            assert (await stream.read()) == pb.SubscribeTasksResponse(ready=True)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async with asyncio.timeout(10):
                await stream.read()
    finally:
        await wire.close()

    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_report_stream_reads_at_most_1000_events_ahead_of_its_answers() -> None:
    """ReportTaskEventBatches: at most 1,000 events of one stream are read and not yet answered; a
    client that does not take its answers is not read from either."""
    pulled = 0

    async def requests() -> AsyncIterator[EventBatch]:
        nonlocal pulled
        for batch_id in range(3):
            pulled += 1
            yield EventBatch(batch_id, [pb.TaskEvent(task_token=f"t{batch_id}-{n}") for n in range(600)])

    applied = 0
    thousand = asyncio.Event()

    async def apply(event: pb.TaskEvent) -> ReportOutcome:
        nonlocal applied
        applied += 1
        if applied == 1000:
            thousand.set()
        return ReportOutcome.ACCEPTED

    stream = ReportStream(apply)
    answers = stream.answers(requests())
    first = await anext(answers)  # not taken further: the stream holds this answer's room
    async with asyncio.timeout(10):
        await thousand.wait()  # 600 events of the first request and 400 of the second are read
    stalled = (pulled, stream._room.locked())
    rest = [answer async for answer in answers]

    assert first.batch_id == 0 and stalled == (2, True)
    assert [a.batch_id for a in rest] == [1, 2] and pulled == 3 and applied == 1800


async def test_a_cancel_whose_compensation_fails_for_good_ends_failed(wire: Wire) -> None:
    """CancelProcess with compensate: FAILED (with the compensation's error) if a compensation fails
    for good, the step COMPENSATION_FAILED with last_error."""
    await wire.apply(COMPENSATED.replace("type: refund}", "type: refund, retry: {max_attempts: 1}}"))
    async with wire.worker("Undo", "undo-1") as stream:
        process = await wire.start("undoable")
        await wire.report(completed((await next_task(stream)).task_token))
        await wire.until(process.id, pb.HISTORY_EVENT_TYPE_STEP_STARTED, "wait")
        await wire.workflow.CancelProcess(pb.CancelProcessRequest(process_id=process.id, compensate=True))
        refund = await next_task(stream)
        await wire.workflow.FailTask(pb.FailTaskRequest(task_token=refund.task_token, error_code="BANK_DOWN"))
        done = await wire.ended(process.id)

    charge = next(s for s in done.steps if s.step_id == "charge")
    assert done.state == pb.PROCESS_STATE_FAILED and done.error.code == "BANK_DOWN"
    assert charge.state == pb.STEP_STATE_COMPENSATION_FAILED and charge.last_error.code == "BANK_DOWN"


async def test_a_worker_of_some_task_types_gets_them_while_other_types_wait(wire: Wire) -> None:
    """SubscribeTasks with task_types: the worker gets the attempts of its types even while attempts of
    other types of its service wait for their workers (with replicas, these must not take its credit)."""
    await wire.apply(TASKS)
    await wire.apply(TASKS.replace("name: tasks", "name: other").replace("lift", "carry"))
    for n in range(30):
        await wire.start("tasks", input={"weight": n})
    carry = await wire.start("other", input={"weight": 1})
    async with wire.worker("Crew", "carrier", task_types=("carry",), max_in_flight=1) as carrier:
        got = await next_task(carrier)

    assert (got.task_type, got.process_id) == ("carry", carry.id)
