"""What each console page shows, read straight from the cores (no gRPC round trip, no SQL here)."""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from control_plane.console.flow import Lane, layout, state_class
from control_plane.console.render import pretty_json
from control_plane.core import paging
from control_plane.core.bus.bus import DLQ_PREFIX, Bus, ConsumerView
from control_plane.core.registry import Registry
from control_plane.core.workflow.definition import Definition, StepKind
from control_plane.core.workflow.workflows import Workflows
from control_plane.errors import InvalidArgument
from control_plane.models import (
    ACTIVE_STEP_STATES,
    ChangeType,
    DefinitionVersion,
    HistoryEvent,
    Instance,
    ProcessRecord,
    ProcessState,
    RegistryChange,
    RetentionPolicy,
    StoredMessage,
    SubjectStats,
)

PAGE_SIZE = 50
# The newest events a process page shows; older ones are left to `mgmt workflow history`.
HISTORY_SHOWN = 1000


@dataclass(frozen=True, slots=True)
class Cores:
    """The in-process cores the console reads."""

    workflows: Workflows
    registry: Registry
    bus: Bus


# -- processes ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcessFilter:
    """The filters of the processes page, as typed in its form (and carried in its URL)."""

    definition: str = ""
    version: int = 0
    state: ProcessState | None = None
    key_prefix: str = ""
    started_from: str = ""  # as typed: YYYY-MM-DDTHH:MM, in UTC
    started_to: str = ""
    before: tuple[float, str] | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> ProcessFilter:
        """Read the filters from a query string; InvalidArgument names a bad one."""
        version_text = query.get("version", "").strip()
        if version_text and not version_text.isdigit():
            raise InvalidArgument.field("version", "must be a whole number")
        state_text = query.get("state", "")
        if state_text and state_text not in ProcessState.__members__.values():
            raise InvalidArgument.field("state", f"unknown state {state_text!r}")
        return cls(
            definition=query.get("definition", "").strip()[:128],
            version=int(version_text) if version_text else 0,
            state=ProcessState(state_text) if state_text else None,
            key_prefix=query.get("key", "")[:256],
            started_from=_check_time("from", query.get("from", "")),
            started_to=_check_time("to", query.get("to", "")),
            before=_position(query.get("before", "")),
        )

    @property
    def started(self) -> tuple[float | None, float | None]:
        """The creation-time bounds, as epoch seconds."""
        return (_epoch(self.started_from), _epoch(self.started_to))

    def query(self, *, before: tuple[float, str] | None = None) -> dict[str, str]:
        """The filters as query parameters (a page further on with `before`)."""
        params = {
            "definition": self.definition,
            "version": str(self.version) if self.version else "",
            "state": self.state.value if self.state else "",
            "key": self.key_prefix,
            "from": self.started_from,
            "to": self.started_to,
            "before": _token(before) if before else "",
        }
        return {k: v for k, v in params.items() if v}


@dataclass(frozen=True, slots=True)
class ProcessRow:
    """One line of the processes page."""

    record: ProcessRecord
    current: tuple[str, ...]  # the steps under way

    @property
    def ended(self) -> bool:
        """Whether the process has ended."""
        return self.record.state.final


@dataclass(frozen=True, slots=True)
class ProcessPage:
    """One page of processes, and the filters of the next one (None on the last page)."""

    rows: list[ProcessRow]
    next_query: dict[str, str] | None


async def list_processes(cores: Cores, filters: ProcessFilter, size: int = PAGE_SIZE) -> ProcessPage:
    """A page of processes matching `filters`, newest first."""
    records = await cores.workflows.list_processes(
        definition=filters.definition,
        version=filters.version,
        states=[filters.state] if filters.state else [],
        business_key="",
        business_key_prefix=filters.key_prefix,
        started=filters.started,
        before=filters.before,
        limit=size + 1,
    )
    next_query = None
    if len(records) > size:
        records = records[:size]
        next_query = filters.query(before=(records[-1].created_at, records[-1].id))
    return ProcessPage([_row(r) for r in records], next_query)


def _row(record: ProcessRecord) -> ProcessRow:
    current = tuple(sid for sid, run in record.steps.items() if run.state in ACTIVE_STEP_STATES)
    return ProcessRow(record, current)


def _check_time(name: str, text: str) -> str:
    """A time typed in a filter (an ISO date, or date and time, in UTC), or InvalidArgument."""
    text = text.strip()
    if text and _epoch(text) is None:
        raise InvalidArgument.field(name, "expected a UTC time as YYYY-MM-DD or YYYY-MM-DDTHH:MM")
    return text[:32]


def _epoch(text: str) -> float | None:
    if not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def _token(position: tuple[float, str]) -> str:
    # The token ListProcesses hands out for the same position: one scheme for every page.
    return paging.encode("processes", *position)


def _position(token: str) -> tuple[float, str] | None:
    if not token:
        return None
    created, process_id = paging.decode(token, "processes", float, str, field="before")
    return float(created), process_id


# -- one process ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepRow:
    """One line of a process's step table."""

    step_id: str
    kind: str
    state: str
    drawn_as: str
    attempts: int
    worker: str
    error: Mapping[str, Any] | None
    output: str
    started_at: float
    ended_at: float


@dataclass(frozen=True, slots=True)
class EventRow:
    """One entry of the history timeline."""

    event: HistoryEvent
    since_start: float
    since_previous: float
    summary: str


@dataclass(frozen=True, slots=True)
class ProcessView:
    """Everything the process page shows."""

    record: ProcessRecord
    definition: Definition
    flow: Lane
    steps: list[StepRow]
    history: list[EventRow] = field(default_factory=list)
    history_from: int = 1  # the sequence of the first event shown
    waiting_for: tuple[str, ...] = ()  # signal names a step waits for now
    signal_names: tuple[str, ...] = ()  # every signal name of the definition


async def process_view(cores: Cores, process_id: str, *, with_history: bool) -> ProcessView:
    """A process as its page shows it; NotFound when there is none."""
    record = await cores.workflows.process(process_id)
    # latest_definition: on a replica, the definition may have been registered on another a moment ago.
    _, definition = await cores.workflows.latest_definition(record.definition, record.version)
    steps = [_step_row(definition, record, step.id) for step in definition.all_steps()]
    history: list[EventRow] = []
    first = max(0, record.last_event_sequence - HISTORY_SHOWN)
    if with_history:
        events = await cores.workflows.history(process_id, first, HISTORY_SHOWN)
        history = _timeline(record, events)
    waits = definition.all_steps()
    waiting = tuple(
        step.signal
        for step in waits
        if step.kind is StepKind.WAIT_SIGNAL
        and step.signal
        and (run := record.steps.get(step.id)) is not None
        and run.state in ACTIVE_STEP_STATES
    )
    names = tuple(dict.fromkeys(s.signal for s in waits if s.kind is StepKind.WAIT_SIGNAL and s.signal))
    return ProcessView(
        record=record,
        definition=definition,
        flow=layout(definition, record.steps),
        steps=steps,
        history=history,
        history_from=first + 1,
        waiting_for=waiting,
        signal_names=names,
    )


def _step_row(definition: Definition, record: ProcessRecord, step_id: str) -> StepRow:
    step = definition.step(step_id)
    run = record.steps.get(step_id)
    if run is None:
        return StepRow(step_id, step.kind.value, "pending", "not_reached", 0, "", None, "", 0.0, 0.0)
    return StepRow(
        step_id=step_id,
        kind=step.kind.value,
        state=run.state.value,
        drawn_as=state_class(run.state),
        attempts=run.attempts,
        worker=run.worker_instance_id,
        error=run.last_error,
        output=pretty_json(run.output) if run.output is not None else "",
        started_at=run.started_at,
        ended_at=run.ended_at,
    )


def _timeline(record: ProcessRecord, events: list[HistoryEvent]) -> list[EventRow]:
    rows: list[EventRow] = []
    previous = record.created_at
    for event in events:
        rows.append(EventRow(event, event.time - record.created_at, event.time - previous, summary(event)))
        previous = event.time
    return rows


def summary(event: HistoryEvent) -> str:
    """The few details of an event worth a glance (the rest is one click away)."""
    details = event.details
    notes: list[str] = []
    if details.get("task_type"):
        notes.append(f"{details.get('service', '?')}/{details['task_type']}")
    error = details.get("error")
    if isinstance(error, Mapping) and error.get("code"):
        notes.append(f"{error['code']}: {error.get('message', '')}".rstrip(": "))
    if "will_retry" in details:
        notes.append("will retry" if details["will_retry"] else "no retry")
    if details.get("name"):
        notes.append(f"signal {details['name']}")
    if details.get("reason"):
        notes.append(f"reason: {details['reason']}")
    by = details.get("by")
    if isinstance(by, Mapping):
        if by.get("role"):
            notes.append(f"by {by.get('name')} ({by.get('role')}) via {by.get('via', '?')}")
        else:
            notes.append(f"via {by.get('via', '?')} (no tokens configured)")
    return "; ".join(notes)


# -- overview --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Overview:
    """The first page: how the platform is doing, at a glance."""

    counts: dict[ProcessState, int] | None  # None: the viewer may not list processes
    troubled: list[ProcessRow]
    services: list[tuple[str, int, int]]  # (name, passing, critical)
    subjects: int
    messages: int
    published_last_minute: tuple[int, bool]  # (count, whether it is exact; else a lower bound)
    lagging: list[ConsumerView]


TROUBLED = (ProcessState.FAILED, ProcessState.COMPENSATED, ProcessState.COMPENSATING)


async def overview(cores: Cores, *, processes: bool, services: bool, bus: bool) -> Overview:
    """The overview, with only the parts the viewer may see."""
    counts: dict[ProcessState, int] | None = None
    troubled: list[ProcessRow] = []
    if processes:
        counts = await cores.workflows.processes_by_state()
        hour_ago = time.time() - 3600
        recent = await cores.workflows.list_processes(
            definition="", version=0, states=list(TROUBLED), business_key="", before=None, limit=10
        )
        troubled = [_row(r) for r in recent if r.updated_at >= hour_ago]
    summaries = cores.registry.list_services()[0] if services else []
    subjects: list[tuple[SubjectStats, RetentionPolicy]] = await cores.bus.subjects("") if bus else []
    consumers = await cores.bus.consumers(include_ephemeral=False) if bus else []
    lagging = sorted(consumers, key=lambda c: -(c.num_pending + c.num_ack_pending))[:5]
    return Overview(
        counts=counts,
        troubled=troubled,
        services=[(s.name, s.passing, s.instances - s.passing) for s in summaries],
        subjects=len(subjects),
        messages=sum(stats.messages for stats, _ in subjects),
        published_last_minute=cores.bus.log.published_since(time.time() - 60) if bus else (0, True),
        lagging=[c for c in lagging if c.num_pending or c.num_ack_pending],
    )


# -- registry --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstanceRow:
    """One registered instance and how long its lease has left."""

    instance: Instance
    lease_left: float | None


def registry_rows(cores: Cores) -> list[tuple[str, list[InstanceRow]]]:
    """Every service with its instances, in name order."""
    services: dict[str, list[InstanceRow]] = {}
    for instance in cores.registry.instances():
        row = InstanceRow(instance, cores.registry.lease_left(instance.lease_id))
        services.setdefault(instance.service, []).append(row)
    return sorted(services.items())


def departures(changes: list[RegistryChange]) -> list[RegistryChange]:
    """The DOWN changes among `changes`, newest first."""
    return [c for c in reversed(changes) if c.type is ChangeType.DOWN]


# -- bus -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BusView:
    """Subjects (dead-letter ones apart) and durable consumers."""

    subjects: list[tuple[SubjectStats, RetentionPolicy]]
    dead_letters: list[tuple[SubjectStats, RetentionPolicy]]
    consumers: list[ConsumerView]


async def bus_view(cores: Cores, *, subjects: bool, consumers: bool) -> BusView:
    """The Bus page, with the parts the viewer may see."""
    stored = await cores.bus.subjects("") if subjects else []
    return BusView(
        subjects=[s for s in stored if not s[0].subject.startswith(DLQ_PREFIX)],
        dead_letters=[s for s in stored if s[0].subject.startswith(DLQ_PREFIX)],
        consumers=await cores.bus.consumers(include_ephemeral=False) if consumers else [],
    )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter: where it came from, why it was given up on, and its data."""

    message: StoredMessage
    original_subject: str
    consumer: str
    attempts: str
    reason: str
    data: str  # the data as text (JSON indented), or a note when it is binary


DEAD_LETTERS_SHOWN = 50


async def dead_letters(cores: Cores, subject: str, after: int) -> tuple[list[DeadLetter], int | None]:
    """A page of a dead-letter subject's messages, and the sequence the next page starts after."""
    found = await cores.bus.dead_letters(subject, after, DEAD_LETTERS_SHOWN + 1)
    more = len(found) > DEAD_LETTERS_SHOWN
    found = found[:DEAD_LETTERS_SHOWN]
    letters = [
        DeadLetter(
            message=m,
            original_subject=m.headers.get("hms-dlq-subject", ""),
            consumer=m.headers.get("hms-dlq-consumer", ""),
            attempts=m.headers.get("hms-dlq-attempts", ""),
            reason=m.headers.get("hms-dlq-reason", ""),
            data=_readable(m.data),
        )
        for m in found
    ]
    return letters, (found[-1].sequence if more else None)


def _readable(data: bytes) -> str:
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return f"({len(data)} bytes of binary data)"
    try:
        return pretty_json(json.loads(text))
    except ValueError:
        return text if len(text) <= 2000 else text[:2000] + "… (cut)"


# -- definitions -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DefinitionRow:
    """One stored version of a definition, drawn, with how many of its processes run and have ended."""

    version: DefinitionVersion
    definition: Definition
    flow: Lane
    running: int
    ended: int


async def definitions(cores: Cores, *, counts: bool) -> list[tuple[str, list[DefinitionRow]]]:
    """Every definition with all its versions, newest first (with process counts when asked)."""
    by_version = await cores.workflows.count_by_version() if counts else {}
    grouped: dict[str, list[DefinitionRow]] = {}
    for version in cores.workflows.definitions(all_versions=True):
        _, parsed = cores.workflows.definition(version.name, version.version)
        states = by_version.get((version.name, version.version), {})
        running = sum(n for state, n in states.items() if not state.final)
        ended = sum(n for state, n in states.items() if state.final)
        row = DefinitionRow(version, parsed, layout(parsed), running, ended)
        grouped.setdefault(version.name, []).append(row)
    return sorted(grouped.items())
