"""The spans of a process: one trace per process, whatever its length and however often the server restarts.

A process keeps the `traceparent` of the call that started it (ProcessRecord.trace_parent, stored with
the process). Every span of the process is emitted once, when what it stands for has ended, from the
history events of the committed transition that ended it, with a span id derived from what it is:

    process <definition>           id(process)              parent: the StartProcess call
      step <step>                  id(process, step)        from entering the step to its end
        task <step>                id(process, step, n)     attempt n (retries: n > 1); the Task a
                                                            worker receives carries this span's context,
                                                            so the worker's spans are its children
        backoff <step>             id(process, step, n, "backoff")  the retry timer after attempt n
        signal <name>              at its arrival
      compensate <step>            id(process, "compensate", step)
        compensation task <step>   id(process, step, n, "compensation")

Derived ids let a span be ended by whichever replica, after whichever restart, commits its end, and
let the Task name its span before the span exists. Start times come from the stored record (a step's
`started_at`) or, for an attempt, from its `task_scheduled` event when this replica saw it (else the
step's start). Nothing here runs when tracing is off: the observer is not installed.

The spans are made finished (tracing.FinishedSpans), not started and ended through a Tracer: this
runs at every transition of every traced process, in the event loop, so it builds each span once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode

from control_plane.core.workflow.definition import Definition
from control_plane.models import EventType, HistoryEvent, ProcessRecord, ProcessState, StepState, TaskAttempt
from control_plane.observability.tracing import (
    UNSET,
    FinishedSpans,
    derived_span_id,
    parse_traceparent,
)

_ENDS = {
    EventType.PROCESS_COMPLETED,
    EventType.PROCESS_FAILED,
    EventType.PROCESS_COMPENSATED,
    EventType.PROCESS_CANCELLED,
}
_COMPENSATION_STATES = {StepState.COMPENSATING, StepState.COMPENSATED, StepState.COMPENSATION_FAILED}
# Enum members read once: a member looked up on its class costs a Python call, at every event.
_STEP_FAILED = EventType.STEP_FAILED
_TASK_TIMED_OUT = EventType.TASK_TIMED_OUT
_CANCELLED = StepState.CANCELLED
_COMPLETED = ProcessState.COMPLETED
_PRODUCER = SpanKind.PRODUCER
_INTERNAL = SpanKind.INTERNAL


def process_span(process_id: str) -> int:
    """The span id of the process's own span."""
    return derived_span_id(process_id)


def step_span(process_id: str, step_id: str) -> int:
    """The span id of a step's span."""
    return derived_span_id(process_id, step_id)


def attempt_span(process_id: str, step_id: str, attempt: int, compensation: bool) -> int:
    """The span id of one attempt of a step's task (or of its compensate task)."""
    if compensation:
        return derived_span_id(process_id, step_id, attempt, "compensation")
    return derived_span_id(process_id, step_id, attempt)


def compensate_span(process_id: str, step_id: str) -> int:
    """The span id of a step's compensation."""
    return derived_span_id(process_id, "compensate", step_id)


def task_traceparent(task: TaskAttempt) -> str:
    """The `traceparent` a worker receives with `task`: its attempt's span; empty if the process has no trace."""
    root = parse_traceparent(task.trace_parent)
    if root is None:
        return ""
    span = attempt_span(task.process_id, task.step_id, task.attempt, task.compensation)
    # traceparent(child_context(root, span)), written directly: once per task handed to a worker.
    return f"00-{root.trace_id:032x}-{span:016x}-{int(root.trace_flags):02x}"


class WorkflowSpans:
    """Turns each committed transition's history events into the spans that ended with it."""

    def __init__(self, spans: FinishedSpans) -> None:
        self._spans = spans
        # When attempts began, as seen here, by process: (step, attempt, compensation) -> time; and
        # compensations, by process: step -> time. A process's entries go when it ends.
        self._begun: dict[str, dict[tuple[str, int, bool], float]] = {}
        self._compensating: dict[str, dict[str, float]] = {}

    def on_transition(
        self, record: ProcessRecord, events: Sequence[HistoryEvent], definition: Definition | None
    ) -> None:
        """Emit the spans that `events` (one committed transition of `record`) end."""
        root = parse_traceparent(record.trace_parent)
        if root is None or not root.trace_flags.sampled or not self._spans.sampled(root):
            return
        with self._spans.held():  # the spans this transition ends, queued for export together
            for event in events:
                self._event(record, root, event, definition)

    def _event(
        self, record: ProcessRecord, root: SpanContext, event: HistoryEvent, definition: Definition | None
    ) -> None:
        # One dict lookup per event: most events of a transition (step_started, process_running, ...)
        # end no span, and each `EventType.X` an if-chain compares with is an Enum class attribute
        # lookup (half a microsecond here).
        handler = _HANDLERS.get(event.type)
        if handler is not None:
            handler(self, record, root, event, definition)

    def _scheduled(
        self, record: ProcessRecord, root: SpanContext, event: HistoryEvent, definition: Definition | None
    ) -> None:
        key = (event.step_id, event.attempt, bool(event.details.get("compensation")))
        self._begun.setdefault(record.id, {})[key] = event.time

    def _compensation_started(
        self, record: ProcessRecord, root: SpanContext, event: HistoryEvent, definition: Definition | None
    ) -> None:
        self._compensating.setdefault(record.id, {})[event.step_id] = event.time

    def _task_failed(
        self, record: ProcessRecord, root: SpanContext, event: HistoryEvent, definition: Definition | None
    ) -> None:
        pid, step, details = record.id, event.step_id, event.details
        compensation = self._is_compensation(record, step, event.attempt)
        self._attempt(record, root, event, compensation, details.get("error") or {})
        retry_at = details.get("retry_at")
        if details.get("will_retry") and isinstance(retry_at, int | float):
            self._emit(
                f"backoff {step}",
                root,
                derived_span_id(pid, step, event.attempt, "backoff"),
                attempt_span(pid, step, event.attempt, compensation),
                event.time,
                max(event.time, float(retry_at)),
                {**self._ids(record, step), "mgmt.attempt": event.attempt, "mgmt.timer": "retry"},
            )

    def _compensation_completed(
        self, record: ProcessRecord, root: SpanContext, event: HistoryEvent, definition: Definition | None
    ) -> None:
        self._attempt(record, root, event, True, None)
        self._compensation(record, root, event, None)

    def _compensation_failed(
        self, record: ProcessRecord, root: SpanContext, event: HistoryEvent, definition: Definition | None
    ) -> None:
        self._compensation(record, root, event, event.details.get("error") or {})

    def _step_ended(
        self, record: ProcessRecord, root: SpanContext, event: HistoryEvent, definition: Definition | None
    ) -> None:
        pid, step = record.id, event.step_id
        failed = event.type is _STEP_FAILED
        step_kind = definition.step(step).kind.value if definition is not None else ""
        if not failed and step_kind == "task":
            self._attempt(record, root, event, False, None)
        run = record.steps.get(step)
        begun = run.started_at if run is not None and run.started_at else event.time
        self._emit(
            f"step {step}",
            root,
            step_span(pid, step),
            process_span(pid),
            begun,
            event.time,
            {**self._ids(record, step), "mgmt.step_kind": step_kind, "mgmt.attempts": event.attempt},
            error=(event.details.get("error") or {}) if failed else None,
        )

    def _signal(
        self, record: ProcessRecord, root: SpanContext, event: HistoryEvent, definition: Definition | None
    ) -> None:
        pid, step, details = record.id, event.step_id, event.details
        name = str(details.get("name") or details.get("subject") or "")
        self._emit(
            f"signal {name}",
            root,
            derived_span_id(pid, "signal", event.sequence),
            step_span(pid, step) if step else process_span(pid),
            event.time,
            event.time,
            {**self._ids(record, step), "mgmt.signal": name, "mgmt.buffered": bool(details.get("buffered"))},
        )

    def _process_ended(
        self, record: ProcessRecord, root: SpanContext, event: HistoryEvent, definition: Definition | None
    ) -> None:
        pid = record.id
        self._cancelled_steps(record, root, event)
        self._emit(
            f"process {record.definition}",
            root,
            process_span(pid),
            root.span_id,
            record.created_at,
            event.time,
            {
                "mgmt.process_id": pid,
                "mgmt.definition": record.definition,
                "mgmt.definition_version": record.version,
                "mgmt.business_key": record.business_key,
                "mgmt.state": record.state.value,
            },
            error=None if record.state is _COMPLETED else (record.error or {}),
        )
        self._forget(pid)

    def _cancelled_steps(self, record: ProcessRecord, root: SpanContext, event: HistoryEvent) -> None:
        """The steps the process's end stopped (cancelled, or a parallel sibling failed): their spans, and
        their attempts' (the task was withdrawn), end with it."""
        pid = record.id
        for run in record.steps.values():
            if run.state is not _CANCELLED or not run.started_at:
                continue
            ids = {**self._ids(record, run.step_id), "mgmt.cancelled": True}
            begun = self._begun.get(pid, {})
            if run.attempts and (run.step_id, run.attempts, False) in begun:
                self._emit(
                    f"task {run.step_id}",
                    root,
                    attempt_span(pid, run.step_id, run.attempts, False),
                    step_span(pid, run.step_id),
                    begun[(run.step_id, run.attempts, False)],
                    run.ended_at or event.time,
                    {**ids, "mgmt.attempt": run.attempts, "mgmt.retry": run.attempts > 1},
                    kind=_PRODUCER,
                )
            self._emit(
                f"step {run.step_id}",
                root,
                step_span(pid, run.step_id),
                process_span(pid),
                run.started_at,
                run.ended_at or event.time,
                {**ids, "mgmt.attempts": run.attempts},
            )

    def _is_compensation(self, record: ProcessRecord, step: str, attempt: int) -> bool:
        begun = self._begun.get(record.id, {})
        if (step, attempt, True) in begun:
            return True
        if (step, attempt, False) in begun:
            return False
        run = record.steps.get(step)
        return run is not None and run.state in _COMPENSATION_STATES

    def _attempt(
        self,
        record: ProcessRecord,
        root: SpanContext,
        event: HistoryEvent,
        compensation: bool,
        error: dict[str, Any] | None,
    ) -> None:
        pid, step, attempt = record.id, event.step_id, event.attempt
        begun = self._begun.get(pid, {}).pop((step, attempt, compensation), None)
        if begun is None:
            run = record.steps.get(step)
            fallback = self._compensating.get(pid, {}).get(step) if compensation else None
            begun = fallback or (run.started_at if run is not None and run.started_at else event.time)
        name = f"compensation task {step}" if compensation else f"task {step}"
        parent = compensate_span(pid, step) if compensation else step_span(pid, step)
        attributes: dict[str, Any] = {
            **self._ids(record, step),
            "mgmt.attempt": attempt,
            "mgmt.retry": attempt > 1,
            "mgmt.compensation": compensation,
        }
        if event.type is _TASK_TIMED_OUT:
            attributes["mgmt.timed_out"] = True
        self._emit(
            name,
            root,
            attempt_span(pid, step, attempt, compensation),
            parent,
            begun,
            event.time,
            attributes,
            error=error,
            kind=_PRODUCER,
        )

    def _compensation(
        self, record: ProcessRecord, root: SpanContext, event: HistoryEvent, error: dict[str, Any] | None
    ) -> None:
        pid, step = record.id, event.step_id
        begun = self._compensating.get(pid, {}).pop(step, event.time)
        self._emit(
            f"compensate {step}",
            root,
            compensate_span(pid, step),
            process_span(pid),
            begun,
            event.time,
            self._ids(record, step),
            error=error,
        )

    @staticmethod
    def _ids(record: ProcessRecord, step: str) -> dict[str, Any]:
        return {"mgmt.process_id": record.id, "mgmt.definition": record.definition, "mgmt.step_id": step}

    def _emit(
        self,
        name: str,
        root: SpanContext,
        span: int,
        parent: int,
        start: float,
        end: float,
        attributes: dict[str, Any],
        *,
        error: dict[str, Any] | None = None,
        kind: SpanKind = _INTERNAL,
    ) -> None:
        status = UNSET
        if error is not None:
            code = error.get("code") if isinstance(error, dict) else None
            message = error.get("message") if isinstance(error, dict) else None
            if code:
                attributes["mgmt.error_code"] = str(code)
            status = Status(StatusCode.ERROR, str(message or code or "failed"))
        start_ns = int(start * 1e9)
        self._spans.record_in_trace(
            name,
            root,
            span,
            parent,
            start_ns,
            max(start_ns, int(end * 1e9)),
            attributes,
            kind=kind,
            status=status,
        )

    def _forget(self, process_id: str) -> None:
        self._begun.pop(process_id, None)
        self._compensating.pop(process_id, None)


_Handler = Callable[[WorkflowSpans, ProcessRecord, SpanContext, HistoryEvent, Definition | None], None]
# What each kind of history event does to the spans (the kinds not here end none).
_HANDLERS: dict[EventType, _Handler] = {
    EventType.TASK_SCHEDULED: WorkflowSpans._scheduled,
    EventType.COMPENSATION_STARTED: WorkflowSpans._compensation_started,
    EventType.TASK_FAILED: WorkflowSpans._task_failed,
    EventType.TASK_TIMED_OUT: WorkflowSpans._task_failed,
    EventType.COMPENSATION_COMPLETED: WorkflowSpans._compensation_completed,
    EventType.COMPENSATION_FAILED: WorkflowSpans._compensation_failed,
    EventType.STEP_COMPLETED: WorkflowSpans._step_ended,
    EventType.STEP_FAILED: WorkflowSpans._step_ended,
    EventType.SIGNAL_RECEIVED: WorkflowSpans._signal,
    **dict.fromkeys(_ENDS, WorkflowSpans._process_ended),
}
