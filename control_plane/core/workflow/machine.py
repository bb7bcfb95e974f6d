"""The transition rules: given a process, its definition and one event, decide what happens.

Pure and synchronous: a `Machine` runs inside one store transaction (on the store's writer), so the
transition, its history events, the task attempts and timers it creates and the Bus messages it
publishes commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from control_plane.core.workflow.definition import Branch, Definition, OnFailure, Step, StepKind, TaskSpec
from control_plane.core.workflow.expressions import ExpressionError, evaluate_mapping
from control_plane.core.workflow.history_json import history_json
from control_plane.core.workflow.maps import MapItemsError, item_key, items_of, split_key
from control_plane.core.workflow.relations import (
    ABORT,
    CANCEL,
    CHILD_ENDED,
    COMPENSATE,
    PARENT_SAYS,
    CallRefused,
    Detached,
    Relations,
)
from control_plane.errors import FailedPrecondition, ResourceExhausted
from control_plane.models import (
    ACTIVE_STEP_STATES,
    NO_HEADERS,
    Actor,
    EventType,
    HistoryEvent,
    Incident,
    OutgoingMessage,
    ProcessRecord,
    ProcessState,
    StepRun,
    StepState,
    TaskAttempt,
)

PROCESS_TIMEOUT = "process_timeout"
_DONE = frozenset(
    {StepState.COMPLETED, StepState.COMPENSATING, StepState.COMPENSATED, StepState.COMPENSATION_FAILED}
)
_CONTENT_TYPE = "application/json"
# Signal ids remembered per process for deduplication.
_SIGNAL_IDS = 1000
# What a process keeps of signals no step waits for yet (it is stored, and rewritten, with every
# transition): at most this many, under at most this many names, this many bytes of JSON together.
MAX_BUFFERED_SIGNALS = 100
MAX_BUFFERED_SIGNAL_NAMES = 16
MAX_BUFFERED_SIGNAL_BYTES = 1024 * 1024


def task_token(process_id: str, step_id: str, attempt: int, compensation: bool) -> str:
    """The opaque token of one task attempt."""
    return f"{process_id}/{step_id}/{attempt}/{'c' if compensation else 't'}"


def parse_token(token: str) -> tuple[str, str, int, bool] | None:
    """(process id, step id, attempt, compensation) of a token, or None when it is not one."""
    parts = token.split("/")
    if (
        len(parts) != 4
        or not parts[2].isdigit()
        or parts[3] not in ("c", "t")
        or not parts[0]
        or not parts[1]
    ):
        return None
    return parts[0], parts[1], int(parts[2]), parts[3] == "c"


def error(
    code: str, message: str, step_id: str = "", attempt: int = 0, details: Any = None, *, at: float
) -> dict[str, Any]:
    """An error as stored on steps, processes and history events."""
    return {
        "code": code,
        "message": message,
        "details": details,
        "step_id": step_id,
        "attempt": attempt,
        "time": at,
    }


@dataclass(slots=True)
class Layout:
    """Where each step sits: its parent step and the step after it in the same list."""

    parent: dict[str, str] = field(default_factory=dict)
    following: dict[str, str] = field(default_factory=dict)
    last_of_list: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, definition: Definition) -> Layout:
        """Walk the definition once."""
        layout = cls()
        layout._walk(definition.steps, "")
        return layout

    def _walk(self, steps: tuple[Step, ...], parent: str) -> None:
        for step, after in zip(steps, (*steps[1:], None), strict=True):
            self.parent[step.id] = parent
            if after is not None:
                self.following[step.id] = after.id
            for branch in step.branches:
                self._walk(branch.steps, step.id)
            if step.map is not None:
                self._walk(step.map.steps, step.id)


_LAYOUTS: dict[str, Layout] = {}


def layout_of(definition: Definition) -> Layout:
    """The (cached) layout of a definition version."""
    layout = _LAYOUTS.get(definition.digest)
    if layout is None:
        layout = _LAYOUTS[definition.digest] = Layout.of(definition)
    return layout


@dataclass(slots=True)
class Effects:
    """What one transition did, for the store and for what runs after the commit."""

    events: list[HistoryEvent] = field(default_factory=list)
    new_tasks: list[TaskAttempt] = field(default_factory=list)
    ended_tasks: list[str] = field(default_factory=list)
    cancelled: list[tuple[str, str]] = field(default_factory=list)  # (token, reason) to tell workers
    timers: dict[str, float] = field(default_factory=dict)
    cleared_timers: list[str] = field(default_factory=list)
    messages: list[OutgoingMessage] = field(default_factory=list)
    bus_waits: list[tuple[str, str]] = field(default_factory=list)  # (step id, pattern) to start waiting
    cleared_bus_waits: list[str] = field(default_factory=list)  # step ids no longer waiting
    # (process id, name, due) of timers on other processes: a parent or child told of something.
    foreign_timers: list[tuple[str, str, float]] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)  # opened by this transition
    resolved_incidents: list[tuple[str, str]] = field(default_factory=list)  # (step id, resolution)


class Machine:
    """Applies events to one process record, collecting the effects."""

    def __init__(
        self, record: ProcessRecord, definition: Definition, now: float, relations: Relations | None = None
    ) -> None:
        self.record = record
        self.definition = definition
        self.now = now
        self.effects = Effects()
        self.relations: Relations = relations or Detached()
        self._layout = layout_of(definition)
        # Set by changes that record no history event but must still be stored.
        self.changed = False
        # Map steps starting items now: an item ending at once does not start more from inside.
        self._filling: set[str] = set()

    # -- events ---------------------------------------------------------------------------------

    def start(self) -> None:
        """A new process: record it, arm its timeout, enter the first step."""
        r = self.record
        self._event(EventType.PROCESS_STARTED, input=r.input, business_key=r.business_key)
        if self.definition.timeout_s:
            self._set_timer(PROCESS_TIMEOUT, self.now + self.definition.timeout_s)
        r.state = ProcessState.RUNNING
        self._event(EventType.PROCESS_RUNNING)
        self._enter(self.definition.steps[0])

    def complete_task(self, step_id: str, attempt: int, compensation: bool, output: Any) -> None:
        """A worker completed an attempt that `check_current` accepted."""
        step = self._step(step_id)
        run = self.record.steps[step_id]
        self.effects.ended_tasks.append(task_token(self.record.id, step_id, attempt, compensation))
        if compensation:
            run.state = StepState.COMPENSATED
            self._event(EventType.COMPENSATION_COMPLETED, step_id, attempt, output=output)
            self._compensate_next()
        else:
            self._complete_step(step, output)

    def fail_task(
        self,
        step_id: str,
        attempt: int,
        compensation: bool,
        failure: dict[str, Any],
        *,
        retryable: bool,
        timed_out: bool = False,
    ) -> float | None:
        """An attempt failed (or timed out); returns when the next attempt is due, None if none is."""
        step = self._step(step_id)
        run = self.record.steps[step_id]
        spec = step.compensate if compensation else step.task
        assert spec is not None
        token = task_token(self.record.id, step_id, attempt, compensation)
        self.effects.ended_tasks.append(token)
        if timed_out:
            self.effects.cancelled.append((token, "timed_out"))
        policy = spec.retry
        # An operator's RetryStep grants a fresh set of attempts: the policy counts from attempt_base.
        counted = attempt if compensation else attempt - run.attempt_base
        will_retry = (
            retryable and counted < policy.max_attempts and failure["code"] not in policy.non_retryable
        )
        retry_at = self.now + policy.delay_after(counted) if will_retry else None
        run.last_error = failure
        self._event(
            EventType.TASK_TIMED_OUT if timed_out else EventType.TASK_FAILED,
            step_id,
            attempt,
            error=failure,
            will_retry=will_retry,
            retry_at=retry_at,
        )
        if retry_at is not None:
            if not compensation:
                run.state = StepState.RETRYING
            run.timer_at = retry_at
            self._set_timer(("cretry:" if compensation else "retry:") + step_id, retry_at)
            return retry_at
        if compensation:
            run.state = StepState.COMPENSATION_FAILED
            run.timer_at = 0.0
            self._event(EventType.COMPENSATION_FAILED, step_id, attempt, error=failure)
            self.record.compensation_queue.clear()
            self._end(ProcessState.FAILED, failure)
        else:
            self._fail_step(step, failure)
        return None

    def fire_timer(self, name: str) -> None:
        """A durable timer came due."""
        kind, _, step_id = name.partition(":")
        r = self.record
        if name == PROCESS_TIMEOUT:
            if not r.state.final:
                failure = error("PROCESS_TIMEOUT", "the process ran out of time", at=self.now)
                compensating = r.state is ProcessState.COMPENSATING
                self._cancel_active("not_needed")
                r.compensation_queue.clear()
                if r.completed_order and not compensating:
                    # As after a step failure: undo what completed, then end COMPENSATED.
                    self._start_compensation(ProcessState.COMPENSATED, error_=failure)
                else:
                    # Out of time while compensating already (or nothing to undo): the process ends here.
                    self._end(ProcessState.FAILED, failure)
            return
        if kind == PARENT_SAYS:
            self._parent_says(step_id)
            return
        run = r.steps.get(step_id)
        if run is None or r.state.final:
            return
        step = self._step(step_id)
        if kind == CHILD_ENDED:
            self._child_ended(step, run)
        elif kind == "retry" and run.state is StepState.RETRYING:
            self._schedule(step, run.attempts + 1)
        elif kind == "cretry" and run.state is StepState.COMPENSATING:
            self._schedule_compensation(step, run.compensation_attempts + 1)
        elif kind == "sleep" and run.state is StepState.WAITING:
            self._complete_step(step, None)
        elif kind == "wait" and run.state is StepState.WAITING:
            if step.subject:
                self.effects.cleared_bus_waits.append(step_id)
            waited = f"{step.signal!r} signal" if step.signal else f"message on {step.subject!r}"
            self._fail_step(step, error("SIGNAL_TIMEOUT", f"no {waited} in time", step_id, at=self.now))

    def signal(
        self, name: str, payload: Any, signal_id: str, *, actor: Actor | None = None
    ) -> tuple[bool, bool]:
        """Deliver a signal to the step waiting for it, or buffer it; returns (buffered, duplicate)."""
        by: dict[str, Any] = {"by": actor.to_json()} if actor is not None else {}
        r = self.record
        if signal_id and signal_id in r.signal_ids:
            return False, True  # a sender's retry, even after the process ended, is answered the same way
        if r.state.final:
            raise FailedPrecondition(f"process {r.id} already ended ({r.state.value})")
        if signal_id:
            r.signal_ids = [*r.signal_ids[-(_SIGNAL_IDS - 1) :], signal_id]
        for step in self.definition.all_steps():
            run = r.steps.get(step.id)
            if (
                step.kind is StepKind.WAIT_SIGNAL
                and step.signal == name
                and run
                and run.state is StepState.WAITING
            ):
                self._event(
                    EventType.SIGNAL_RECEIVED, step.id, name=name, payload=payload, buffered=False, **by
                )
                self._clear_timer("wait:" + step.id)
                self._complete_step(step, payload)
                return False, False
        self._check_room(name, payload)
        r.signals.setdefault(name, []).append(payload)
        self._event(EventType.SIGNAL_RECEIVED, name=name, payload=payload, buffered=True, **by)
        return True, False

    def _check_room(self, name: str, payload: Any) -> None:
        """Refuse a signal the process has no room to buffer (ResourceExhausted: nothing changes)."""
        r = self.record
        buffered = sum(len(payloads) for payloads in r.signals.values())
        if buffered >= MAX_BUFFERED_SIGNALS:
            why = f"{buffered} signals are buffered already (at most {MAX_BUFFERED_SIGNALS})"
        elif name not in r.signals and len(r.signals) >= MAX_BUFFERED_SIGNAL_NAMES:
            why = f"signals of {len(r.signals)} names are buffered already (at most {MAX_BUFFERED_SIGNAL_NAMES})"
        else:
            size = encoded_size(payload) + sum(encoded_size(p) for ps in r.signals.values() for p in ps)
            if size <= MAX_BUFFERED_SIGNAL_BYTES:
                return
            why = f"buffered payloads would take {size} bytes (at most {MAX_BUFFERED_SIGNAL_BYTES})"
        raise ResourceExhausted(
            f"process {r.id} cannot buffer signal {name!r}: {why}; no step waits for it yet, "
            "so retry once a wait_signal step has taken some"
        )

    def bus_message(self, step_id: str, subject: str, sequence: int, payload: Any) -> bool:
        """A Bus message on a waited-for pattern: resume the step if its correlation holds."""
        run = self.record.steps.get(step_id)
        step = self.definition.step(step_id)
        if run is None or run.state is not StepState.WAITING or self.record.state.final or not step.subject:
            return False
        if step.correlate is not None:
            try:
                if not step.correlate.holds({**self._activation(), "message": payload}):
                    return False
            except ExpressionError:
                return False  # a message without the fields the correlation reads is someone else's
        self.effects.cleared_bus_waits.append(step_id)
        self._clear_timer("wait:" + step_id)
        self._event(EventType.SIGNAL_RECEIVED, step_id, subject=subject, sequence=sequence, payload=payload)
        self._complete_step(step, payload)
        return True

    def cancel(self, reason: str, compensate: bool, *, actor: Actor | None = None) -> None:
        """Stop the process; with `compensate`, undo its completed steps first."""
        r = self.record
        if r.state is ProcessState.CANCELLED or (r.state is ProcessState.COMPENSATING and r.cancel_reason):
            return
        if r.state.final:
            raise FailedPrecondition(f"process {r.id} already ended ({r.state.value})")
        r.cancel_reason = reason
        by: dict[str, Any] = {"by": actor.to_json()} if actor is not None else {}
        self._event(EventType.PROCESS_CANCEL_REQUESTED, reason=reason, compensate=compensate, **by)
        self._cancel_active("process_cancelled", compensate_children=compensate)
        r.compensation_queue.clear()
        if compensate and r.completed_order:
            self._start_compensation(ProcessState.CANCELLED, cancel_reason=reason)
        else:
            self._end(ProcessState.CANCELLED, None)

    def start_task(
        self, step_id: str, attempt: int, compensation: bool, worker_instance_id: str, deadline: float | None
    ) -> None:
        """The worker holding a current attempt reported it started: record it once per attempt.

        The step (not a compensating one) becomes RUNNING, with the attempt's deadline as timer_at.
        """
        run = self.record.steps[step_id]
        # Scheduling an attempt clears the worker: set, it says this attempt's start is recorded. (No
        # field of its own: records stay readable by the previous version, running beside this one.)
        if run.worker_instance_id:
            return  # a repeat (the worker resent its report): recorded already
        run.worker_instance_id = worker_instance_id
        if not compensation:
            run.state = StepState.RUNNING
            run.timer_at = deadline or 0.0
        self._event(
            EventType.TASK_STARTED,
            step_id,
            attempt,
            worker_instance_id=worker_instance_id,
            deadline=deadline,
            compensation=compensation,
        )

    def record_heartbeat(self, step_id: str, details: Any) -> None:
        """Keep the latest heartbeat details for a later attempt (not a history event)."""
        self.record.steps[step_id].heartbeat_details = details
        self.changed = True

    def check_current(self, step_id: str, attempt: int, compensation: bool) -> str:
        """ "" when this is the attempt the process waits for, else why a report on it changes nothing:
        "stale" (a later attempt exists), "reported" (its outcome is recorded), "cancelled"."""
        r = self.record
        run = r.steps.get(step_id)
        if run is None:
            return "stale"
        current = run.compensation_attempts if compensation else run.attempts
        if attempt != current:
            return "stale"
        if compensation:
            if r.state is not ProcessState.COMPENSATING:
                return "cancelled" if r.state is ProcessState.CANCELLED else "reported"
            if run.state is not StepState.COMPENSATING:
                return "reported"
            return "reported" if run.timer_at > 0 else ""  # a retry is scheduled: this attempt failed
        if run.state in (StepState.SCHEDULED, StepState.RUNNING):
            return "cancelled" if r.state.final else ""
        if run.state in (StepState.CANCELLED, StepState.SKIPPED):
            return "cancelled"
        return "reported"  # completed, failed, or failed and retrying: this attempt's outcome is recorded

    # -- steps ----------------------------------------------------------------------------------

    def _activation(self, key: str = "") -> dict[str, Any]:
        # Compensations read the outputs of the steps they undo: "completed once" counts, not the state now.
        # Map items' runs are not walked (the store reads them on demand: see models.StepRuns).
        steps = {sid: {"output": run.output} for sid, run in _plain_runs(self.record) if run.state in _DONE}
        activation: dict[str, Any] = {"input": self.record.input, "steps": steps}
        step_id, item = split_key(key)
        if item is not None:
            # A step run per item sees the steps before it for the same item, and the item.
            map_step = self.definition.step(self._layout.parent[step_id])
            assert map_step.map is not None
            for inner in map_step.map.steps:
                run = self.record.steps.get(item_key(inner.id, item))
                if run is not None and run.state in _DONE:
                    steps[inner.id] = {"output": run.output}
            activation["item"] = self._items(map_step)[item]
            activation["index"] = item
        return activation

    def _step(self, key: str) -> Step:
        """The step of a key in the record's steps: for an item of a map step, a copy under that key."""
        step_id, item = split_key(key)
        step = self.definition.step(step_id)
        return step if item is None else replace(step, id=key)

    def _items(self, map_step: Step) -> Sequence[Any]:
        run = self.record.steps[map_step.id]
        return items_of(self.record.id, map_step, run.started_at, self._activation)

    def _enter(self, step: Step) -> None:
        run = self.record.steps[step.id] = StepRun(step.id, started_at=self.now)
        match step.kind:
            case StepKind.TASK:
                self._event(EventType.STEP_STARTED, step.id)
                self._schedule(step, 1)
            case StepKind.CHOICE:
                for index, branch in enumerate(step.branches):
                    try:
                        taken = branch.when is None or branch.when.holds(self._activation())
                    except ExpressionError as exc:
                        self._event(EventType.STEP_STARTED, step.id, branch=None)
                        self._fail_step(step, error("CONDITION", str(exc), step.id, at=self.now))
                        return
                    if taken:
                        run.branch = index
                        run.state = StepState.RUNNING
                        self._event(EventType.STEP_STARTED, step.id, branch=index)
                        self._skip_branches(step, index)
                        self._enter(branch.steps[0])
                        return
                self._event(EventType.STEP_STARTED, step.id, branch=None)
                self._skip_branches(step, None)
                self._complete_step(step, None)
            case StepKind.PARALLEL:
                run.state = StepState.RUNNING
                run.branches_left = len(step.branches)
                self._event(EventType.STEP_STARTED, step.id)
                for branch in step.branches:
                    if self.record.state.final or run.state is not StepState.RUNNING:
                        break  # an earlier branch already failed the process
                    self._enter(branch.steps[0])
            case StepKind.WAIT_SIGNAL:
                until = self.now + step.wait_timeout_s if step.wait_timeout_s else None
                buffered = self.record.signals.get(step.signal) if step.signal else None
                if buffered:
                    payload = buffered.pop(0)
                    if not buffered:
                        del self.record.signals[step.signal]
                    self._event(EventType.STEP_STARTED, step.id, until=until)
                    self._event(
                        EventType.SIGNAL_RECEIVED, step.id, name=step.signal, payload=payload, buffered=True
                    )
                    self._complete_step(step, payload)
                    return
                run.state = StepState.WAITING
                if step.subject:
                    self.effects.bus_waits.append((step.id, step.subject))
                if until is not None:
                    run.timer_at = until
                    self._set_timer("wait:" + step.id, until)
                self._event(EventType.STEP_STARTED, step.id, until=until)
            case StepKind.SLEEP:
                run.state = StepState.WAITING
                run.timer_at = self.now + step.sleep_s
                self._set_timer("sleep:" + step.id, run.timer_at)
                self._event(EventType.STEP_STARTED, step.id, until=run.timer_at)
            case StepKind.CALL:
                run.state = StepState.RUNNING
                self._start_call(step, run)
            case StepKind.MAP:
                run.state = StepState.RUNNING
                self._start_map(step, run)

    # -- call steps -----------------------------------------------------------------------------

    def _start_call(self, step: Step, run: StepRun) -> None:
        """Start the called process in this transaction; the step waits for it to end."""
        spec = step.call
        assert spec is not None
        try:
            child_input = {} if spec.input is None else evaluate_mapping(spec.input, self._activation())
            run.child_id = self.relations.start_child(self.record, step.id, spec, child_input)
        except ExpressionError as exc:
            self._event(EventType.STEP_STARTED, step.id)
            self._fail_step(step, error("INPUT_MAPPING", str(exc), step.id, at=self.now))
            return
        except CallRefused as exc:
            self._event(EventType.STEP_STARTED, step.id)
            self._fail_step(step, error(exc.code, exc.message, step.id, at=self.now))
            return
        self._event(
            EventType.STEP_STARTED, step.id, child_process_id=run.child_id, definition=spec.definition
        )

    def _child_ended(self, step: Step, run: StepRun) -> None:
        """A process a call step started has ended (or ended again, after compensating)."""
        child = self.relations.peek(run.child_id) if run.child_id else None
        if child is None or not child.state.final:
            return
        if run.state is StepState.RUNNING:
            if child.state is ProcessState.COMPLETED:
                self._complete_step(step, child.output)
                return
            failure = error(
                f"CALL_{child.state.name}",
                f"called process {child.id} ({child.definition}) ended {child.state.value}",
                step.id,
                details=_child_failure(child),
                at=self.now,
            )
            self._fail_step(step, failure)
        elif run.state is StepState.COMPENSATING and self.record.state is ProcessState.COMPENSATING:
            if child.state in (ProcessState.COMPENSATED, ProcessState.CANCELLED):
                run.state = StepState.COMPENSATED
                self._event(EventType.COMPENSATION_COMPLETED, step.id, child_process_id=child.id)
                self._compensate_next()
            elif child.state is ProcessState.FAILED:
                failure = error(
                    "CALL_COMPENSATION_FAILED",
                    f"called process {child.id} ({child.definition}) failed to compensate",
                    step.id,
                    details=_child_failure(child),
                    at=self.now,
                )
                run.state = StepState.COMPENSATION_FAILED
                self._event(EventType.COMPENSATION_FAILED, step.id, error=failure)
                self.record.compensation_queue.clear()
                self._end(ProcessState.FAILED, failure)

    def _parent_says(self, what: str) -> None:
        """The process whose call step started this one asks it to stop, or to undo what it did."""
        r = self.record
        if what in (CANCEL, ABORT):
            # Compensating already (a step of its own failed): it is undoing what it did anyway.
            if not r.state.final and r.state is not ProcessState.COMPENSATING:
                self.cancel("the calling process stopped", what == ABORT)
        elif what == COMPENSATE and r.state is ProcessState.COMPLETED:
            if r.completed_order:
                self._start_compensation(
                    ProcessState.COMPENSATED, cancel_reason="the calling process compensates"
                )
            else:
                self._end(ProcessState.COMPENSATED, None)
        elif what == COMPENSATE and r.state.final and r.parent_id:
            # Ended otherwise meanwhile: the parent reads how, rather than wait for an end to come.
            self.effects.foreign_timers.append((r.parent_id, f"{CHILD_ENDED}:{r.parent_step}", self.now))
            self.changed = True  # no event of its own: the timer must still be stored

    def _tell_child(self, run: StepRun, what: str) -> None:
        self.effects.foreign_timers.append((run.child_id, f"{PARENT_SAYS}:{what}", self.now))

    # -- map steps ------------------------------------------------------------------------------

    def _start_map(self, step: Step, run: StepRun) -> None:
        try:
            items = self._items(step)
        except MapItemsError as exc:
            self._event(EventType.STEP_STARTED, step.id)
            self._fail_step(step, error("MAP_ITEMS", str(exc), step.id, at=self.now))
            return
        run.items = len(items)
        self._event(EventType.STEP_STARTED, step.id, items=len(items))
        if not items:
            self._complete_step(step, [])
            return
        self._start_items(step, run)

    def _start_items(self, step: Step, run: StepRun) -> None:
        """Start items in order while fewer than max_concurrency run (bounded work per transition)."""
        spec = step.map
        assert spec is not None
        first = spec.steps[0]
        self._filling.add(step.id)
        try:
            while (
                run.state is StepState.RUNNING
                and not self.record.state.final
                and run.items_started < run.items
                and run.items_started - run.items_completed - run.items_failed < spec.max_concurrency
            ):
                run.items_started += 1
                self._enter(replace(first, id=item_key(first.id, run.items_started - 1)))
        finally:
            self._filling.discard(step.id)

    def _item_ended(self, step: Step, item: int, output: Any, failure: dict[str, Any] | None) -> None:
        """An item's last step completed, or one of its steps failed: keep its outcome apart, go on."""
        spec = step.map
        assert spec is not None
        run = self.record.steps[step.id]
        if run.state is not StepState.RUNNING:
            return
        for inner in spec.steps:
            self.record.steps.pop(item_key(inner.id, item), None)
        self.relations.put_map_item(
            self.record.id, step.id, item, failed=failure is not None, output=failure or output
        )
        if failure is not None:
            run.items_failed += 1
        else:
            run.items_completed += 1
        if not spec.tolerates(run.items_failed, run.items):
            message = f"{run.items_failed} of {run.items} items failed, more than tolerated"
            details = {"item": item, "error": failure}
            self._fail_step(step, error("MAP_ITEMS_FAILED", message, step.id, details=details, at=self.now))
        elif run.items_completed + run.items_failed == run.items:
            self._complete_step(step, self.relations.map_outputs(self.record.id, step.id))
        elif step.id not in self._filling:
            self._start_items(step, run)

    def _skip_branches(self, choice: Step, taken: int | None) -> None:
        """Mark every step of the branches a choice did not take SKIPPED, nested ones included."""
        for index, branch in enumerate(choice.branches):
            if index == taken:
                continue
            for step in _steps_of(branch):
                self.record.steps[step.id] = StepRun(step.id, state=StepState.SKIPPED, ended_at=self.now)
                self._event(EventType.STEP_SKIPPED, step.id)

    def _task_input(self, spec: TaskSpec, key: str) -> Any:
        if spec.input is None:
            return {}
        return evaluate_mapping(spec.input, self._activation(key))

    def _schedule(self, step: Step, attempt: int) -> None:
        spec = step.task
        assert spec is not None
        run = self.record.steps[step.id]
        try:
            task_input = None if run.input_override is not None else self._task_input(spec, step.id)
        except ExpressionError as exc:
            self._fail_step(step, error("INPUT_MAPPING", str(exc), step.id, attempt, at=self.now))
            return
        if run.input_override is not None:
            task_input = run.input_override  # given by an operator's RetryStep
        run.attempts = attempt
        run.state = StepState.SCHEDULED
        run.timer_at = 0.0
        run.worker_instance_id = ""
        self._add_task(step, spec, attempt, task_input, compensation=False)

    def _schedule_compensation(self, step: Step, attempt: int) -> None:
        spec = step.compensate
        assert spec is not None
        run = self.record.steps[step.id]
        run.compensation_attempts = attempt
        run.timer_at = 0.0
        run.worker_instance_id = ""
        try:
            task_input = self._task_input(spec, step.id)
        except ExpressionError as exc:
            failure = error("INPUT_MAPPING", str(exc), step.id, attempt, at=self.now)
            run.state = StepState.COMPENSATION_FAILED
            self._event(EventType.COMPENSATION_FAILED, step.id, attempt, error=failure)
            self.record.compensation_queue.clear()
            self._end(ProcessState.FAILED, failure)
            return
        self._add_task(step, spec, attempt, task_input, compensation=True)

    def _add_task(
        self, step: Step, spec: TaskSpec, attempt: int, task_input: Any, *, compensation: bool
    ) -> None:
        r = self.record
        task = TaskAttempt(
            token=task_token(r.id, step.id, attempt, compensation),
            process_id=r.id,
            definition=r.definition,
            definition_version=r.version,
            step_id=step.id,
            service=spec.service,
            task_type=spec.task_type,
            version=spec.version,
            attempt=attempt,
            input=task_input,
            business_key=r.business_key,
            compensation=compensation,
            timeout_s=spec.timeout_s,
            heartbeat_timeout_s=spec.heartbeat_timeout_s,
            heartbeat_details=r.steps[step.id].heartbeat_details,
            trace_parent=r.trace_parent,
        )
        self.effects.new_tasks.append(task)
        self._event(
            EventType.TASK_SCHEDULED,
            step.id,
            attempt,
            service=spec.service,
            task_type=spec.task_type,
            input=task_input,
            compensation=compensation,
            timeout=spec.timeout_s,
            heartbeat_timeout=spec.heartbeat_timeout_s,
        )

    def _complete_step(self, step: Step, output: Any) -> None:
        run = self.record.steps[step.id]
        run.state = StepState.COMPLETED
        run.output = output
        run.ended_at = self.now
        run.timer_at = 0.0
        self._event(EventType.STEP_COMPLETED, step.id, run.attempts, output=output)
        if step.compensate is not None or step.kind is StepKind.CALL:
            self.record.completed_order.append(step.id)
        self._advance(step, output)

    def _advance(self, step: Step, output: Any) -> None:
        step_id, item = split_key(step.id)
        following = self._layout.following.get(step_id)
        if following is not None:
            after = self.definition.step(following)
            self._enter(after if item is None else replace(after, id=item_key(following, item)))
            return
        parent_id = self._layout.parent[step_id]
        if not parent_id:
            self._finish(output)
            return
        parent = self.definition.step(parent_id)
        run = self.record.steps[parent_id]
        if item is not None:
            self._item_ended(parent, item, output, None)
        elif parent.kind is StepKind.CHOICE:
            self._complete_step(parent, output)
        else:
            run.branches_left -= 1
            if run.branches_left == 0:
                outputs = {
                    b.steps[-1].id: self.record.steps[b.steps[-1].id].output
                    for b in parent.branches
                    if b.steps[-1].id in self.record.steps
                }
                self._complete_step(parent, outputs)

    def _fail_step(self, step: Step, failure: dict[str, Any]) -> None:
        if step.kind is StepKind.TASK and self.definition.failure_policy(step) is OnFailure.INCIDENT:
            self._open_incident(step, failure)
            return
        self.fail_for_good(step, failure)

    def _open_incident(self, step: Step, failure: dict[str, Any]) -> None:
        """Keep the process RUNNING with the step in INCIDENT, for an operator to repair."""
        r = self.record
        run = r.steps[step.id]
        run.state = StepState.INCIDENT
        run.last_error = failure
        run.timer_at = 0.0
        self._event(EventType.STEP_INCIDENT, step.id, run.attempts, error=failure)
        self.effects.incidents.append(
            Incident(r.id, r.definition, step.id, r.last_event_sequence, failure, self.now)
        )

    def fail_for_good(self, step: Step, failure: dict[str, Any]) -> None:
        """The step failed and nothing retries it: fail its enclosing steps, then compensate or fail."""
        run = self.record.steps[step.id]
        run.state = StepState.FAILED
        run.last_error = failure
        run.ended_at = self.now
        run.timer_at = 0.0
        self._event(EventType.STEP_FAILED, step.id, run.attempts, error=failure)
        step_id, item = split_key(step.id)
        if item is not None:
            self._item_ended(self.definition.step(self._layout.parent[step_id]), item, None, failure)
            return
        # A failure inside a branch fails its enclosing steps too: they can never complete.
        parent_id = self._layout.parent[step.id]
        while parent_id:
            parent_run = self.record.steps[parent_id]
            if parent_run.state in ACTIVE_STEP_STATES:
                parent_run.state = StepState.FAILED
                parent_run.ended_at = self.now
                parent_run.timer_at = 0.0
                parent_run.last_error = failure
            parent_id = self._layout.parent[parent_id]
        self._cancel_active("not_needed")
        if self.record.completed_order:
            self._start_compensation(ProcessState.COMPENSATED, error_=failure)
        else:
            self._end(ProcessState.FAILED, failure)

    def _finish(self, last_output: Any) -> None:
        output = last_output
        if self.definition.output is not None:
            try:
                output = evaluate_mapping(self.definition.output, self._activation())
            except ExpressionError as exc:
                self._end(ProcessState.FAILED, error("OUTPUT_MAPPING", str(exc), at=self.now))
                return
        self.record.output = output
        self._end(ProcessState.COMPLETED, None)

    # -- compensation and ending ------------------------------------------------------------------

    def _start_compensation(
        self, end: ProcessState, *, error_: dict[str, Any] | None = None, cancel_reason: str = ""
    ) -> None:
        r = self.record
        r.state = ProcessState.COMPENSATING
        r.error = error_
        r.end_after_compensation = end.value
        r.compensation_queue = list(reversed(r.completed_order))
        details = {"error": error_} if error_ else {"cancel_reason": cancel_reason}
        self._event(EventType.PROCESS_COMPENSATING, **details)
        self._compensate_next()

    def _compensate_next(self) -> None:
        r = self.record
        if not r.compensation_queue:
            self._end(ProcessState(r.end_after_compensation), r.error)
            return
        step = self.definition.step(r.compensation_queue.pop(0))
        run = r.steps[step.id]
        run.state = StepState.COMPENSATING
        self._event(EventType.COMPENSATION_STARTED, step.id)
        if step.kind is StepKind.CALL:
            # The called process undoes its own completed steps; its end tells this one (`child:`).
            run.compensation_attempts = 1
            self._tell_child(run, COMPENSATE)
            return
        self._schedule_compensation(step, 1)

    def _cancel_active(self, reason: str, *, compensate_children: bool = True) -> None:
        """Stop every step still running or waiting: their tasks are withdrawn, their timers cleared.

        Processes started by running call steps are cancelled too, compensating unless told not to.
        """
        r = self.record
        for run in r.steps.values():
            if run.child_id:
                if run.state is StepState.RUNNING:
                    self._tell_child(run, ABORT if compensate_children else CANCEL)
                    run.state = StepState.CANCELLED
                    run.ended_at = self.now
                continue  # compensating: the child finishes undoing what it did

            if run.state in (StepState.SCHEDULED, StepState.RUNNING) and run.attempts:
                token = task_token(r.id, run.step_id, run.attempts, False)
                self.effects.ended_tasks.append(token)
                self.effects.cancelled.append((token, reason))
            if run.state is StepState.WAITING:
                self.effects.cleared_bus_waits.append(run.step_id)
            if run.state is StepState.INCIDENT:
                self.effects.resolved_incidents.append((run.step_id, "cancelled"))
            if run.state in (
                StepState.SCHEDULED,
                StepState.RUNNING,
                StepState.RETRYING,
                StepState.WAITING,
                StepState.INCIDENT,
            ):
                run.state = StepState.CANCELLED
                run.ended_at = self.now
                run.timer_at = 0.0
                for prefix in ("retry:", "sleep:", "wait:"):
                    self._clear_timer(prefix + run.step_id)
            elif run.state is StepState.COMPENSATING:
                token = task_token(r.id, run.step_id, run.compensation_attempts, True)
                self.effects.ended_tasks.append(token)
                self.effects.cancelled.append((token, reason))
                self._clear_timer("cretry:" + run.step_id)

    def _end(self, state: ProcessState, failure: dict[str, Any] | None) -> None:
        r = self.record
        if state is ProcessState.CANCELLED and failure is None:
            failure = error("CANCELLED", r.cancel_reason or "cancelled by CancelProcess", at=self.now)
        r.state = state
        r.error = failure
        r.ended_at = self.now
        self._clear_timer(PROCESS_TIMEOUT)
        kind = {
            ProcessState.COMPLETED: EventType.PROCESS_COMPLETED,
            ProcessState.FAILED: EventType.PROCESS_FAILED,
            ProcessState.COMPENSATED: EventType.PROCESS_COMPENSATED,
            ProcessState.CANCELLED: EventType.PROCESS_CANCELLED,
        }[state]
        details: dict[str, Any] = (
            {"output": r.output} if state is ProcessState.COMPLETED else {"error": failure}
        )
        self._event(kind, **details)
        if r.parent_id:
            self.effects.foreign_timers.append((r.parent_id, f"{CHILD_ENDED}:{r.parent_step}", self.now))

    # -- effects --------------------------------------------------------------------------------

    def _set_timer(self, name: str, due: float) -> None:
        self.effects.timers[name] = due

    def _clear_timer(self, name: str) -> None:
        self.effects.timers.pop(name, None)
        self.effects.cleared_timers.append(name)

    def _event(self, kind: EventType, step_id: str = "", attempt: int = 0, **details: Any) -> None:
        r = self.record
        r.last_event_sequence += 1
        r.updated_at = self.now
        event = HistoryEvent(r.id, r.last_event_sequence, self.now, kind, step_id, attempt, r.state, details)
        self.effects.events.append(event)
        if kind.published:
            name = kind.value
            counts = r.published
            subject_sequence = 0  # a process stored before the engine numbered its subjects: the Bus does
            if counts is not None:
                subject_sequence = counts[name] = counts.get(name, 0) + 1
            self.effects.messages.append(
                OutgoingMessage(
                    event_subject(r.definition, r.id, name),
                    history_json(event),
                    # The process's trace, so that whoever handles the event can link to it.
                    {"traceparent": r.trace_parent} if r.trace_parent else NO_HEADERS,
                    _CONTENT_TYPE,
                    "",
                    subject_sequence,
                )
            )


def _child_failure(child: ProcessRecord) -> dict[str, Any]:
    """What a call step's error says of its child: the child's code and message, not its details (which
    may hold its own child's, and so on: nested as deep as the calls, past what a Struct may be)."""
    failure = child.error or {}
    return {
        "process_id": child.id,
        "code": failure.get("code", ""),
        "message": failure.get("message", ""),
        "step_id": failure.get("step_id", ""),
    }


def _plain_runs(record: ProcessRecord) -> Iterator[tuple[str, StepRun]]:
    """(key, run) of the record's steps that are not map items, reading none of theirs from the store."""
    return ((sid, run) for sid, run in dict.items(record.steps) if "#" not in sid)


def _steps_of(branch: Branch) -> Iterator[Step]:
    """The steps of a branch, nested ones included, in definition order."""
    for step in branch.steps:
        yield step
        for inner in step.branches:
            yield from _steps_of(inner)


def encoded_size(payload: Any) -> int:
    """Bytes of a payload as JSON (as the store keeps it)."""
    return len(orjson.dumps(payload, default=str))


def event_subject(definition: str, process_id: str, event: str) -> str:
    """The Bus subject of a process event: `workflow.<definition>.<process id>.<event>`."""
    return f"workflow.{definition}.{process_id}.{event}"


def process_of_subject(subject: str) -> str | None:
    """The process id in a process event's subject, or None for any other subject."""
    parts = subject.split(".", 3)
    return parts[2] if len(parts) == 4 and parts[0] == "workflow" else None
