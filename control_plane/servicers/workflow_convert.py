"""Conversions between Workflow wire messages and domain values."""

from __future__ import annotations

from typing import Any

from control_plane.core.workflow.definition import Definition, StepKind
from control_plane.core.workflow.workflows import ReportOutcome
from control_plane.models import (
    DefinitionVersion,
    EventType,
    HistoryEvent,
    Incident,
    ProcessRecord,
    ProcessState,
    StepState,
    TaskAttempt,
)
from control_plane.observability.workflow_tracing import task_traceparent
from control_plane.servicers.convert import duration, timestamp
from control_plane.servicers.structs import fill, to_struct
from hms.mgmt.v1 import workflow_pb2 as pb

_STATE = {s: pb.ProcessState.Value(f"PROCESS_STATE_{s.name}") for s in ProcessState}
STATE_FROM_WIRE = {v: k for k, v in _STATE.items()}
_STEP_STATE = {s: pb.StepState.Value(f"STEP_STATE_{s.name}") for s in StepState}
_KIND = {k: pb.StepKind.Value(f"STEP_KIND_{k.name}") for k in StepKind}
_EVENT = {e: pb.HistoryEventType.Value(f"HISTORY_EVENT_TYPE_{e.name}") for e in EventType}
_RESULT = {
    ReportOutcome.ACCEPTED: pb.REPORT_RESULT_ACCEPTED,
    ReportOutcome.ALREADY_REPORTED: pb.REPORT_RESULT_ALREADY_REPORTED,
    ReportOutcome.STALE_ATTEMPT: pb.REPORT_RESULT_STALE_ATTEMPT,
    ReportOutcome.TASK_CANCELLED: pb.REPORT_RESULT_TASK_CANCELLED,
}
_RESULT_MESSAGE = {
    ReportOutcome.ACCEPTED: "",
    ReportOutcome.ALREADY_REPORTED: "this attempt's outcome was already recorded",
    ReportOutcome.STALE_ATTEMPT: "this attempt is no longer current (timed out, or a later attempt exists)",
    ReportOutcome.TASK_CANCELLED: "the process was cancelled or ended, or the task was cancelled",
}
_CANCEL_REASON = {
    "process_cancelled": (pb.TASK_CANCEL_REASON_PROCESS_CANCELLED, "the process was cancelled"),
    "timed_out": (pb.TASK_CANCEL_REASON_TIMED_OUT, "the attempt ran out of time"),
    "not_needed": (pb.TASK_CANCEL_REASON_NOT_NEEDED, "the process no longer needs this attempt"),
}


def result(outcome: ReportOutcome) -> pb.ReportResult.ValueType:
    """The wire form of a report outcome."""
    return _RESULT[outcome]


def result_message(outcome: ReportOutcome) -> str:
    """A human explanation of a report outcome."""
    return _RESULT_MESSAGE[outcome]


def definition(version: DefinitionVersion, parsed: Definition | None, *, full: bool) -> pb.Definition:
    """The wire form of a definition version (source and spec only when `full`)."""
    message = pb.Definition()
    fill_definition(message, version, parsed, full=full)
    return message


def fill_definition(
    message: pb.Definition, version: DefinitionVersion, parsed: Definition | None, *, full: bool
) -> None:
    """Write a definition version into `message`, in place: the one inside a response, so that a large
    spec is not built and then copied into it (one C call that holds the GIL: ~37 ms for a 1 MiB
    definition on a slow machine)."""
    message.name = version.name
    message.version = version.version
    message.description = parsed.description if parsed else ""
    message.digest = version.digest
    message.created_at.CopyFrom(timestamp(version.created_at))
    if full:
        message.source = version.source
        if parsed is not None:
            # The spec holds only JSON values (checked when it was registered): filled in place.
            fill(message.spec, parsed.spec)


def incident(item: Incident) -> pb.Incident:
    """The wire form of an incident."""
    message = pb.Incident(
        process_id=item.process_id,
        definition=item.definition,
        step_id=item.step_id,
        sequence=item.sequence,
        opened_at=timestamp(item.opened_at),
        resolution=item.resolution,
    )
    failure = _failure(item.error)
    if failure is not None:
        message.error.CopyFrom(failure)
    if item.resolved_at:
        message.resolved_at.CopyFrom(timestamp(item.resolved_at))
    return message


def _failure(raw: dict[str, Any] | None) -> pb.Failure | None:
    if not raw:
        return None
    failure = pb.Failure(
        code=raw.get("code", ""),
        message=raw.get("message", ""),
        step_id=raw.get("step_id", ""),
        attempt=raw.get("attempt", 0),
        time=timestamp(raw.get("time", 0.0)),
    )
    if raw.get("details") is not None:
        failure.details.CopyFrom(to_struct(raw["details"]))
    return failure


def process(record: ProcessRecord, parsed: Definition | None, *, details: bool) -> pb.Process:
    """The wire form of a process; `details` adds input, output and steps."""
    message = pb.Process(
        id=record.id,
        definition=record.definition,
        definition_version=record.version,
        business_key=record.business_key,
        state=_STATE[record.state],
        current_step_ids=[
            s.step_id
            for s in record.steps.values()
            if s.state
            in (
                StepState.SCHEDULED,
                StepState.RUNNING,
                StepState.RETRYING,
                StepState.WAITING,
                StepState.COMPENSATING,
                StepState.INCIDENT,
            )
        ],
        cancel_reason=record.cancel_reason,
        parent_process_id=record.parent_id,
        parent_step_id=record.parent_step,
        child_process_ids=[s.child_id for s in record.steps.values() if s.child_id],
        search_attributes=record.search,
        created_at=timestamp(record.created_at),
        updated_at=timestamp(record.updated_at),
        last_event_sequence=record.last_event_sequence,
    )
    failure = _failure(record.error)
    if failure is not None:
        message.error.CopyFrom(failure)
    if record.ended_at:
        message.ended_at.CopyFrom(timestamp(record.ended_at))
    if details:
        message.input.CopyFrom(to_struct(record.input))
        if record.output is not None:
            message.output.CopyFrom(to_struct(record.output))
        order = [s.id for s in parsed.all_steps()] if parsed else list(record.steps)
        for step_id in order:
            run = record.steps.get(step_id)
            if run is None:
                continue
            status = message.steps.add(
                step_id=step_id,
                state=_STEP_STATE[run.state],
                attempts=run.attempts,
                worker_instance_id=run.worker_instance_id,
                child_process_id=run.child_id,
                items_total=run.items,
                items_started=run.items_started,
                items_completed=run.items_completed,
                items_failed=run.items_failed,
            )
            if parsed is not None:
                step = parsed.step(step_id)
                status.kind = _KIND[step.kind]
                status.parent_step_id = step.parent
                status.waiting_for = step.signal or step.subject
            if run.output is not None:
                status.output.CopyFrom(to_struct(run.output))
            last_error = _failure(run.last_error)
            if last_error is not None:
                status.last_error.CopyFrom(last_error)
            if run.started_at:
                status.started_at.CopyFrom(timestamp(run.started_at))
            if run.ended_at:
                status.ended_at.CopyFrom(timestamp(run.ended_at))
            if run.timer_at:
                status.timer_at.CopyFrom(timestamp(run.timer_at))
            if run.heartbeat_details is not None:
                status.heartbeat_details.CopyFrom(to_struct(run.heartbeat_details))
    return message


def event(item: HistoryEvent) -> pb.HistoryEvent:
    """The wire form of a history event."""
    return pb.HistoryEvent(
        sequence=item.sequence,
        process_id=item.process_id,
        time=timestamp(item.time),
        type=_EVENT[item.type],
        step_id=item.step_id,
        attempt=item.attempt,
        process_state=_STATE[item.state],
        details=to_struct(item.details),
    )


def task(item: TaskAttempt, deadline: float | None, token: str) -> pb.Task:
    """The wire form of a task attempt with its start-to-close deadline (None: it has none)."""
    message = pb.Task(
        task_token=token,
        process_id=item.process_id,
        definition=item.definition,
        definition_version=item.definition_version,
        step_id=item.step_id,
        task_type=item.task_type,
        attempt=item.attempt,
        input=to_struct(item.input),
        business_key=item.business_key,
        compensation=item.compensation,
    )
    if deadline is not None:
        message.deadline.CopyFrom(timestamp(deadline))
    if item.heartbeat_timeout_s:
        message.heartbeat_timeout.CopyFrom(duration(item.heartbeat_timeout_s))
    if item.heartbeat_details is not None:
        message.heartbeat_details.CopyFrom(to_struct(item.heartbeat_details))
    if item.trace_parent:
        message.traceparent = task_traceparent(item)
    return message


def cancellation(token: str, reason: str) -> pb.TaskCancellation:
    """The wire form of a task withdrawal, with a sentence saying why."""
    wire_reason, message = _CANCEL_REASON.get(reason, _CANCEL_REASON["not_needed"])
    return pb.TaskCancellation(task_token=token, reason=wire_reason, message=message)
