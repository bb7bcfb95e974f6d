"""Operator actions on one process: repair an incident (retry, skip, fail) or retry a failed process.

Each runs inside a transition, as `Machine` events do, and records one history event naming who
asked (the caller's name, role and channel) and why.
"""

from __future__ import annotations

from typing import Any

from control_plane.core.workflow.definition import Step, StepKind
from control_plane.core.workflow.machine import PROCESS_TIMEOUT, Machine
from control_plane.errors import FailedPrecondition, InvalidArgument
from control_plane.models import Actor, EventType, ProcessState, StepRun, StepState

# A step of a FAILED process that RetryProcess runs again (the failed one, and those its failure cancelled).
_RERUN = frozenset({StepState.FAILED, StepState.CANCELLED})
# Steps whose compensation began: a process that undid anything cannot resume.
_UNDONE = frozenset({StepState.COMPENSATING, StepState.COMPENSATED, StepState.COMPENSATION_FAILED})


def _incident_step(machine: Machine, step_id: str) -> tuple[Step, StepRun]:
    r = machine.record
    if r.state is not ProcessState.RUNNING:
        raise FailedPrecondition(f"process {r.id} is {r.state.value}, not running with an incident")
    try:
        step = machine.definition.step(step_id)
    except KeyError:
        raise InvalidArgument.field("step_id", f"no step {step_id[:64]!r} in the definition") from None
    run = r.steps.get(step_id)
    if run is None or run.state is not StepState.INCIDENT:
        state = run.state.value if run is not None else "not reached"
        raise FailedPrecondition(f"step {step_id!r} of process {r.id} has no open incident ({state})")
    return step, run


def retry_step(machine: Machine, step_id: str, new_input: Any, actor: Actor, reason: str) -> None:
    """A fresh set of attempts for a step in INCIDENT, with `new_input` (a map) instead of its mapping."""
    step, run = _incident_step(machine, step_id)
    machine.effects.resolved_incidents.append((step_id, "retried"))
    details: dict[str, Any] = {"by": actor.to_json(), "reason": reason}
    if new_input is not None:
        details["input"] = new_input
        run.input_override = new_input
    machine._event(EventType.STEP_RETRY_REQUESTED, step_id, run.attempts, **details)
    # Attempt numbers go on (a late report of an earlier attempt stays stale); the policy counts anew.
    run.attempt_base = run.attempts
    machine._schedule(step, run.attempts + 1)


def skip_step(machine: Machine, step_id: str, output: Any, actor: Actor, reason: str) -> None:
    """A step in INCIDENT counts as completed with `output`: the steps after it read it as usual.

    It counts fully: if the process compensates later, the step's compensate task runs too (the operator
    stood in for its task, so what it did is undone like any completed step's work).
    """
    step, run = _incident_step(machine, step_id)
    machine.effects.resolved_incidents.append((step_id, "skipped"))
    machine._event(
        EventType.STEP_SKIP_REQUESTED, step_id, run.attempts, by=actor.to_json(), reason=reason, output=output
    )
    machine._complete_step(step, output)


def fail_process(machine: Machine, actor: Actor, reason: str) -> None:
    """Give up on the incidents: what `on_failure: compensate` would have done (compensate, or fail)."""
    r = machine.record
    open_steps = [run for run in r.steps.values() if run.state is StepState.INCIDENT]
    if r.state is not ProcessState.RUNNING or not open_steps:
        raise FailedPrecondition(f"process {r.id} has no open incident ({r.state.value})")
    first = min(open_steps, key=lambda run: (run.last_error or {}).get("time", 0.0))
    machine.effects.resolved_incidents.append((first.step_id, "failed"))
    machine._event(EventType.PROCESS_FAIL_REQUESTED, first.step_id, by=actor.to_json(), reason=reason)
    failure = first.last_error or {}
    # The other incidents (other parallel branches) are cancelled with the rest of the active steps.
    machine.fail_for_good(machine.definition.step(first.step_id), failure)


def retry_process(machine: Machine, actor: Actor, reason: str) -> list[str]:
    """Resume a FAILED process from its failed step(s), as Conductor's retry; returns the steps run again."""
    r = machine.record
    if r.state is not ProcessState.FAILED:
        raise FailedPrecondition(f"process {r.id} is {r.state.value}: only a FAILED process can be retried")
    if any(run.state in _UNDONE for run in r.steps.values()):
        raise FailedPrecondition(f"process {r.id} compensated some of its steps: it cannot resume")
    layout = machine._layout
    candidates = {sid for sid, run in r.steps.items() if run.state in _RERUN}

    def ancestors(step_id: str) -> list[str]:
        found: list[str] = []
        parent = layout.parent.get(step_id, "")
        while parent:
            found.append(parent)
            parent = layout.parent.get(parent, "")
        return found

    enclosing = {a for sid in candidates for a in ancestors(sid)}
    rerun = [step.id for step in machine.definition.all_steps() if step.id in candidates - enclosing]
    if not rerun:
        raise FailedPrecondition(f"process {r.id} has no failed step to resume from")
    r.state = ProcessState.RUNNING
    r.error = None
    r.ended_at = 0.0
    machine._event(EventType.PROCESS_RETRY_REQUESTED, by=actor.to_json(), reason=reason, steps=rerun)
    machine._event(EventType.PROCESS_RUNNING)
    if machine.definition.timeout_s:
        # The original deadline has passed for a process that timed out: it gets its full time again.
        machine._set_timer(PROCESS_TIMEOUT, machine.now + machine.definition.timeout_s)
    for parent in enclosing:
        parent_run = r.steps[parent]
        parent_run.state = StepState.RUNNING
        parent_run.ended_at = 0.0
    for step_id in rerun:
        if r.state is not ProcessState.RUNNING:
            break  # an earlier re-run failed the process again at once (an input mapping)
        step = machine.definition.step(step_id)
        run = r.steps[step_id]
        if step.kind is StepKind.TASK:
            # The run (and its attempt count) stays: new attempts get new numbers, so late reports stay stale.
            run.attempt_base = run.attempts
            run.ended_at = 0.0
            machine._event(EventType.STEP_STARTED, step_id)
            machine._schedule(step, run.attempts + 1)
        else:
            machine._enter(step)
    return rerun
