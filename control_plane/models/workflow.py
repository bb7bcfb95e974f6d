"""Workflow values: processes, their steps, history events and task attempts."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any


class ProcessState(StrEnum):
    """Lifecycle of a process; the last four are final."""

    STARTED = "started"
    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    FAILED = "failed"
    COMPENSATED = "compensated"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """Whether nothing more can happen to the process."""
        return self in _FINAL


_FINAL = {ProcessState.COMPLETED, ProcessState.FAILED, ProcessState.COMPENSATED, ProcessState.CANCELLED}


class StepState(StrEnum):
    """Where one step of a process stands."""

    PENDING = "pending"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    RETRYING = "retrying"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"
    INCIDENT = "incident"  # failed for good under `on_failure: incident`: waits for an operator


ACTIVE_STEP_STATES = frozenset(
    {
        StepState.SCHEDULED,
        StepState.RUNNING,
        StepState.RETRYING,
        StepState.WAITING,
        StepState.COMPENSATING,
        StepState.INCIDENT,
    }
)


class EventType(StrEnum):
    """Kinds of history event; the Bus event name is the value."""

    PROCESS_STARTED = "process_started"
    PROCESS_RUNNING = "process_running"
    PROCESS_COMPLETED = "process_completed"
    PROCESS_FAILED = "process_failed"
    PROCESS_COMPENSATING = "process_compensating"
    PROCESS_COMPENSATED = "process_compensated"
    PROCESS_CANCEL_REQUESTED = "process_cancel_requested"
    PROCESS_CANCELLED = "process_cancelled"
    STEP_STARTED = "step_started"
    STEP_COMPLETED = "step_completed"
    STEP_FAILED = "step_failed"
    STEP_SKIPPED = "step_skipped"
    TASK_SCHEDULED = "task_scheduled"
    TASK_STARTED = "task_started"
    TASK_FAILED = "task_failed"
    TASK_TIMED_OUT = "task_timed_out"
    SIGNAL_RECEIVED = "signal_received"
    COMPENSATION_STARTED = "compensation_started"
    COMPENSATION_COMPLETED = "compensation_completed"
    COMPENSATION_FAILED = "compensation_failed"
    STEP_INCIDENT = "step_incident"
    STEP_RETRY_REQUESTED = "step_retry_requested"
    STEP_SKIP_REQUESTED = "step_skip_requested"
    PROCESS_FAIL_REQUESTED = "process_fail_requested"
    PROCESS_RETRY_REQUESTED = "process_retry_requested"

    @property
    def published(self) -> bool:
        """Whether the event also goes out on the Bus (task-level events do not)."""
        # A set lookup: asked for every event of every transition (Enum's `value` is a slow descriptor).
        return self in _PUBLISHED_EVENTS


_PUBLISHED_EVENTS = frozenset(e for e in EventType if not e.startswith(("task_", "signal_")))


@dataclass(slots=True)
class StepRun:
    """One step of one process; mutable inside a transition, stored as JSON in the process record."""

    step_id: str
    state: StepState = StepState.PENDING
    attempts: int = 0
    output: Any = None
    last_error: dict[str, Any] | None = None
    started_at: float = 0.0
    ended_at: float = 0.0
    timer_at: float = 0.0
    branch: int = -1  # choice: index of the branch taken
    branches_left: int = 0  # parallel: branches not finished yet
    worker_instance_id: str = ""  # of the worker that reported `started` on the current attempt
    heartbeat_details: Any = None
    compensation_attempts: int = 0
    # Kept in the stored JSON only when set (records stay readable by the version before call and map):
    child_id: str = ""  # call: the process it started
    items: int = 0  # map: how many items its list has
    items_started: int = 0  # map: items 0 .. items_started - 1 have started
    items_completed: int = 0  # map: items that completed
    items_failed: int = 0  # map: items that failed
    attempt_base: int = 0  # attempts made before an operator's retry: the retry policy counts from here
    input_override: Any = None  # the input an operator's RetryStep gave, used instead of the mapping


@dataclass(slots=True)
class ProcessRecord:
    """A process as stored: everything a transition needs, in one document."""

    id: str
    definition: str
    version: int
    business_key: str
    state: ProcessState
    input: Any
    created_at: float
    updated_at: float
    output: Any = None
    error: dict[str, Any] | None = None
    cancel_reason: str = ""
    ended_at: float = 0.0
    last_event_sequence: int = 0
    steps: dict[str, StepRun] = field(default_factory=dict)
    completed_order: list[str] = field(default_factory=list)  # task steps with a compensate, by completion
    compensation_queue: list[str] = field(default_factory=list)
    end_after_compensation: str = ""  # the final state once compensation finishes
    signals: dict[str, list[Any]] = field(default_factory=dict)  # buffered, by name, in arrival order
    signal_ids: list[str] = field(default_factory=list)
    # W3C traceparent of the call that started the process ("" untraced): the parent of every span
    # of the process, kept with it so a process that lives for weeks stays one trace.
    trace_parent: str = ""
    parent_id: str = ""  # the process whose call step started this one ("" for none; stored when set)
    parent_step: str = ""  # that call step
    depth: int = 0  # how many calls down from a process started by StartProcess (stored when set)
    search: dict[str, str] = field(default_factory=dict)  # search attribute values, as indexed
    # Messages published so far on each of the process's own Bus subjects, by event name: the engine
    # numbers them itself (subject sequences), so the Bus keeps no row per process subject. None for a
    # process stored before it did: the Bus goes on numbering its subjects.
    published: dict[str, int] | None = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-compatible dict."""
        # By hand, not dataclasses.asdict: this runs on every transition and asdict's deep copy of every
        # step was ~9% of the control plane's CPU per workflow step.
        raw = {name: getattr(self, name) for name in _RECORD_FIELDS}
        if self.parent_id:
            raw["parent_id"], raw["parent_step"], raw["depth"] = self.parent_id, self.parent_step, self.depth
        raw["steps"] = {sid: _step_json(run) for sid, run in self.steps.items()}
        return raw

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ProcessRecord:
        """Rebuild a record stored by `to_json`."""
        # Built from the stored dicts as they are, states swapped for their members after: this runs on
        # every transition, and merging a dict per step and calling the Enum per state cost about half.
        steps = raw.pop("steps")
        for key, stored in steps.items():
            run = steps[key] = StepRun(**stored)
            run.state = _STEP_STATES[stored["state"]]
        published = raw.pop("published", None)  # absent: stored before the engine numbered its subjects
        record = cls(**raw, steps=steps, published=published)
        record.state = _PROCESS_STATES[raw["state"]]
        return record


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One entry of a process's history."""

    process_id: str
    sequence: int
    time: float
    type: EventType
    step_id: str
    attempt: int
    state: ProcessState
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TaskAttempt:
    """One attempt of a task (or compensate task), as handed to a worker."""

    token: str
    process_id: str
    definition: str
    definition_version: int
    step_id: str
    service: str
    task_type: str
    version: str
    attempt: int
    input: Any
    business_key: str
    compensation: bool
    timeout_s: float | None
    heartbeat_timeout_s: float | None
    heartbeat_details: Any = None
    trace_parent: str = ""  # the process's (see ProcessRecord.trace_parent)

    def to_json(self) -> dict[str, Any]:
        """The attempt as a JSON-compatible dict."""
        return {name: getattr(self, name) for name in _TASK_FIELDS}


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asked for a change to a process (a signal, a cancel), as recorded in its history event."""

    name: str  # the token's name; "" when the control plane has no tokens
    role: str  # the token's role; "" when the control plane has no tokens
    via: str  # where the request came from, e.g. "console"

    def to_json(self) -> dict[str, str]:
        """The actor as stored in the event's details."""
        return {"name": self.name, "role": self.role, "via": self.via}


@dataclass(frozen=True, slots=True)
class ProcessSearch:
    """ListProcesses filters beyond definition, state and business key."""

    definition: str = ""  # the definition declaring `attributes` (required with them)
    ended: tuple[float | None, float | None] = (None, None)  # ended at or after, before
    current_step: str = ""  # a step active now (running, waiting, retrying, in INCIDENT, ...)
    has_incident: bool | None = None  # with (True) or without (False) an open incident
    attributes: dict[str, str] = field(default_factory=dict)  # declared search attributes, exact values


@dataclass(frozen=True, slots=True)
class Incident:
    """A step that failed for good under `on_failure: incident`, until an operator resolves it."""

    process_id: str
    definition: str
    step_id: str
    sequence: int  # of the STEP_INCIDENT history event: unique within the process
    error: dict[str, Any]
    opened_at: float
    resolved_at: float = 0.0  # 0 while open
    resolution: str = ""  # "retried", "skipped", "failed", "cancelled"


@dataclass(frozen=True, slots=True)
class DefinitionVersion:
    """A stored definition version."""

    name: str
    version: int
    digest: str
    source: str
    created_at: float


_STEP_STATES: dict[str, StepState] = {state.value: state for state in StepState}
_PROCESS_STATES: dict[str, ProcessState] = {state.value: state for state in ProcessState}
_OPTIONAL_RECORD_FIELDS = ("parent_id", "parent_step", "depth")
_RECORD_FIELDS = tuple(
    f.name for f in fields(ProcessRecord) if f.name != "steps" and f.name not in _OPTIONAL_RECORD_FIELDS
)
_OPTIONAL_STEP_FIELDS = ("child_id", "items", "items_started", "items_completed", "items_failed")
_STEP_FIELDS = tuple(f.name for f in fields(StepRun) if f.name not in _OPTIONAL_STEP_FIELDS)


def _step_json(run: StepRun) -> dict[str, Any]:
    raw = {name: getattr(run, name) for name in _STEP_FIELDS}
    if run.child_id or run.items:
        raw.update((name, getattr(run, name)) for name in _OPTIONAL_STEP_FIELDS)
    return raw


_TASK_FIELDS = tuple(f.name for f in fields(TaskAttempt))
