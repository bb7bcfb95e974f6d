"""`mgmt schedule ...`: create, ls, show, pause, unpause, trigger and rm (prints; part of the CLI)."""

from __future__ import annotations

import argparse
import json
from datetime import datetime

from control_plane.cli_workflow import as_json
from control_plane.core.workflow.durations import format_duration, parse_duration
from hms.mgmt.v1 import schedule_pb2 as pb
from hms_mgmt import Client

EXIT_OK = 0
_OVERLAP_NAMES = {"skip": "skip", "buffer-one": "buffer_one", "allow-all": "allow_all"}


def add_schedule_verbs(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser],
) -> list[tuple[argparse.ArgumentParser, bool]]:
    """Add `schedule` and its actions; returns (action parser, whether it reads: takes `-o json`)."""
    schedule = verbs.add_parser("schedule", help="schedules that start processes").add_subparsers(
        dest="action", required=True
    )
    create = schedule.add_parser("create", help="create a schedule: --cron or --every")
    create.add_argument("id", help="schedule id ([A-Za-z0-9._-])")
    create.add_argument("--definition", required=True, help="definition to start")
    create.add_argument("--version", type=int, default=0, help="definition version (default the latest)")
    create.add_argument("--input", default=None, help="input of each start, as a JSON object")
    when = create.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", default="", help='five cron fields, e.g. "0 1 * * *"')
    when.add_argument("--every", type=_duration, default=0.0, help="a fixed interval, e.g. 15m")
    create.add_argument("--tz", default="", help="IANA time zone of --cron (default UTC)")
    create.add_argument("--phase", type=_duration, default=0.0, help="offset of --every's times, e.g. 5m")
    create.add_argument(
        "--jitter", type=_duration, default=0.0, help="random delay of each start, up to this"
    )
    create.add_argument("--start", type=_moment, default=None, help="first possible time (RFC 3339)")
    create.add_argument("--end", type=_moment, default=None, help="last possible time (RFC 3339)")
    create.add_argument(
        "--overlap", choices=sorted(_OVERLAP_NAMES), default="skip", help="while the previous start runs"
    )
    create.add_argument(
        "--catchup-window",
        type=_duration,
        default=None,
        help="start missed times up to this old (default 1m)",
    )
    create.add_argument("--paused", action="store_true", help="create it paused")
    create.add_argument("--note", default="", help="a note kept with it")

    ls = schedule.add_parser("ls", help="list schedules")
    show = schedule.add_parser("show", help="a schedule with its state")
    show.add_argument("id")
    pause = schedule.add_parser("pause", help="stop firing (missed times are skipped)")
    pause.add_argument("id")
    pause.add_argument("--note", default="", help="why")
    unpause = schedule.add_parser("unpause", help="fire again from the next time")
    unpause.add_argument("id")
    unpause.add_argument("--note", default="", help="why")
    trigger = schedule.add_parser("trigger", help="start a process now (under the overlap policy)")
    trigger.add_argument("id")
    trigger.add_argument("--request-id", default="", help="a repeat with the same id starts nothing more")
    rm = schedule.add_parser("rm", help="delete a schedule (its processes stay)")
    rm.add_argument("id")
    return [
        (create, True),
        (ls, True),
        (show, True),
        (pause, True),
        (unpause, True),
        (trigger, True),
        (rm, False),
    ]


async def schedule_command(args: argparse.Namespace, client: Client) -> int:
    """Run one `mgmt schedule` action; returns the exit status."""
    json_out = getattr(args, "output", "text") == "json"
    match args.action:
        case "create":
            payload = json.loads(args.input) if args.input is not None else None
            if payload is not None and not isinstance(payload, dict):
                raise ValueError("--input: expected a JSON object")
            info = await client.schedules.create(
                args.id,
                args.definition,
                payload,
                cron=args.cron,
                time_zone=args.tz,
                every_s=args.every,
                phase_s=args.phase,
                jitter_s=args.jitter,
                start_time=args.start,
                end_time=args.end,
                version=args.version,
                overlap=_OVERLAP_NAMES[args.overlap],
                catchup_window_s=args.catchup_window,
                paused=args.paused,
                note=args.note,
            )
            _print(info, json_out)
        case "ls":
            found = await client.schedules.list()
            if json_out:
                print(as_json(found))
            else:
                _print_table(found)
        case "show":
            _print(await client.schedules.get(args.id), json_out)
        case "pause":
            _print(await client.schedules.pause(args.id, args.note), json_out)
        case "unpause":
            _print(await client.schedules.unpause(args.id, args.note), json_out)
        case "trigger":
            reply = await client.schedules.trigger(args.id, args.request_id)
            if json_out:
                print(as_json(reply))
            else:
                outcome = pb.TriggerOutcome.Name(reply.outcome).removeprefix("TRIGGER_OUTCOME_").lower()
                print(f"{args.id}: {outcome}{' ' + reply.process_id if reply.process_id else ''}")
        case "rm":
            await client.schedules.delete(args.id)
            print(f"{args.id}: deleted")
    return EXIT_OK


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _moment(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give the offset (Z or +01:00): {text!r}")
    return moment.timestamp()


def _when(info: pb.ScheduleInfo) -> str:
    spec = info.spec
    if spec.cron:
        return f"cron {spec.cron!r} {spec.time_zone or 'UTC'}"
    text = f"every {format_duration(spec.interval.ToTimedelta().total_seconds())}"
    if spec.HasField("phase"):
        text += f" +{format_duration(spec.phase.ToTimedelta().total_seconds())}"
    return text


def _stamp(info: pb.ScheduleInfo, field: str) -> str:
    if not info.HasField(field):  # type: ignore[arg-type]
        return "-"
    return str(getattr(info, field).ToDatetime().isoformat(timespec="seconds")) + "Z"


def _overlap(info: pb.ScheduleInfo) -> str:
    return pb.OverlapPolicy.Name(info.overlap).removeprefix("OVERLAP_POLICY_").lower().replace("_", "-")


def _print(info: pb.ScheduleInfo, json_out: bool) -> None:
    if json_out:
        print(as_json(info))
        return
    action = info.action
    print(f"schedule    {info.id}")
    print(f"when        {_when(info)}")
    if info.spec.HasField("jitter"):
        print(f"jitter      {format_duration(info.spec.jitter.ToTimedelta().total_seconds())}")
    print(f"starts      {action.definition}{'@' + str(action.version) if action.version else ''}")
    print(f"overlap     {_overlap(info)}")
    print(f"catch-up    {format_duration(info.catchup_window.ToTimedelta().total_seconds())}")
    print(
        f"state       {'paused' if info.paused else 'active'}{'  (' + info.note + ')' if info.note else ''}"
    )
    print(f"next        {_stamp(info, 'next_nominal_time')}")
    print(f"last        {_stamp(info, 'last_nominal_time')}  {info.last_process_id or '-'}")
    if info.HasField("buffered_nominal_time"):
        print(f"buffered    {_stamp(info, 'buffered_nominal_time')}")
    print(
        f"started     {info.started}  skipped (overlap) {info.skipped_overlaps}  missed {info.missed_catchup}"
    )
    if info.last_error:
        print(f"last error  {info.last_error}")


def _print_table(found: list[pb.ScheduleInfo]) -> None:
    print(f"{'ID':24} {'STATE':7} {'DEFINITION':20} {'NEXT':21} {'STARTED':>7}  WHEN")
    for info in found:
        state = "paused" if info.paused else "active"
        print(
            f"{info.id:24} {state:7} {info.action.definition:20} {_stamp(info, 'next_nominal_time'):21} "
            f"{info.started:>7}  {_when(info)}"
        )
