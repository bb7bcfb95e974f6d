"""What the workflow engine counts for metrics: plain ints, moved by each committed transition.

A transition's history events say everything worth counting (a process started or ended, a task
retried or timed out, a compensation, a signal), so the engine hands them over once per commit and
this counts them by definition: a dict increment per event. The edge reads the counts at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from control_plane.core.workflow.definition import Definition
from control_plane.models import EventType, HistoryEvent, ProcessRecord, ProcessState

# Told of each step that ended (completed or failed): definition, step kind, seconds since it was entered.
StepObserver = Callable[[str, str, float], None]

# What a timeout's error code says timed out (the `kind` of a counted timeout).
_TIMEOUT_KINDS = {
    "TIMEOUT": "task",
    "HEARTBEAT_TIMEOUT": "heartbeat",
    "SIGNAL_TIMEOUT": "wait",
    "PROCESS_TIMEOUT": "process",
}
# Events that need more than a count: looked at one by one.
_NOTABLE = frozenset(
    {
        EventType.TASK_SCHEDULED,
        EventType.TASK_TIMED_OUT,
        EventType.STEP_COMPLETED,
        EventType.STEP_FAILED,
        EventType.PROCESS_FAILED,
    }
)


class WorkflowStats:
    """Counts by definition: processes by state (a gauge), transitions, history events, retries, timeouts.

    `processes` is exact: loaded from the store at start and moved by every transition committed here.
    Where replicas share the store (`follow_transitions` False) it is read from the store instead,
    when metrics are collected: transitions committed elsewhere do not pass through here.
    """

    def __init__(self, *, follow_transitions: bool = True) -> None:
        self.processes: dict[tuple[str, ProcessState], int] = {}
        self.transitions: dict[str, int] = {}
        self.events: dict[tuple[str, EventType], int] = {}
        self.retries: dict[str, int] = {}
        self.timeouts: dict[tuple[str, str], int] = {}
        # Set by the edge for metrics; None costs nothing.
        self.step_observer: StepObserver | None = None
        self._follow = follow_transitions

    def load(self, counts: dict[tuple[str, ProcessState], int]) -> None:
        """Processes by (definition, state) as stored."""
        self.processes = dict(counts)

    def record(
        self,
        record: ProcessRecord,
        before: ProcessState | None,
        events: Sequence[HistoryEvent],
        definitions: Mapping[tuple[str, int], Definition],
    ) -> None:
        """A committed transition of `record`, which was in state `before` (None: it is new)."""
        name = record.definition
        self.transitions[name] = self.transitions.get(name, 0) + 1
        after = record.state
        if self._follow and before is not after:
            processes = self.processes
            if before is not None:
                processes[(name, before)] = processes.get((name, before), 0) - 1
            processes[(name, after)] = processes.get((name, after), 0) + 1
        counts = self.events
        for event in events:
            key = (name, event.type)
            counts[key] = counts.get(key, 0) + 1
            if event.type in _NOTABLE:
                self._notable(name, event, record, definitions)

    def forget(self, deleted: Sequence[tuple[str, ProcessState]]) -> None:
        """Processes deleted by retention, as (definition, state): they no longer count."""
        if not self._follow:
            return
        for key in deleted:
            self.processes[key] = self.processes.get(key, 0) - 1

    def _notable(
        self,
        name: str,
        event: HistoryEvent,
        record: ProcessRecord,
        definitions: Mapping[tuple[str, int], Definition],
    ) -> None:
        kind = event.type
        if kind is EventType.TASK_SCHEDULED:
            if event.attempt > 1:
                self.retries[name] = self.retries.get(name, 0) + 1
            return
        if kind is not EventType.STEP_COMPLETED:
            self._count_timeout(name, kind, _TIMEOUT_KINDS.get(_error_code(event.details)))
            if kind is not EventType.STEP_FAILED:
                return
        observer = self.step_observer
        run = record.steps.get(event.step_id)
        parsed = definitions.get((name, record.version))
        if observer is None or run is None or parsed is None:
            return
        step_id = event.step_id.partition("#")[0]  # a step run per item of a map is `<step id>#<item>`
        observer(name, parsed.step(step_id).kind.value, max(0.0, run.ended_at - run.started_at))

    def _count_timeout(self, name: str, kind: EventType, timeout: str | None) -> None:
        # Each timeout once, where it happened: a step or process failed by a task's timeout, or a
        # process failed by a step's, carries the same error code but is not another timeout.
        if (
            (kind is EventType.TASK_TIMED_OUT and timeout in ("task", "heartbeat"))
            or (kind is EventType.STEP_FAILED and timeout == "wait")
            or (kind is EventType.PROCESS_FAILED and timeout == "process")
        ):
            key = (name, timeout or "")
            self.timeouts[key] = self.timeouts.get(key, 0) + 1


def _error_code(details: dict[str, Any]) -> str:
    error = details.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else ""
