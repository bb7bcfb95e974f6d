"""`mgmt workflow incidents | retry | skip | fail`: an operator's repairs of processes (prints; part of the CLI)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from google.protobuf import json_format

from hms.mgmt.v1 import workflow_pb2 as pb
from hms_mgmt import Client

ACTIONS = frozenset({"incidents", "retry", "skip", "fail"})


def add_actions(
    workflow: argparse._SubParsersAction[argparse.ArgumentParser],
) -> list[tuple[argparse.ArgumentParser, bool]]:
    """Add the operator actions to `mgmt workflow`; returns (action parser, whether it reads)."""
    incidents = workflow.add_parser(
        "incidents", help="incidents (steps waiting for an operator), newest first"
    )
    incidents.add_argument("--definition", default="", help="only of this definition")
    incidents.add_argument("--process", default="", help="only of this process")
    incidents.add_argument("--all", action="store_true", help="resolved incidents too")
    incidents.add_argument("--limit", type=int, default=50, help="most incidents to list (1-1000)")

    retry = workflow.add_parser(
        "retry", help="retry a step in INCIDENT (--step), or a FAILED process from its failed step"
    )
    retry.add_argument("process_id")
    retry.add_argument(
        "--step", default="", help="the step in INCIDENT; without it the FAILED process resumes"
    )
    retry.add_argument("--input", default=None, help="--step only: the step's input as a JSON object")
    retry.add_argument("--reason", required=True, help="why (recorded in the history)")

    skip = workflow.add_parser("skip", help="complete a step in INCIDENT with a given output")
    skip.add_argument("process_id")
    skip.add_argument("--step", required=True, help="the step in INCIDENT")
    skip.add_argument("--output", default="{}", help="the step's output as a JSON object")
    skip.add_argument("--reason", required=True, help="why (recorded in the history)")

    fail = workflow.add_parser("fail", help="give up on a process's incidents: compensate, or fail")
    fail.add_argument("process_id")
    fail.add_argument("--reason", required=True, help="why (recorded in the history)")
    return [(incidents, True), (retry, False), (skip, False), (fail, False)]


async def run_action(args: argparse.Namespace, client: Client) -> None:
    """Run one operator action (its name is in ACTIONS)."""
    if args.action == "incidents":
        found = await client.workflow.incidents(
            definition=args.definition,
            process_id=args.process,
            include_resolved=args.all,
            page_size=args.limit,
        )
        if args.output == "json":
            print(
                json.dumps(
                    [json_format.MessageToDict(i.proto, preserving_proto_field_name=True) for i in found]
                )
            )
        else:
            _print_incidents([i.proto for i in found])
        return
    if args.action == "retry" and args.step:
        process = await client.workflow.retry_step(
            args.process_id, args.step, args.reason, input=json_object(args.input, "--input")
        )
    elif args.action == "retry":
        if args.input is not None:
            raise ValueError("--input: only with --step (a FAILED process resumes with its steps' inputs)")
        process = await client.workflow.retry_process(args.process_id, args.reason)
    elif args.action == "skip":
        output = json_object(args.output, "--output")
        process = await client.workflow.skip_step(args.process_id, args.step, args.reason, output=output)
    else:
        process = await client.workflow.fail_process(args.process_id, args.reason)
    print(f"{process.id} {process.state.name}")


def json_object(text: str | None, flag: str) -> dict[str, Any] | None:
    """A flag's JSON object (None when the flag is absent); ValueError names the flag, so a typo is
    reported as the user wrote it rather than as a JSON parser's position."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{flag}: not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag}: expected a JSON object, got {type(value).__name__}")
    return value


def _print_incidents(incidents: Sequence[pb.Incident]) -> None:
    rows = [
        (
            i.process_id,
            i.definition,
            i.step_id,
            i.error.code,
            i.resolution or "open",
            json_format.MessageToJson(i.opened_at).strip('"'),
        )
        for i in incidents
    ]
    header = ("PROCESS", "DEFINITION", "STEP", "ERROR", "STATUS", "OPENED")
    widths = [max(len(row[n]) for row in [header, *rows]) for n in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
