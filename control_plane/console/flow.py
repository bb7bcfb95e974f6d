"""A definition laid out for drawing as nested HTML boxes, each step coloured by its state in a process.

The same picture `mgmt workflow graph` draws in Mermaid (control_plane/graph.py, whose step classes it
shares), but as plain HTML and CSS: no graph library to ship, and a step is an element a test can find.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from control_plane.core.workflow.definition import Definition, Step, StepKind, TaskSpec
from control_plane.graph import NOT_REACHED, step_class
from control_plane.models import StepRun, StepState


@dataclass(frozen=True, slots=True)
class Box:
    """One step: what it does, and how far it got."""

    step_id: str
    kind: str
    lines: tuple[str, ...]
    drawn_as: str  # a class of graph.STYLES: done, running, failed, compensated, not_reached
    state: str  # the step's state ("pending" when not reached; "" when no process is drawn)
    attempts: int


@dataclass(frozen=True, slots=True)
class Lane:
    """Steps run one after another; `label` says when a branch is taken."""

    label: str
    items: tuple[Box | Fork, ...]


@dataclass(frozen=True, slots=True)
class Fork:
    """A choice or parallel step and its branches; a parallel one joins them again."""

    box: Box
    lanes: tuple[Lane, ...]
    joins: bool


def state_class(state: StepState) -> str:
    """The drawing class of a step state."""
    return step_class(f"STEP_STATE_{state.name}")


def layout(definition: Definition, runs: Mapping[str, StepRun] | None = None) -> Lane:
    """The definition as one lane of boxes; with `runs` (a process's steps) each box shows its state."""
    return Lane("", tuple(_item(step, runs) for step in definition.steps))


def _item(step: Step, runs: Mapping[str, StepRun] | None) -> Box | Fork:
    box = _box(step, runs)
    match step.kind:
        case StepKind.CHOICE:
            lanes = [
                Lane(
                    branch.when.text if branch.when is not None else "default",
                    tuple(_item(s, runs) for s in branch.steps),
                )
                for branch in step.branches
            ]
            if all(branch.when is not None for branch in step.branches):
                # No branch holds and there is no default: the choice completes and the process moves on.
                lanes.append(Lane("otherwise", ()))
            return Fork(box, tuple(lanes), joins=False)
        case StepKind.PARALLEL:
            lanes = [
                Lane(f"branch {n}", tuple(_item(s, runs) for s in branch.steps))
                for n, branch in enumerate(step.branches, 1)
            ]
            return Fork(box, tuple(lanes), joins=True)
        case _:
            return box


def _box(step: Step, runs: Mapping[str, StepRun] | None) -> Box:
    """The step's box; without `runs` (a definition drawn alone) it has no state."""
    run = runs.get(step.id) if runs is not None else None
    lines: list[str] = []
    match step.kind:
        case StepKind.TASK:
            assert step.task is not None
            lines.append(f"task: {_target(step.task)}")
            if step.compensate is not None:
                lines.append(f"compensate: {_target(step.compensate)}")
        case StepKind.WAIT_SIGNAL:
            lines.append(f"wait_signal: {step.signal}" if step.signal else f"wait_message: {step.subject}")
            if step.wait_timeout_s is not None:
                lines.append(f"timeout: {_seconds(step.wait_timeout_s)}")
        case StepKind.SLEEP:
            lines.append(f"sleep: {_seconds(step.sleep_s)}")
        case StepKind.CALL if step.call is not None:
            lines.append(f"call: {step.call.definition} {step.call.version}".rstrip())
        case StepKind.MAP if step.map is not None:
            lines.append(f"map: {step.map.items.text}, {step.map.max_concurrency} at once")
            if run is not None and run.items:
                lines.append(f"items: {run.items_completed} done, {run.items_failed} failed of {run.items}")
        case _:
            lines.append(step.kind.value)
    return Box(
        step_id=step.id,
        kind=step.kind.value,
        lines=tuple(lines),
        drawn_as=state_class(run.state) if run is not None else NOT_REACHED,
        state=run.state.value if run is not None else StepState.PENDING.value if runs is not None else "",
        attempts=run.attempts if run is not None else 0,
    )


def _target(task: TaskSpec) -> str:
    version = f" {task.version}" if task.version else ""
    return f"{task.service}/{task.task_type}{version}"


def _seconds(value: float) -> str:
    """A definition's duration as it would be written in one: 30s, 5m, 14d."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{value / size:g}{unit}"
    return f"{value:g}s"
