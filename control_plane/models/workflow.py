"""Workflow values: processes, their steps, history events and task attempts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _collections_abc import dict_items, dict_keys, dict_values


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


def is_item_key(key: str) -> bool:
    """Whether a key of a record's steps is a map item's step run (`<step id>#<item>`)."""
    return "#" in key


class StepRuns(dict[str, StepRun]):
    """A record's step runs, where those of running map items may be stored apart and read on demand.

    A map of 10,000 items keeps up to max_concurrency items running, each with step runs of its own:
    read and rewritten with the process on every transition, they made each item's completion cost
    in proportion to the items running. The store keeps them in rows of their own instead and gives
    a loaded record a `fetch` (one item key's run) and a `fetch_all` (every one): a lookup by key
    reads the one row it needs, while iterating (to cancel every active step, say) first reads them
    all, so code that walks the steps sees every one as before. Item keys removed in a transition are
    noted for the store to delete. `plain()` walks the runs of steps that are not items, reading
    nothing. Without fetchers (a new process, or once the transaction ended) it is a plain dict.
    """

    __slots__ = ("_absent", "_fetch", "_fetch_all", "active_items", "removed")

    def __init__(self, runs: dict[str, StepRun] | None = None) -> None:
        super().__init__(runs or {})
        self._fetch: Callable[[str], StepRun | None] | None = None
        self._fetch_all: Callable[[], dict[str, StepRun]] | None = None
        self._absent: set[str] = set()  # item keys fetched and not found
        self.removed: set[str] = set()  # item keys taken out (their stored rows go)
        # The item keys the store last listed as active (for the search by current step).
        self.active_items: list[str] = []

    def attach(
        self, fetch: Callable[[str], StepRun | None], fetch_all: Callable[[], dict[str, StepRun]]
    ) -> None:
        """Read item runs stored apart through these (inside the transaction that loaded the record)."""
        self._fetch, self._fetch_all = fetch, fetch_all

    def detach(self) -> None:
        """The transaction ended: what was read is all there is (nothing is read outside it)."""
        self._fetch = self._fetch_all = None

    def __missing__(self, key: str) -> StepRun:
        run = self._fetched(key)
        if run is None:
            raise KeyError(key)
        return run

    def _fetched(self, key: str) -> StepRun | None:
        if self._fetch is None or not is_item_key(key) or key in self._absent or key in self.removed:
            return None
        run = self._fetch(key)
        if run is None:
            self._absent.add(key)
            return None
        dict.__setitem__(self, key, run)
        return run

    def get(self, key: str, default: Any = None) -> Any:
        """The run of `key`, read from the store if it is an item's not read yet; else `default`."""
        run = dict.get(self, key)
        if run is None:
            run = self._fetched(key)
        return default if run is None else run

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or (isinstance(key, str) and self._fetched(key) is not None)

    def pop(self, key: str, *default: Any) -> Any:
        """Take a run out; an item's is noted for the store to delete (read or not: with a default, an
        item's run not read yet is not read just to be dropped)."""
        if not default and not dict.__contains__(self, key):
            self._fetched(key)
        if is_item_key(key):
            self.removed.add(key)
        return dict.pop(self, key, *default)

    def __delitem__(self, key: str) -> None:
        if not dict.__contains__(self, key):
            self._fetched(key)
        if is_item_key(key):
            self.removed.add(key)
        dict.__delitem__(self, key)

    def fill(self) -> None:
        """Read every item run stored apart that is not read yet (before walking them all)."""
        if self._fetch_all is None:
            return
        fetch_all, self._fetch_all, self._fetch = self._fetch_all, None, None
        for key, run in fetch_all().items():
            if key not in self.removed and not dict.__contains__(self, key):
                dict.__setitem__(self, key, run)

    def plain(self) -> Iterator[tuple[str, StepRun]]:
        """(key, run) of the steps that are not map items, reading nothing from the store."""
        return ((key, run) for key, run in dict.items(self) if "#" not in key)

    def loaded_items(self) -> Iterator[tuple[str, StepRun]]:
        """(key, run) of the map items' step runs read (or created) so far."""
        return ((key, run) for key, run in dict.items(self) if "#" in key)

    def __iter__(self) -> Iterator[str]:
        self.fill()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self.fill()
        return dict.__len__(self)

    def keys(self) -> dict_keys[str, StepRun]:
        self.fill()
        return dict.keys(self)

    def values(self) -> dict_values[str, StepRun]:
        self.fill()
        return dict.values(self)

    def items(self) -> dict_items[str, StepRun]:
        self.fill()
        return dict.items(self)


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
    steps: dict[str, StepRun] = field(default_factory=StepRuns)
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
    # The input is stored apart from the record (a large one: see storage.sql_workflow; stored when set).
    input_apart: bool = False

    def to_json(self, *, item_runs: bool = True) -> dict[str, Any]:
        """The record as a JSON-compatible dict (without map items' step runs unless `item_runs`)."""
        # By hand, not dataclasses.asdict: this runs on every transition and asdict's deep copy of every
        # step was ~9% of the control plane's CPU per workflow step.
        raw = {name: getattr(self, name) for name in _RECORD_FIELDS}
        if self.parent_id:
            raw["parent_id"], raw["parent_step"], raw["depth"] = self.parent_id, self.parent_step, self.depth
        if self.input_apart:
            raw["input_apart"] = True
        runs = self.steps.items() if item_runs else dict.items(self.steps)
        raw["steps"] = {sid: _step_json(run) for sid, run in runs if item_runs or "#" not in sid}
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
        record = cls(**raw, steps=StepRuns(steps), published=published)
        record.state = _PROCESS_STATES[raw["state"]]
        return record


def step_run(raw: dict[str, Any]) -> StepRun:
    """A step run stored by `step_json`."""
    run = StepRun(**raw)
    run.state = _STEP_STATES[raw["state"]]
    return run


def step_json(run: StepRun) -> dict[str, Any]:
    """A step run as a JSON-compatible dict."""
    return _step_json(run)


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
_OPTIONAL_RECORD_FIELDS = ("parent_id", "parent_step", "depth", "input_apart")
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
