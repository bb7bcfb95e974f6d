"""The scheduler: creates and changes schedules on any replica, fires them on the leader only.

Exactly once per nominal time: a start's business key names the schedule and the nominal time, and
StartProcess returns the existing process for a key. The schedule's state (its next nominal time, its
last start) is written after the start, by compare-and-set on the row's revision; a crash, a lost race
or a failover between the two makes the next pass handle that nominal time again, and it finds the
process its key already started instead of starting another.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from control_plane.core import validate
from control_plane.core.limits import MAX_INPUT
from control_plane.core.loops import Guard
from control_plane.core.schedules.calendar import check_spec, count_between, following, jitter, rfc3339
from control_plane.core.signal import Signal, Wait, wait_any
from control_plane.core.workflow.workflows import Workflows
from control_plane.errors import (
    AlreadyExists,
    ControlPlaneError,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from control_plane.models.schedule import OverlapPolicy, ScheduleRecord, ScheduleSpec, TriggerOutcome
from control_plane.storage.base import Store

logger = logging.getLogger(__name__)

R = TypeVar("R")

DEFAULT_CATCHUP_S = 60.0
MAX_CATCHUP_S = 365 * 86_400.0
MAX_NOTE = 1_000
# With replicas, how often the leader looks for schedules changed on other replicas; and, on any
# store, how often it looks whether the process a buffered start waits for has ended.
POLL_S = 1.0
# Alone on the store, the longest wait between passes (a wall clock set forward is noticed within it).
_IDLE_S = 60.0
# Schedules handled per pass, and nominal times per schedule per pass (a long catch-up goes on next pass).
_DUE_BATCH = 100
_NOMINALS_PER_PASS = 100
# Compare-and-set attempts of one change before giving up (another writer keeps winning).
_CAS_ATTEMPTS = 10
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True, slots=True)
class NewSchedule:
    """What CreateSchedule asks for (None catch-up window: the default)."""

    id: str
    spec: ScheduleSpec
    definition: str
    version: int
    input: dict[str, Any]
    overlap: OverlapPolicy = OverlapPolicy.SKIP
    catchup_window_s: float | None = None
    paused: bool = False
    note: str = ""


@dataclass(frozen=True, slots=True)
class Triggered:
    """What a trigger did, and the schedule after it."""

    outcome: TriggerOutcome
    process_id: str
    schedule: ScheduleRecord


def business_key(schedule_id: str, nominal: float) -> str:
    """The business key of the start of one nominal time."""
    return f"schedule:{schedule_id}:{rfc3339(nominal)}"


def trigger_key(schedule_id: str, request_id: str) -> str:
    """The business key of the start a trigger asks for."""
    return f"schedule:{schedule_id}:trigger:{request_id}"


def due_at(record: ScheduleRecord) -> float | None:
    """When the leader must handle the schedule next (its next nominal time plus jitter); None: never."""
    if record.paused or record.next_nominal is None:
        return None
    return record.next_nominal + jitter(record.id, record.spec, record.next_nominal)


class Schedules:
    """Schedules of workflow processes, kept in the store; `run` fires them while this replica leads."""

    def __init__(
        self,
        store: Store,
        workflows: Workflows,
        *,
        wall_clock: Callable[[], float] = time.time,
        wait: Wait = wait_any,
        poll_s: float = POLL_S,
    ) -> None:
        self._store = store
        self._workflows = workflows
        self._wall = wall_clock
        self._wait = wait
        self._poll_s = poll_s
        self._cluster = store.cluster
        self._wakeup = Signal()

    # -- operations (any replica) ---------------------------------------------------------------

    async def create(self, new: NewSchedule) -> ScheduleRecord:
        """Store a new schedule; its first nominal time is the first after now (or its start time)."""
        window = DEFAULT_CATCHUP_S if new.catchup_window_s is None else new.catchup_window_s
        violations = validate.check_name("id", new.id)
        violations += check_spec(new.spec)
        if not 0 < window <= MAX_CATCHUP_S:
            violations.append(
                FieldViolation("catchup_window", f"must be more than 0 s and at most {MAX_CATCHUP_S:g} s")
            )
        violations += _check_note(new.note)
        violations += validate.check_json("action.input", new.input, MAX_INPUT)
        if not new.definition:
            violations.append(FieldViolation("action.definition", "must not be empty"))
        if new.version < 0:
            violations.append(FieldViolation("action.version", "must not be negative"))
        if violations:
            raise InvalidArgument(violations)
        _, definition = await self._workflows.latest_definition(new.definition, new.version)
        definition.check_input(new.input)
        now = self._wall()
        record = ScheduleRecord(
            id=new.id,
            spec=new.spec,
            definition=new.definition,
            version=new.version,
            input=new.input,
            overlap=new.overlap,
            catchup_window_s=window,
            created_at=now,
            paused=new.paused,
            note=new.note,
            next_nominal=following(new.spec, now),
        )
        if not await self._store.sched_create(record, due_at(record)):
            raise AlreadyExists("schedule", new.id)
        self._wakeup.notify()
        return dataclasses.replace(record, revision=1)

    async def get(self, schedule_id: str) -> ScheduleRecord:
        """One schedule; NotFound when there is none."""
        record = await self._store.sched_get(schedule_id)
        if record is None:
            raise NotFound("schedule", schedule_id)
        return record

    async def page(self, after: str, limit: int) -> list[ScheduleRecord]:
        """Up to `limit` schedules with ids after `after`, by id."""
        return await self._store.sched_page(after, limit)

    async def delete(self, schedule_id: str) -> None:
        """Delete a schedule (its processes stay); NotFound when there is none."""
        if not await self._store.sched_delete(schedule_id):
            raise NotFound("schedule", schedule_id)

    async def pause(self, schedule_id: str, note: str) -> ScheduleRecord:
        """Stop firing; nominal times that pass meanwhile are skipped."""
        _raise(_check_note(note))

        async def change(record: ScheduleRecord) -> tuple[ScheduleRecord, None]:
            return dataclasses.replace(record, paused=True, note=note), None

        record, _ = await self._change(schedule_id, change)
        return record

    async def unpause(self, schedule_id: str, note: str) -> ScheduleRecord:
        """Fire again from the first nominal time after now (nothing missed while paused is caught up)."""
        _raise(_check_note(note))

        async def change(record: ScheduleRecord) -> tuple[ScheduleRecord, None]:
            if not record.paused:
                return dataclasses.replace(record, note=note), None
            upcoming = following(record.spec, self._wall())
            return dataclasses.replace(record, paused=False, note=note, next_nominal=upcoming), None

        record, _ = await self._change(schedule_id, change)
        return record

    async def trigger(self, schedule_id: str, request_id: str) -> Triggered:
        """Start a process now under the overlap policy; a repeated `request_id` finds the first's process."""
        if request_id and not _REQUEST_ID.match(request_id):
            raise InvalidArgument.field("request_id", "1-64 characters of [A-Za-z0-9._-]")
        key = trigger_key(schedule_id, request_id or uuid.uuid4().hex)

        async def change(record: ScheduleRecord) -> tuple[ScheduleRecord, tuple[TriggerOutcome, str]]:
            updated, outcome, process_id = await self._start_or_hold(record, self._wall(), key)
            return updated, (outcome, process_id)

        record, (outcome, process_id) = await self._change(schedule_id, change)
        return Triggered(outcome, process_id, record)

    # -- firing (the leader) --------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Fire due schedules while this replica leads, until `stop` is set; store failures back off."""
        guard = Guard("schedules", stop, wait=self._wait)
        stopping = asyncio.ensure_future(stop.wait())
        delays: list[float | None] = [None]

        async def one_pass() -> None:
            delays[0] = await self.fire_due()

        try:
            while not stop.is_set():
                wakeup = self._wakeup.waiter()
                if await guard.run(one_pass):
                    await self._wait([wakeup, stopping], delays[0])
        finally:
            stopping.cancel()

    async def fire_due(self) -> float | None:
        """One pass: handle every due schedule (if this replica leads); returns how long to wait for the next."""
        if not self._cluster.leader:
            return self._poll_s  # the leader may die: look again soon
        due, buffered_only = await self._store.sched_due(self._wall(), _DUE_BATCH)
        for record in [*due, *buffered_only]:
            with contextlib.suppress(_Gone):
                await self._change(record.id, self._handle, first=record, missing_ok=True)
        if len(due) == _DUE_BATCH:
            return 0.0  # more are due: each one handled moved on, so the next pass gets others
        earliest, buffered = await self._store.sched_next_due()
        delay = self._poll_s if (buffered or self._cluster.shared) else _IDLE_S
        if earliest is not None:
            delay = min(delay, max(earliest - self._wall(), 0.0))
        return delay

    async def _handle(self, record: ScheduleRecord) -> tuple[ScheduleRecord, None]:
        """Start (or skip, or buffer) each nominal time of `record` that is due, in order."""
        now = self._wall()
        if (
            not record.paused
            and record.buffered_nominal is not None
            and not await self._running(record.last_process_id)
        ):
            record = await self._start_buffered(record)
        for _ in range(_NOMINALS_PER_PASS):
            nominal = record.next_nominal
            if nominal is not None and record.paused:
                # This pass lost its race with a pause: keep what it started, start nothing more.
                adopted = await self._find(record, business_key(record.id, nominal))
                if not adopted:
                    break
                record = _started(record, adopted, nominal)
                record = dataclasses.replace(record, next_nominal=following(record.spec, nominal))
                continue
            due = due_at(record)
            if nominal is None or due is None or due > now:
                break
            cutoff = now - record.catchup_window_s
            if due < cutoff:
                missed, upcoming = count_between(record.spec, nominal, cutoff)
                logger.warning(
                    "schedule %s missed %d nominal times from %s (older than its catch-up window of %g s)",
                    record.id,
                    missed,
                    rfc3339(nominal),
                    record.catchup_window_s,
                )
                record = dataclasses.replace(
                    record, missed_catchup=record.missed_catchup + missed, next_nominal=upcoming
                )
                continue
            try:
                record, _, _ = await self._start_or_hold(record, nominal, business_key(record.id, nominal))
            except Unavailable:
                raise
            except ControlPlaneError as exc:
                # The definition was deleted, the input no longer fits: give this nominal time up, say why.
                logger.error("schedule %s could not start at %s: %s", record.id, rfc3339(nominal), exc)
                record = dataclasses.replace(record, last_error=str(exc))
            record = dataclasses.replace(record, next_nominal=following(record.spec, nominal))
        return record, None

    async def _start_buffered(self, record: ScheduleRecord) -> ScheduleRecord:
        nominal, key = record.buffered_nominal, record.buffered_key
        assert nominal is not None
        record = dataclasses.replace(record, buffered_nominal=None, buffered_key="")
        try:
            process_id = await self._start(record, key)
        except Unavailable:
            raise
        except ControlPlaneError as exc:
            logger.error("schedule %s could not start its buffered %s: %s", record.id, rfc3339(nominal), exc)
            return dataclasses.replace(record, last_error=str(exc))
        return _started(record, process_id, nominal)

    # -- shared steps ---------------------------------------------------------------------------

    async def _start_or_hold(
        self, record: ScheduleRecord, nominal: float, key: str
    ) -> tuple[ScheduleRecord, TriggerOutcome, str]:
        """Start the process of `key` under the overlap policy, or skip it, or buffer it."""
        existing = await self._find(record, key)
        if existing:
            # Started before a crash (or a lost race) kept the schedule's row from saying so.
            return _started(record, existing, nominal), TriggerOutcome.STARTED, existing
        if record.overlap is not OverlapPolicy.ALLOW_ALL and await self._running(record.last_process_id):
            if record.overlap is OverlapPolicy.SKIP or record.buffered_nominal is not None:
                skipped = dataclasses.replace(record, skipped_overlaps=record.skipped_overlaps + 1)
                return skipped, TriggerOutcome.SKIPPED, ""
            buffered = dataclasses.replace(record, buffered_nominal=nominal, buffered_key=key)
            return buffered, TriggerOutcome.BUFFERED, ""
        process_id = await self._start(record, key)
        return _started(record, process_id, nominal), TriggerOutcome.STARTED, process_id

    async def _find(self, record: ScheduleRecord, key: str) -> str:
        """The id of the process the schedule started with `key`, or ""."""
        found = await self._workflows.list_processes(
            definition=record.definition, version=0, states=[], business_key=key, before=None, limit=1
        )
        return found[0].id if found else ""

    async def _start(self, record: ScheduleRecord, key: str) -> str:
        process, _ = await self._workflows.start(record.definition, record.version, record.input, key)
        return process.id

    async def _running(self, process_id: str) -> bool:
        """Whether the schedule's previous start has not ended (a process deleted since has ended)."""
        if not process_id:
            return False
        record = await self._store.wf_process(process_id)
        return record is not None and not record.state.final

    async def _change(
        self,
        schedule_id: str,
        change: Callable[[ScheduleRecord], Awaitable[tuple[ScheduleRecord, R]]],
        *,
        first: ScheduleRecord | None = None,
        missing_ok: bool = False,
    ) -> tuple[ScheduleRecord, R]:
        """Apply `change` and store the result by compare-and-set, reading and applying again after a lost race."""
        current = first
        for _ in range(_CAS_ATTEMPTS):
            if current is None:
                current = await self._store.sched_get(schedule_id)
                if current is None:
                    if missing_ok:
                        raise _Gone()
                    raise NotFound("schedule", schedule_id)
            updated, result = await change(current)
            if updated == current:
                return current, result  # nothing to write (a buffered start still waiting, say)
            if await self._store.sched_update(updated, due_at(updated)):
                self._wakeup.notify()
                return dataclasses.replace(updated, revision=current.revision + 1), result
            current = None  # someone else wrote it: read it again and redo the change on what they wrote
        raise Unavailable(f"schedule {schedule_id!r} kept changing under this request; try again")


class _Gone(NotFound):
    """A due schedule deleted while the leader handled it: nothing to do."""

    def __init__(self) -> None:
        super().__init__("schedule", "")


def _started(record: ScheduleRecord, process_id: str, nominal: float) -> ScheduleRecord:
    again = process_id == record.last_process_id  # a trigger repeated, or a pass redone: counted once
    return dataclasses.replace(
        record,
        last_process_id=process_id,
        last_nominal=nominal,
        last_error="",
        started=record.started + (0 if again else 1),
    )


def _check_note(note: str) -> list[FieldViolation]:
    return [FieldViolation("note", f"at most {MAX_NOTE} characters")] if len(note) > MAX_NOTE else []


def _raise(violations: list[FieldViolation]) -> None:
    if violations:
        raise InvalidArgument(violations)
