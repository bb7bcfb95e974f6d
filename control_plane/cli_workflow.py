"""`mgmt workflow ...`: apply, start, status, watch, ls, signal, cancel, history and graph (prints; part of the CLI).

The operator's repairs (incidents, retry, skip, fail) are in cli_workflow_ops."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message

from control_plane import cli_workflow_ops
from control_plane.errors import InvalidArgument
from control_plane.graph import mermaid, step_class
from hms.mgmt.v1 import workflow_pb2 as pb
from hms_mgmt import Client

EXIT_OK, EXIT_FAILED = 0, 1

_FINAL = frozenset(
    {
        pb.PROCESS_STATE_COMPLETED,
        pb.PROCESS_STATE_FAILED,
        pb.PROCESS_STATE_COMPENSATED,
        pb.PROCESS_STATE_CANCELLED,
    }
)
_STATE_NAMES = [name.removeprefix("PROCESS_STATE_") for name in pb.ProcessState.keys()[1:]]


def add_workflow_verbs(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser],
) -> list[tuple[argparse.ArgumentParser, bool]]:
    """Add `workflow` and its actions; returns (action parser, whether it reads: takes `-o json`)."""
    workflow = verbs.add_parser("workflow", help="workflow definitions and processes").add_subparsers(
        dest="action", required=True
    )
    apply = workflow.add_parser("apply", help="register a definition (YAML or JSON file, - for stdin)")
    apply.add_argument("file")
    apply.add_argument("--validate-only", action="store_true", help="check it and store nothing")

    start = workflow.add_parser("start", help="start a process; prints its id, then its state")
    start.add_argument("name", help="definition name")
    given = start.add_mutually_exclusive_group()
    given.add_argument("--input", default=None, help="input as a JSON object")
    given.add_argument("--input-file", default=None, help="input from a JSON file (- for stdin)")
    start.add_argument("--key", default="", help="business key: a start with a used key returns its process")
    start.add_argument("--version", type=int, default=0, help="definition version (default the latest)")
    start.add_argument("--wait", action="store_true", help="follow it to the end; exit 0 only if COMPLETED")

    status = workflow.add_parser("status", help="a process with its steps")
    status.add_argument("process_id")
    watch = workflow.add_parser(
        "watch", help="live progress until the process ends; exit 0 only if COMPLETED"
    )
    watch.add_argument("process_id")

    ls = workflow.add_parser("ls", help="list processes, newest first")
    ls.add_argument("--definition", default="", help="only this definition")
    ls.add_argument(
        "--state",
        dest="states",
        nargs="+",
        action="extend",
        default=[],
        type=_state,
        metavar="STATE",
        help=f"only these states ({', '.join(_STATE_NAMES)})",
    )
    ls.add_argument("--limit", type=int, default=50, help="most processes to list (1-1000)")
    ls.add_argument("--parent", default="", help="only the processes this process's call steps started")
    ls.add_argument("--key-prefix", default="", help="only business keys starting with this")
    ls.add_argument("--step", default="", help="only processes with this step active now")
    ls.add_argument(
        "--incidents",
        choices=["with", "without"],
        default=None,
        help="only with (or without) an open incident",
    )
    ls.add_argument(
        "--attr",
        dest="attributes",
        action="append",
        default=[],
        type=_attribute,
        metavar="NAME=VALUE",
        help="only processes whose declared search attribute has this value (needs --definition)",
    )

    signal = workflow.add_parser("signal", help="send a named signal to a process")
    signal.add_argument("process_id")
    signal.add_argument("name")
    signal.add_argument("--payload", default=None, help="payload as a JSON object")
    signal.add_argument("--id", dest="signal_id", default="", help="signal id: a repeat with it is ignored")

    cancel = workflow.add_parser("cancel", help="cancel a process")
    cancel.add_argument("process_id")
    cancel.add_argument("--reason", default="", help="why (kept on the process)")
    cancel.add_argument("--compensate", action="store_true", help="compensate completed steps first")

    history = workflow.add_parser("history", help="every history event of a process")
    history.add_argument("process_id")

    graph = workflow.add_parser(
        "graph", help="a Mermaid flowchart of a definition (and a process's progress)"
    )
    graph.add_argument("name", help="definition name")
    graph.add_argument("--version", type=int, default=0, help="definition version (default the latest)")
    graph.add_argument("--process", default="", help="colour each step by its state in this process")

    defs = workflow.add_parser("defs", help="stored definitions: `defs ls [NAME]`, `defs show NAME`")
    defs.add_argument("defs_action", choices=["ls", "show"])
    defs.add_argument("name", nargs="?", default="", help="definition name (required by show)")
    defs.add_argument("--version", type=int, default=0, help="show: this version (default the latest)")
    defs.add_argument("--all-versions", action="store_true", help="ls: every version, not only the latest")
    return [
        (apply, False),
        (start, False),
        (status, True),
        (watch, True),
        (ls, True),
        (signal, False),
        (cancel, False),
        (history, True),
        (graph, False),
        (defs, True),
        *cli_workflow_ops.add_actions(workflow),
    ]


async def workflow_command(args: argparse.Namespace, client: Client) -> int:
    """Run one `mgmt workflow` action; returns the exit status."""
    match args.action:
        case "apply":
            return await _apply(client, args)
        case "start":
            return await _start(client, args)
        case "status":
            process = (await client.workflow.status(args.process_id)).proto
            if args.output == "json":
                print(as_json(process))
            else:
                _print_status(process, await _missing_workers(client, process))
        case "watch":
            return await _follow(client, args.process_id, json_lines=args.output == "json")
        case "ls":
            processes = [
                p.proto
                for p in await client.workflow.list(
                    definition=args.definition,
                    states=args.states,
                    page_size=args.limit,
                    parent_process_id=args.parent,
                    business_key_prefix=args.key_prefix,
                    current_step_id=args.step,
                    incidents=_INCIDENTS[args.incidents],
                    search_attributes=dict(args.attributes),
                )
            ]
            if args.output == "json":
                print(as_json(processes))
            else:
                _print_table(processes)
        case "signal":
            reply = await client.workflow.signal(
                args.process_id,
                args.name,
                cli_workflow_ops.json_object(args.payload, "--payload"),
                signal_id=args.signal_id,
            )
            outcome = (
                "duplicate, ignored" if reply.duplicate else "buffered" if reply.buffered else "delivered"
            )
            print(f"signal {args.name}: {outcome}")
            if reply.buffered:
                await _warn_unknown_signal(client, args.process_id, args.name)
        case "defs":
            return await _defs(client, args)
        case "cancel":
            process = (
                await client.workflow.cancel(args.process_id, args.reason, compensate=args.compensate)
            ).proto
            print(f"{process.id} {_state_name(process.state)}")
        case "history":
            events = await client.workflow.history(args.process_id)
            if args.output == "json":
                print(as_json([event.proto for event in events]))
            for event in events if args.output != "json" else ():
                print(_history_line(event.proto))
        case "graph":
            print(await _graph(client, args), end="")
        case action if action in cli_workflow_ops.ACTIONS:
            await cli_workflow_ops.run_action(args, client)
    return EXIT_OK


async def _apply(client: Client, args: argparse.Namespace) -> int:
    source = await asyncio.to_thread(_read, args.file)
    try:
        reply = await client.workflow.apply(source, validate_only=args.validate_only)
    except InvalidArgument as exc:
        for violation in exc.violations:
            print(f"{violation.field or args.file}: {violation.description}", file=sys.stderr)
        return EXIT_FAILED
    if args.validate_only:
        outcome = "valid, would be created" if reply.created else "valid, unchanged"
    else:
        outcome = "created" if reply.created else "unchanged"
    print(f"{reply.name}: version {reply.version} ({outcome})")
    return EXIT_OK


async def _start(client: Client, args: argparse.Namespace) -> int:
    if args.input_file is not None:
        text = await asyncio.to_thread(_read, args.input_file)
        payload = cli_workflow_ops.json_object(text, "--input-file")
    else:
        payload = cli_workflow_ops.json_object(args.input, "--input")
    process = (
        await client.workflow.start(args.name, payload, business_key=args.key, version=args.version)
    ).proto
    if args.key and _plain(process.input) != _whole(payload or {}):
        print(
            f"mgmt: warning: a process with business key {args.key!r} already exists with different input; "
            "it is shown and nothing was started",
            file=sys.stderr,
        )
    print(process.id, flush=True)
    print(f"state: {_state_name(process.state)}", flush=True)
    if args.wait:
        return await _follow(client, process.id)
    return EXIT_OK


async def _follow(client: Client, process_id: str, *, json_lines: bool = False) -> int:
    """Print events as they commit until the process ends; 0 if it COMPLETED."""
    final: pb.Process | None = None
    async for frame in client.workflow.watch(process_id):
        for event in frame.events:
            print(as_json(event.proto) if json_lines else _watch_line(event.proto), flush=True)
        if frame.process is not None:
            final = frame.process.proto
    if final is None or final.state not in _FINAL:
        final = (await client.workflow.status(process_id)).proto
    if json_lines:
        print(as_json(final), flush=True)
    else:
        print(f"{final.id} {_state_name(final.state)}{_error_note(final.error)}", flush=True)
    return EXIT_OK if final.state == pb.PROCESS_STATE_COMPLETED else EXIT_FAILED


async def _graph(client: Client, args: argparse.Namespace) -> str:
    version, states = args.version, None
    if args.process:
        process = (await client.workflow.status(args.process)).proto
        if process.definition != args.name:
            raise ValueError(f"process {process.id} runs {process.definition!r}, not {args.name!r}")
        if version and version != process.definition_version:
            raise ValueError(f"process {process.id} runs version {process.definition_version}, not {version}")
        version = process.definition_version
        states = {step.step_id: step_class(pb.StepState.Name(step.state)) for step in process.steps}
    definition = await client.workflow.definition(args.name, version)
    return mermaid(_plain(definition.proto.spec), states)


async def _defs(client: Client, args: argparse.Namespace) -> int:
    if args.defs_action == "ls":
        found = await client.workflow.definitions(args.name, all_versions=args.all_versions)
        if args.output == "json":
            print(as_json([d.proto for d in found]))
            return EXIT_OK
        print(f"{'NAME':32} {'VERSION':>7}  CREATED")
        for d in found:
            print(f"{d.name:32} {d.version:>7}  {_time(d.proto.created_at)}")
        return EXIT_OK
    if not args.name:
        raise ValueError("mgmt workflow defs show: which definition? give its NAME")
    definition = await client.workflow.definition(args.name, args.version)
    if args.output == "json":
        print(as_json(definition.proto))
    else:
        print(
            f"# {definition.name} version {definition.version}, created {_time(definition.proto.created_at)}"
        )
        print(definition.source, end="" if definition.source.endswith("\n") else "\n")
    return EXIT_OK


async def _missing_workers(client: Client, process: pb.Process) -> dict[str, str]:
    """For steps whose task waits to be handed out: "no live worker for Service/type" when none is up."""
    waiting = [s.step_id for s in process.steps if s.state == pb.STEP_STATE_SCHEDULED]
    if not waiting:
        return {}
    definition = await client.workflow.definition(process.definition, process.definition_version)
    tasks = {
        step["id"]: step["task"]
        for step in _steps(_plain(definition.proto.spec))
        if isinstance(step.get("task"), Mapping) and "id" in step
    }
    notes: dict[str, str] = {}
    for step_id in waiting:
        task = tasks.get(step_id)
        if task is None:
            continue
        if not await client.registry.lookup(str(task.get("service", ""))):
            notes[step_id] = f"no live worker for {task.get('service')}/{task.get('type')}"
    return notes


async def _warn_unknown_signal(client: Client, process_id: str, name: str) -> None:
    """A buffered signal that no step waits for and the definition never names is most likely a typo."""
    process = await client.workflow.status(process_id)
    if any(step.waiting_for == name for step in process.steps):
        return
    definition = await client.workflow.definition(process.definition, process.definition_version)
    names = {
        str(step["wait_signal"].get("name"))
        for step in _steps(_plain(definition.proto.spec))
        if isinstance(step.get("wait_signal"), Mapping)
    }
    if name not in names:
        known = ", ".join(sorted(names)) or "none"
        print(
            f"mgmt: warning: no step of {process.definition} waits for signal {name!r} (its signals: {known}); "
            "it is kept in case one does",
            file=sys.stderr,
        )


def _steps(value: Any) -> list[dict[str, Any]]:
    """Every step of a definition spec, nested ones (parallel branches, choices) included."""
    found: list[dict[str, Any]] = []
    if isinstance(value, Mapping):
        if "id" in value and isinstance(value.get("id"), str):
            found.append(dict(value))
        for item in value.values():
            found.extend(_steps(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(_steps(item))
    return found


# -- output ------------------------------------------------------------------------------------------


def _print_status(process: pb.Process, notes: Mapping[str, str] | None = None) -> None:
    print(f"process     {process.id}")
    print(f"definition  {process.definition}@{process.definition_version}")
    print(f"state       {_state_name(process.state)}")
    print(f"key         {process.business_key or '-'}")
    print(f"created     {_time(process.created_at)}")
    if process.HasField("ended_at"):
        print(f"ended       {_time(process.ended_at)}")
    if process.cancel_reason:
        print(f"cancelled   {process.cancel_reason}")
    if process.parent_process_id:
        print(f"parent      {process.parent_process_id} (step {process.parent_step_id})")
    for child in process.child_process_ids:
        print(f"child       {child}")
    print("steps:")
    width = max((len(step.step_id) for step in process.steps), default=4)
    for step in process.steps:
        error = step.last_error.code if step.HasField("last_error") else "-"
        note = ""
        if step.state == pb.STEP_STATE_WAITING:
            note = f"  waiting for {step.waiting_for}" if step.waiting_for else "  sleeping"
            note += f" until {_time(step.timer_at)}" if step.HasField("timer_at") else ""
        elif step.state == pb.STEP_STATE_RETRYING and step.HasField("timer_at"):
            note = f"  retry at {_time(step.timer_at)}"
        elif step.worker_instance_id:
            note = f"  on {step.worker_instance_id}"
        if step.child_process_id:
            note += f"  child {step.child_process_id}"
        if step.items_total:
            note += (
                f"  items {step.items_completed} completed, {step.items_failed} failed,"
                f" {step.items_started - step.items_completed - step.items_failed} running"
                f" of {step.items_total}"
            )
        if notes and step.step_id in notes:
            note += f"  {notes[step.step_id]}"
        state = pb.StepState.Name(step.state).removeprefix("STEP_STATE_")
        print(f"  {step.step_id:{width}}  {state:22} attempts {step.attempts:<3} error {error}{note}")
    if process.HasField("error"):
        print(f"error       {process.error.code}: {process.error.message}{_at_step(process.error)}")
    if process.HasField("output") or process.state == pb.PROCESS_STATE_COMPLETED:
        print(f"output      {_compact(_plain(process.output))}")


def _print_table(processes: Sequence[pb.Process]) -> None:
    rows = [
        (
            p.id,
            f"{p.definition}@{p.definition_version}",
            _state_name(p.state),
            p.business_key or "-",
            _time(p.created_at),
        )
        for p in processes
    ]
    header = ("ID", "DEFINITION", "STATE", "KEY", "CREATED")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])


def _watch_line(event: pb.HistoryEvent) -> str:
    clock = _datetime(event.time).strftime("%H:%M:%S.%f")[:-3]
    attempt = f"#{event.attempt}" if event.attempt else ""
    parts = [clock, f"{_event_name(event.type):24}", event.step_id, attempt, _summary(_plain(event.details))]
    return " ".join(part for part in parts if part).rstrip()


def _history_line(event: pb.HistoryEvent) -> str:
    parts = [
        f"{event.sequence:>4}",
        _datetime(event.time).isoformat(timespec="milliseconds"),
        f"{_event_name(event.type):24}",
        f"{event.step_id or '-':16}",
        f"{event.attempt or '-':>3}",
        _compact(_plain(event.details)),
    ]
    return " ".join(parts)


def _summary(details: Mapping[str, Any]) -> str:
    """The few details worth a glance: error code, retry time, branch, deadline, signal, reason."""
    notes: list[str] = []
    if details.get("task_type"):
        notes.append(f"{details.get('service', '?')}/{details['task_type']}")
    error = details.get("error")
    if isinstance(error, Mapping) and error.get("code"):
        notes.append(str(error["code"]))
    if details.get("will_retry") and isinstance(details.get("retry_at"), int | float):
        notes.append(f"retry at {_epoch(details['retry_at'])}")
    elif "will_retry" in details and not details["will_retry"]:
        notes.append("no retry")
    if "branch" in details:
        notes.append("no branch taken" if details["branch"] is None else f"branch {details['branch']}")
    if isinstance(details.get("until"), int | float):
        notes.append(f"until {_epoch(details['until'])}")
    if details.get("name"):
        notes.append(f"signal {details['name']}" + (" (buffered)" if details.get("buffered") else ""))
    if details.get("subject"):
        notes.append(f"message {details['subject']}")
    if details.get("reason"):
        notes.append(f"reason: {details['reason']}")
    if details.get("compensate"):
        notes.append("compensate")
    if details.get("business_key"):
        notes.append(f"key {details['business_key']}")
    return ", ".join(notes)


def _error_note(error: pb.Failure) -> str:
    if error.code == "CANCELLED":  # the state says it already: the note gives the reason
        return f" ({error.message})"
    return f" ({error.code}: {error.message}{_at_step(error)})" if error.code else ""


def _at_step(error: pb.Failure) -> str:
    if not error.step_id:
        return ""
    return f" at {error.step_id}" + (f" attempt {error.attempt}" if error.attempt else "")


_INCIDENTS = {
    None: pb.INCIDENT_FILTER_UNSPECIFIED,
    "with": pb.INCIDENT_FILTER_WITH,
    "without": pb.INCIDENT_FILTER_WITHOUT,
}


def _attribute(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _state_name(state: pb.ProcessState.ValueType) -> str:
    return pb.ProcessState.Name(state).removeprefix("PROCESS_STATE_")


def _event_name(kind: pb.HistoryEventType.ValueType) -> str:
    # The Bus event name: "step_completed", "process_cancelled", ...
    return pb.HistoryEventType.Name(kind).removeprefix("HISTORY_EVENT_TYPE_").lower()


def _state(text: str) -> pb.ProcessState.ValueType:
    """`--state` value: a process state name, any case, with or without its prefix."""
    name = text.upper().removeprefix("PROCESS_STATE_")
    if name not in _STATE_NAMES:
        raise argparse.ArgumentTypeError(f"unknown state {text!r}; expected one of {', '.join(_STATE_NAMES)}")
    return pb.ProcessState.Value(f"PROCESS_STATE_{name}")


def _read(name: str) -> str:
    """A file's text, or stdin's for "-"."""
    return sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")


def _plain(message: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as JSON values, with whole floats as ints (Struct keeps every number as a double)."""
    value: dict[str, Any] = _whole(json_format.MessageToDict(message))
    return value


def _whole(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: _whole(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole(item) for item in value]
    return value


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _datetime(stamp: timestamp_pb2.Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC).astimezone()


def _time(stamp: timestamp_pb2.Timestamp) -> str:
    return _datetime(stamp).isoformat(timespec="seconds") if stamp.seconds or stamp.nanos else "-"


def _epoch(seconds: float) -> str:
    """A moment in local time; with its date when it is not today (a 7-day wait ends another day)."""
    moment = datetime.fromtimestamp(seconds).astimezone()
    clock = moment.strftime("%H:%M:%S.%f")[:-3]
    return (
        clock
        if moment.date() == datetime.now().astimezone().date()
        else f"{moment.date().isoformat()} {clock}"
    )


def as_json(value: Any) -> str:
    """A message (or a list of them) as JSON with the .proto field names, as grpcurl prints them."""
    if isinstance(value, Message):
        return json.dumps(json_format.MessageToDict(value, preserving_proto_field_name=True))
    return json.dumps([json_format.MessageToDict(m, preserving_proto_field_name=True) for m in value])
