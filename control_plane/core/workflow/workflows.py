"""The workflow engine's front: definitions, processes, signals, worker reports and durable timers."""

from __future__ import annotations

import asyncio
import base64
import collections
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from control_plane.core import validate
from control_plane.core.bus.bus import Bus
from control_plane.core.limits import (
    MAX_BUSINESS_KEY,
    MAX_CANCEL_REASON,
    MAX_DETAILS,
    MAX_ERROR_CODE,
    MAX_ERROR_MESSAGE,
    MAX_INPUT,
    MAX_OUTBOX,
    MAX_OUTPUT,
    MAX_SIGNAL_ID,
    MAX_SIGNAL_PAYLOAD,
    MAX_SOURCE,
    MAX_TASK_TYPES,
    MAX_TASKS_IN_FLIGHT,
    NAME_MAX,
)
from control_plane.core.logfields import bound
from control_plane.core.loops import Guard, backoff_delay, on_signal, supervise
from control_plane.core.registry import Registry
from control_plane.core.signal import Signal, Wait, wait_any
from control_plane.core.signing import Signer
from control_plane.core.workflow import operations
from control_plane.core.workflow import search as search_index
from control_plane.core.workflow.bus_waits import BusWaits
from control_plane.core.workflow.calls import MissingDefinition, TxRelations
from control_plane.core.workflow.claims import Claims
from control_plane.core.workflow.compiler import DefinitionCompiler
from control_plane.core.workflow.definition import Definition
from control_plane.core.workflow.dispatch import Dispatcher, WorkerSession
from control_plane.core.workflow.ids import new_process_id
from control_plane.core.workflow.machine import (
    Effects,
    Machine,
    error,
    parse_token,
    process_of_subject,
)
from control_plane.core.workflow.parser import MAX_SEARCH_ATTRIBUTES, parse_definition
from control_plane.core.workflow.stats import WorkflowStats
from control_plane.core.workflow.timers import Timers
from control_plane.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound, NotRegistered
from control_plane.models import (
    Actor,
    ChangeType,
    DefinitionVersion,
    EventType,
    HistoryEvent,
    Incident,
    OutgoingMessage,
    ProcessRecord,
    ProcessSearch,
    ProcessState,
    RegistryChange,
    StoredMessage,
    TaskAttempt,
)
from control_plane.storage.base import Store, WorkflowTx

logger = logging.getLogger(__name__)

R = TypeVar("R")

# Told of a committed transition: the process after it, its history events, its definition (if loaded).
TransitionObserver = Callable[[ProcessRecord, Sequence[HistoryEvent], Definition | None], None]
# Timers fired at once when many are due (a burst of sleeps or retries).
_FIRE_BATCH = 256
# With replicas: how often the leader's duties run.
_LEAD_EVERY_S = 1.0
# The leader fires a timer this late (its replica died, or is stalled); the row decides who fires.
_TIMER_SLACK_S = 1.0
# How often the leader takes on Bus waits started elsewhere (a full read of the waits).
_ADOPT_WAITS_EVERY_S = 10.0
# Retention: how often ended processes are looked for, and how many one transaction deletes (it
# shares a group commit with transitions, which must not wait behind a long delete).
_RETAIN_EVERY_S = 60.0
RETENTION_BATCH = 100
DEFAULT_RETENTION_S = 30 * 86400.0
# Task tokens whose check is remembered (see Workflows._verify_token): about the attempts in flight.
_VERIFIED_TOKENS = 8192
# Subject endings of the Bus events that end a process.
_FINAL_EVENTS = tuple(
    f".{kind.value}"
    for kind in (
        EventType.PROCESS_COMPLETED,
        EventType.PROCESS_FAILED,
        EventType.PROCESS_COMPENSATED,
        EventType.PROCESS_CANCELLED,
    )
)


class ReportOutcome(StrEnum):
    """What became of a worker's report."""

    ACCEPTED = "accepted"
    ALREADY_REPORTED = "reported"
    STALE_ATTEMPT = "stale"
    TASK_CANCELLED = "cancelled"


_OUTCOMES = {"": ReportOutcome.ACCEPTED, "reported": ReportOutcome.ALREADY_REPORTED}
_OUTCOMES.update({"stale": ReportOutcome.STALE_ATTEMPT, "cancelled": ReportOutcome.TASK_CANCELLED})


@dataclass(frozen=True, slots=True)
class FailReport:
    """Outcome of a failure report: whether it counted, and when the next attempt comes."""

    outcome: ReportOutcome
    retry_at: float | None = None


@dataclass(slots=True)
class _Watch:
    signal: Signal = field(default_factory=Signal)
    count: int = 0


@dataclass(slots=True)
class _Committed:
    result: Any
    effects: Effects
    record: ProcessRecord
    published: list[StoredMessage] = field(default_factory=list)
    waits: list[tuple[str, str, int]] = field(default_factory=list)  # (step id, pattern, after sequence)
    before: ProcessState | None = None  # the process's state before the transition; None: a new one
    related: list[_Committed] = field(default_factory=list)  # processes its call steps started


class Workflows:
    """Runs processes: every transition is one group-committed store transaction."""

    def __init__(
        self,
        store: Store,
        bus: Bus,
        registry: Registry,
        *,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        wait: Wait = wait_any,
        retention_s: float = DEFAULT_RETENTION_S,
    ) -> None:
        self._store = store
        self._retention_s = retention_s
        self._bus = bus
        self._registry = registry
        self._wall = wall_clock
        self._wait = wait  # times durable timers on the `wall_clock` (attempt deadlines on `monotonic`)
        self._definitions: dict[tuple[str, int], Definition] = {}
        self._versions: dict[str, list[DefinitionVersion]] = {}
        self.dispatcher = Dispatcher(monotonic=monotonic, wall=wall_clock, wait=wait)
        self.dispatcher.on_timeout = self._on_task_timeout
        self._timers = Timers(by_process=store.cluster.shared)
        self._timer_failures: dict[tuple[str, str], int] = {}  # timers whose firing failed, and how often
        self._timer_wakeup = Signal()
        self._watchers: dict[str, _Watch] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._bus_waits = BusWaits(bus.log, self._offer_message)
        self._compiler = DefinitionCompiler()
        # Task tokens signed or verified here -> (attempt key, service), oldest first, at most _VERIFIED_TOKENS.
        # An OrderedDict, not a dict: a dict whose oldest key is deleted again and again keeps the deleted
        # slots at its front until it is resized, and finding the oldest walks past all of them (5.1-5.6 us
        # an insert at 8,192 entries, against 0.45 for popitem(last=False)).
        self._verified: collections.OrderedDict[str, tuple[str, str]] = collections.OrderedDict()
        # Replicas sharing the store: attempts are claimed from it, definitions and watches follow it.
        self._cluster = store.cluster
        # Where replicas share the store, processes by state are read from it (see WorkflowStats).
        self.stats = WorkflowStats(follow_transitions=not self._cluster.shared)
        # Told of each committed transition that has history events (the edge's tracing); none by default.
        self.transition_observers: list[TransitionObserver] = []
        self._claims = Claims(store, self.dispatcher, self._spawn) if self._cluster.shared else None
        self._adopt_waits_at = time.monotonic() + _ADOPT_WAITS_EVERY_S
        if self._cluster.shared:
            self._cluster.subscribe("definitions", self._on_definition)

    # -- lifecycle ------------------------------------------------------------------------------

    async def load(self) -> None:
        """Reload definitions, requeue outstanding attempts, re-arm durable timers."""
        self._signer = Signer(await self._store.secret("task_tokens"))
        # Before serving: nothing waits on the loop yet, so the stored definitions compile here.
        for version in reversed(await self._store.wf_definitions()):
            try:
                self._remember(version, parse_definition(version.source))
            except InvalidArgument as exc:
                _log_unusable(version, exc)
        if not self._cluster.shared:
            self.dispatcher.offer(await self._store.wf_tasks())
        for process_id, name, due in await self._store.wf_timers():
            self._timers.arm(process_id, name, due)
        self._bus_waits.load(await self._store.wf_bus_waits())
        await self.count_processes()

    async def count_processes(self) -> None:
        """Read processes by definition and state from the store (at start; with replicas, for metrics)."""
        self.stats.load(await self._store.wf_count_processes())

    @property
    def stats_from_store(self) -> bool:
        """Whether processes by state must be read from the store (replicas share it) to be exact."""
        return self._cluster.shared

    @property
    def timers_pending(self) -> int:
        """Durable timers armed on this replica."""
        return len(self._timers)

    def latest_definitions(self) -> list[Definition]:
        """The latest version of every definition, in name order."""
        return [
            self._definitions[(name, versions[0].version)]
            for name, versions in sorted(self._versions.items())
        ]

    async def run(self, stop: asyncio.Event) -> None:
        """Fire durable timers and time out attempts until `stop` is set."""
        async with asyncio.TaskGroup() as tasks:
            # Each loop outlives a failing store (see core.loops): the serving task group must not end.
            tasks.create_task(supervise("task deadlines", stop, self.dispatcher.run))
            tasks.create_task(self._fire_timers(stop))
            tasks.create_task(supervise("Bus-message waits", stop, self._bus_waits.run))
            if self._retention_s > 0:
                tasks.create_task(on_signal(stop, self._retain, [], _RETAIN_EVERY_S, "workflow retention"))
            if self._claims is not None:
                tasks.create_task(supervise("task claims", stop, self._claims.run))
                duties = functools.partial(self._lead, self._claims)
                tasks.create_task(on_signal(stop, duties, [], _LEAD_EVERY_S, "leader duties"))
        for task in list(self._background):
            task.cancel()
        await self._compiler.close()
        if self._claims is not None:
            await self._claims.release_owned()

    # -- replicas -------------------------------------------------------------------------------

    def _on_definition(self, name: str) -> None:
        self._spawn(self._reload_definitions(name))

    async def _reload_definitions(self, name: str) -> None:
        known = {v.version for v in self._versions.get(name, [])}
        for version in reversed(await self._store.wf_definitions(name)):
            if version.version not in known:
                try:
                    definition = await self._compiler.compile(version.source)
                except InvalidArgument as exc:
                    _log_unusable(version, exc)
                    continue
                if version.version not in {v.version for v in self._versions.get(name, [])}:
                    self._remember(version, definition)  # unless a concurrent reload did meanwhile

    def on_bus_messages(self, messages: list[StoredMessage]) -> None:
        """Wake watchers of processes that advanced on another replica (their events reach every replica);
        forget the timers of processes that ended there. The root subscribes this to the Bus's log."""
        if not self._cluster.shared:
            return  # alone on the store, every transition is made (and watched) here
        for message in messages:
            process_id = process_of_subject(message.subject)
            if process_id is None:
                continue
            if message.subject.endswith(_FINAL_EVENTS):
                self._timers.forget_process(process_id)
            watch = self._watchers.get(process_id)
            if watch is not None:
                watch.signal.notify()

    async def _lead(self, claims: Claims) -> None:
        """On the leader: free what dead replicas held, fire their overdue timers, adopt their Bus waits."""
        if not self._cluster.leader:
            return
        for service in await self._store.wf_release_orphans():
            claims.unowned(service)
        overdue = await self._store.wf_due_timers(self._wall() - _TIMER_SLACK_S, _FIRE_BATCH)
        fired = await asyncio.gather(*(self._fire(p, name) for p, name, _ in overdue), return_exceptions=True)
        failure = next((result for result in fired if isinstance(result, BaseException)), None)
        if failure is not None:
            raise failure  # the timers stay in the store: the next run of the duties fires them
        if time.monotonic() >= self._adopt_waits_at:
            self._adopt_waits_at = time.monotonic() + _ADOPT_WAITS_EVERY_S
            await self._bus_waits.adopt(self._store.wf_bus_waits)

    async def _retain(self) -> None:
        removed = await self.apply_retention()
        if removed:
            logger.info("retention deleted %d ended processes", removed)

    async def apply_retention(self) -> int:
        """Delete the processes that ended more than the retention before now (the leader's duty, where
        replicas share the store), a short transaction per batch; returns how many went."""
        if self._retention_s <= 0 or (self._cluster.shared and not self._cluster.leader):
            return 0
        cutoff = self._wall() - self._retention_s
        removed = 0
        while True:
            deleted = await self._store.wf_delete_ended(cutoff, RETENTION_BATCH)
            removed += len(deleted)
            if deleted:
                self.stats.forget(deleted)
            if len(deleted) < RETENTION_BATCH:
                return removed
            await asyncio.sleep(0)  # let waiting transitions into the next group commit first

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        background = asyncio.ensure_future(work)
        self._background.add(background)
        background.add_done_callback(self._background.discard)

    # -- definitions ----------------------------------------------------------------------------

    async def register_definition(
        self, source: str, *, validate_only: bool
    ) -> tuple[DefinitionVersion, bool]:
        """Validate a definition and store it as a new version unless unchanged."""
        if len(source.encode()) > MAX_SOURCE:
            raise InvalidArgument.field("source", f"at most {MAX_SOURCE} bytes")
        definition = await self._compiler.compile(source)
        versions = self._versions.get(definition.name, [])
        latest = versions[0] if versions else None
        if validate_only:
            if latest is not None and latest.digest == definition.digest:
                return latest, False
            version = (latest.version + 1) if latest else 1
            return DefinitionVersion(definition.name, version, definition.digest, source, self._wall()), True
        version, created = await self._store.wf_put_definition(
            definition.name, definition.digest, source, now=self._wall()
        )
        if created:
            stored = DefinitionVersion(definition.name, version, definition.digest, source, self._wall())
            self._remember(stored, definition)
            return stored, True
        assert latest is not None
        return latest, False

    def definition(self, name: str, version: int = 0) -> tuple[DefinitionVersion, Definition]:
        """A stored definition version (the latest when `version` is 0)."""
        versions = self._versions.get(name)
        if not versions:
            raise NotFound("definition", name)
        chosen = versions[0] if not version else next((v for v in versions if v.version == version), None)
        if chosen is None:
            raise NotFound("definition version", f"{name}@{version}")
        return chosen, self._definitions[(name, chosen.version)]

    async def latest_definition(self, name: str, version: int = 0) -> tuple[DefinitionVersion, Definition]:
        """As `definition`, first reading the store for one registered on another replica a moment ago."""
        if self._cluster.shared and (
            name not in self._versions or (version and (name, version) not in self._definitions)
        ):
            await self._reload_definitions(name)
        return self.definition(name, version)

    def definitions(self, name: str = "", all_versions: bool = False) -> list[DefinitionVersion]:
        """Stored definitions in name order (newest version first when all are asked for)."""
        names = [name] if name else sorted(self._versions)
        return [v for n in names for v in (self._versions.get(n, [])[: None if all_versions else 1])]

    def _remember(self, version: DefinitionVersion, definition: Definition) -> None:
        self._definitions[(version.name, version.version)] = definition
        versions = self._versions.setdefault(version.name, [])
        versions.insert(0, version)
        versions.sort(key=lambda v: -v.version)

    # -- processes ------------------------------------------------------------------------------

    async def start(
        self, name: str, version: int, process_input: Any, business_key: str, trace_parent: str = ""
    ) -> tuple[ProcessRecord, bool]:
        """Start a process (or return the one already started with this business key).

        `trace_parent` is the W3C traceparent of the caller's span, kept with the process as the parent
        of all its spans ("" when the call is not traced).
        """
        violations = validate.check_json("input", process_input, MAX_INPUT)
        if len(business_key) > MAX_BUSINESS_KEY:
            violations.append(FieldViolation("business_key", f"at most {MAX_BUSINESS_KEY} characters"))
        if violations:
            raise InvalidArgument(violations)
        if self._cluster.shared and (
            name not in self._versions or (version and (name, version) not in self._definitions)
        ):
            await self._reload_definitions(name)  # registered on another replica a moment ago
        stored, definition = self.definition(name, version)
        definition.check_input(process_input)
        now = self._wall()
        record = ProcessRecord(
            id=new_process_id(now),
            definition=name,
            version=stored.version,
            business_key=business_key,
            state=ProcessState.STARTED,
            input=process_input,
            created_at=now,
            updated_at=now,
            trace_parent=trace_parent,
        )

        reload_missing = [self._cluster.shared]

        def work(tx: WorkflowTx) -> _Committed:
            if business_key:
                existing = tx.find_by_key(name, business_key)
                if existing is not None:
                    return _Committed(True, Effects(), existing)
            relations = self._relations(tx, reload_missing=reload_missing[0])
            machine = Machine(record, definition, tx.now, relations)
            machine.start()
            waits = self._write(tx, machine, new=True)
            return _Committed(
                False, machine.effects, machine.record, tx.published, waits, related=_started(relations)
            )

        try:
            committed = await self._transact(work, now)
        except MissingDefinition as exc:
            # A call step names a definition registered on another replica a moment ago.
            await self._reload_definitions(exc.name)
            reload_missing[0] = False
            committed = await self._transact(work, self._wall())
        return committed.record, bool(committed.result)

    async def process(self, process_id: str) -> ProcessRecord:
        """One process; NotFound when there is none."""
        record = await self._store.wf_process(process_id)
        if record is None:
            raise NotFound("process", process_id)
        return record

    async def list_processes(
        self,
        *,
        definition: str,
        version: int,
        states: list[ProcessState],
        business_key: str,
        before: tuple[float, str] | None,
        limit: int,
        business_key_prefix: str = "",
        started: tuple[float | None, float | None] = (None, None),
        parent_id: str = "",
        search: ProcessSearch | None = None,
    ) -> list[ProcessRecord]:
        """Processes matching the filters, newest first (`started`: creation time from, before;
        `parent_id`: those started by that process's call steps)."""
        if search is not None and search.attributes:
            self._check_attributes(definition, search.attributes)
            # Compared as indexed: a value longer than the index keeps is matched on what it keeps.
            wanted = {name: value[: search_index.MAX_VALUE] for name, value in search.attributes.items()}
            search = ProcessSearch(definition, search.ended, search.current_step, search.has_incident, wanted)
        return await self._store.wf_list_processes(
            definition=definition,
            version=version,
            states=states,
            business_key=business_key,
            before=before,
            limit=limit,
            business_key_prefix=business_key_prefix,
            started=started,
            parent_id=parent_id,
            search=search,
        )

    def _check_attributes(self, definition: str, attributes: dict[str, str]) -> None:
        if not definition:
            raise InvalidArgument.field("definition", "required to search by search_attributes")
        if len(attributes) > MAX_SEARCH_ATTRIBUTES:
            raise InvalidArgument.field("search_attributes", f"at most {MAX_SEARCH_ATTRIBUTES}")
        declared = {
            n for v in self._versions.get(definition, []) for n in self._declared(definition, v.version)
        }
        for name in attributes:
            if name not in declared:
                known = ", ".join(sorted(declared)) or "none"
                raise InvalidArgument.field(
                    f"search_attributes[{name[:64]!r}]",
                    f"definition {definition!r} declares no such search attribute (it declares: {known})",
                )

    def _declared(self, name: str, version: int) -> list[str]:
        definition = self._definitions.get((name, version))
        return list(definition.search_attributes) if definition is not None else []

    async def incidents(
        self,
        *,
        definition: str,
        process_id: str,
        resolved: bool,
        before: tuple[float, str, int] | None,
        limit: int,
    ) -> list[Incident]:
        """Incidents, newest first: open ones, or every one (`resolved`)."""
        return await self._store.wf_incidents(
            definition=definition, process_id=process_id, resolved=resolved, before=before, limit=limit
        )

    # -- operator actions -----------------------------------------------------------------------

    async def retry_step(
        self, process_id: str, step_id: str, new_input: Any, *, actor: Actor, reason: str
    ) -> ProcessRecord:
        """A fresh set of attempts for a step in INCIDENT, with a replaced input when one is given."""
        _check_action(reason, step_id, ("input", new_input, MAX_INPUT))
        await self._transition(
            process_id, lambda m: operations.retry_step(m, step_id, new_input, actor, reason)
        )
        return await self.process(process_id)

    async def skip_step(
        self, process_id: str, step_id: str, output: Any, *, actor: Actor, reason: str
    ) -> ProcessRecord:
        """A step in INCIDENT counts as completed with `output`."""
        _check_action(reason, step_id, ("output", output, MAX_OUTPUT))
        await self._transition(process_id, lambda m: operations.skip_step(m, step_id, output, actor, reason))
        return await self.process(process_id)

    async def fail_process(self, process_id: str, *, actor: Actor, reason: str) -> ProcessRecord:
        """Give up on a process's incidents: compensate, or fail, as without `on_failure: incident`."""
        _check_action(reason, None, None)
        await self._transition(process_id, lambda m: operations.fail_process(m, actor, reason))
        return await self.process(process_id)

    async def retry_process(self, process_id: str, *, actor: Actor, reason: str) -> ProcessRecord:
        """Resume a FAILED process from the step(s) that failed."""
        _check_action(reason, None, None)
        await self._transition(process_id, lambda m: operations.retry_process(m, actor, reason))
        return await self.process(process_id)

    async def processes_by_state(self) -> dict[ProcessState, int]:
        """How many processes are in each state, every definition together (read from the store)."""
        counts: dict[ProcessState, int] = {}
        for (_, state), count in (await self._store.wf_count_processes()).items():
            counts[state] = counts.get(state, 0) + count
        return counts

    async def count_by_version(self) -> dict[tuple[str, int], dict[ProcessState, int]]:
        """How many processes each definition version has in each state."""
        return await self._store.wf_count_by_version()

    async def history(self, process_id: str, after: int, limit: int) -> list[HistoryEvent]:
        """History events after a sequence; NotFound for an unknown process."""
        events = await self._store.wf_history(process_id, after, limit)
        if not events and after == 0:
            await self.process(process_id)
        return events

    @asynccontextmanager
    async def watch(self, process_id: str) -> AsyncIterator[Signal]:
        """A signal notified after every transition of the process, for the duration of the block."""
        entry = self._watchers.get(process_id)
        if entry is None:
            entry = self._watchers[process_id] = _Watch()
        entry.count += 1
        try:
            yield entry.signal
        finally:
            entry.count -= 1
            if entry.count == 0 and self._watchers.get(process_id) is entry:
                del self._watchers[process_id]

    async def signal(
        self, process_id: str, name: str, payload: Any, signal_id: str, *, actor: Actor | None = None
    ) -> tuple[bool, bool]:
        """Deliver a signal (or buffer it); returns (buffered, duplicate).

        `actor`, when given, is recorded in the history event: who sent the signal, with which role.
        """
        violations = validate.check_text("name", name, NAME_MAX)
        violations += validate.check_text("signal_id", signal_id, MAX_SIGNAL_ID)
        violations += validate.check_json("payload", payload, MAX_SIGNAL_PAYLOAD)
        if not name:
            violations.append(FieldViolation("name", "must not be empty"))
        if violations:
            raise InvalidArgument(violations)
        result: tuple[bool, bool] = await self._transition(
            process_id, lambda m: m.signal(name, payload, signal_id, actor=actor)
        )
        return result

    async def cancel(
        self, process_id: str, reason: str, compensate: bool, *, actor: Actor | None = None
    ) -> ProcessRecord:
        """Cancel a process (compensating first when asked); `actor` is recorded as for `signal`."""
        if len(reason) > MAX_CANCEL_REASON:
            raise InvalidArgument.field("reason", f"at most {MAX_CANCEL_REASON} characters")
        await self._transition(process_id, lambda m: m.cancel(reason, compensate, actor=actor))
        return await self.process(process_id)

    # -- worker reports -------------------------------------------------------------------------

    async def complete(self, token: str, output: Any, outbox: list[OutgoingMessage]) -> ReportOutcome:
        """A worker completed an attempt; the outbox is published only if the completion counts."""
        process_id, step_id, attempt, compensation = self._parse_token(token)
        violations = validate.check_json("output", output, MAX_OUTPUT)
        if len(outbox) > MAX_OUTBOX:
            violations.append(FieldViolation("outbox", f"at most {MAX_OUTBOX} messages"))
        elif outbox:
            violations += self._bus.check_batch(outbox, "outbox")
        if violations:
            raise InvalidArgument(violations)

        def apply(machine: Machine) -> ReportOutcome:
            why = machine.check_current(step_id, attempt, compensation)
            if why:
                return _OUTCOMES[why]
            machine.complete_task(step_id, attempt, compensation, output)
            machine.effects.messages.extend(outbox)
            return ReportOutcome.ACCEPTED

        outcome: ReportOutcome = await self._transition(process_id, apply)
        return outcome

    async def fail(
        self, token: str, code: str, message: str, *, non_retryable: bool, details: Any
    ) -> FailReport:
        """A worker reports a failed attempt; the step's retry policy decides what comes next."""
        process_id, step_id, attempt, compensation = self._parse_token(token)
        violations = validate.check_text("error_code", code, MAX_ERROR_CODE)
        violations += validate.check_text("message", message, MAX_ERROR_MESSAGE)
        if details is not None:
            violations += validate.check_json("details", details, MAX_DETAILS)
        if not code:
            violations.append(FieldViolation("error_code", "must not be empty"))
        if violations:
            raise InvalidArgument(violations)

        def apply(machine: Machine) -> FailReport:
            why = machine.check_current(step_id, attempt, compensation)
            if why:
                return FailReport(_OUTCOMES[why])
            failure = error(code, message, step_id, attempt, details, at=machine.now)
            retry_at = machine.fail_task(step_id, attempt, compensation, failure, retryable=not non_retryable)
            return FailReport(ReportOutcome.ACCEPTED, retry_at)

        report: FailReport = await self._transition(process_id, apply)
        return report

    async def heartbeat(self, token: str, details: Any) -> ReportOutcome:
        """A worker is still at it: push the heartbeat deadline, keep the details for a retry."""
        process_id, step_id, attempt, compensation = self._parse_token(token)
        if details is not None:
            violations = validate.check_json("details", details, MAX_DETAILS)
            if violations:
                raise InvalidArgument(violations)
        if not self.dispatcher.heartbeat(self._verify_token(token)[0]):
            return ReportOutcome.STALE_ATTEMPT
        if details is not None:

            def apply(machine: Machine) -> ReportOutcome:
                why = machine.check_current(step_id, attempt, compensation)
                if not why:
                    machine.record_heartbeat(step_id, details)
                return _OUTCOMES[why]

            outcome: ReportOutcome = await self._transition(process_id, apply)
            return outcome
        return ReportOutcome.ACCEPTED

    async def started(self, token: str) -> ReportOutcome:
        """A worker began an attempt: it counts as a heartbeat, and is recorded (TASK_STARTED, the step
        RUNNING on that worker until the deadline) in a transition of its own, once per attempt."""
        process_id, step_id, attempt, compensation = self._parse_token(token)
        holder = self.dispatcher.start(self._verify_token(token)[0])
        if holder is None:
            return ReportOutcome.STALE_ATTEMPT
        worker_instance_id, deadline = holder

        def apply(machine: Machine) -> ReportOutcome:
            why = machine.check_current(step_id, attempt, compensation)
            if not why:
                machine.start_task(step_id, attempt, compensation, worker_instance_id, deadline)
            return _OUTCOMES[why]

        outcome: ReportOutcome = await self._transition(process_id, apply)
        return outcome

    @asynccontextmanager
    async def worker(
        self, service: str, instance_id: str, task_types: list[str], max_in_flight: int
    ) -> AsyncIterator[WorkerSession]:
        """A task subscription of a live registered instance, for the duration of the block."""
        violations = validate.check_name("service", service) + validate.check_name("instance_id", instance_id)
        if len(task_types) > MAX_TASK_TYPES:
            violations.append(FieldViolation("task_types", f"at most {MAX_TASK_TYPES}"))
        if not 0 <= max_in_flight <= MAX_TASKS_IN_FLIGHT:
            violations.append(FieldViolation("max_in_flight", f"must be between 1 and {MAX_TASKS_IN_FLIGHT}"))
        if violations:
            raise InvalidArgument(violations)
        instance = next((i for i in self._registry.instances(service) if i.instance_id == instance_id), None)
        if instance is None:
            raise NotRegistered(service, instance_id, "not_registered")
        session = self.dispatcher.attach(
            service, instance_id, instance.version, frozenset(task_types), max_in_flight or 16
        )
        if self._claims is not None:
            self._claims.unowned(service)
        try:
            yield session
        finally:
            self.dispatcher.detach(session)

    # -- transitions ----------------------------------------------------------------------------

    def wire_token(self, key: str, service: str) -> str:
        """The token a worker of `service` gets for the attempt `key`: signed, so it cannot be forged.

        Internally an attempt is known by its readable key (`<process>/<step>/<attempt>/t`); the
        wire form adds the service that may report on it and a MAC over both, so a report proves
        that the control plane handed this attempt to a worker of that service.
        """
        token = self._signer.sign(f"{key}@{service}")
        self._remember_token(token, (key, service))
        return token

    def _remember_token(self, token: str, verified: tuple[str, str]) -> None:
        verified_tokens = self._verified
        verified_tokens[token] = verified
        if len(verified_tokens) > _VERIFIED_TOKENS:
            verified_tokens.popitem(last=False)

    def token_service(self, token: str) -> str:
        """The service a task token was issued to; INVALID_ARGUMENT when it was not issued here."""
        return self._verify_token(token)[1]

    def _verify_token(self, token: str) -> tuple[str, str]:
        """(attempt key, service) of a task token; a token handed out or checked here lately is known
        without its MAC computed again (a step's report was checked twice, its token signed once)."""
        known = self._verified.get(token)
        if known is not None:
            return known
        text = self._signer.verify(token)
        key, at, service = (text or "").rpartition("@")
        if text is None or not at or parse_token(key) is None:
            raise InvalidArgument.field("task_token", "not a task token issued by this control plane")
        self._remember_token(token, (key, service))
        return key, service

    def _parse_token(self, token: str) -> tuple[str, str, int, bool]:
        parsed = parse_token(self._verify_token(token)[0])
        assert parsed is not None  # checked by _verify_token
        return parsed

    async def _transition(self, process_id: str, apply: Callable[[Machine], R]) -> R:
        """Load, decide and write one process transition in one store transaction."""
        committed = await self._commit(process_id, apply)
        result: R = committed.result
        return result

    async def _commit(
        self,
        process_id: str,
        apply: Callable[[Machine], Any],
        guard: Callable[[WorkflowTx], bool] | None = None,
    ) -> _Committed:
        """Run a transition; a `guard` runs first in the same transaction and, saying no, stops it."""
        with bound(process_id=process_id):
            return await self._commit_bound(process_id, apply, guard)

    async def _commit_bound(
        self,
        process_id: str,
        apply: Callable[[Machine], Any],
        guard: Callable[[WorkflowTx], bool] | None,
    ) -> _Committed:
        reload_missing = [self._cluster.shared]

        def work(tx: WorkflowTx) -> _Committed:
            if guard is not None and not guard(tx):
                return _Committed(None, Effects(), _GONE)
            record = tx.load(process_id)
            if record is None:
                raise NotFound("process", process_id)
            definition = self._definitions.get((record.definition, record.version))
            if definition is None:
                raise _UnknownDefinition(record.definition)
            before = record.state
            relations = self._relations(tx, reload_missing=reload_missing[0])
            machine = Machine(record, definition, tx.now, relations)
            result = apply(machine)
            waits = self._write(tx, machine, new=False) if machine.effects.events or machine.changed else []
            return _Committed(
                result, machine.effects, machine.record, tx.published, waits, before, _started(relations)
            )

        try:
            return await self._transact(work, self._wall(), loads=process_id)
        except (_UnknownDefinition, MissingDefinition) as exc:
            # The process was started on another replica with a version registered there a moment ago,
            # or a call step names a definition registered there.
            await self._reload_definitions(exc.name)
            reload_missing[0] = False
            return await self._transact(work, self._wall(), loads=process_id)

    async def _transact(
        self, work: Callable[[WorkflowTx], _Committed], now: float, *, loads: str = ""
    ) -> _Committed:
        """Commit `work`, then apply what follows in memory, even if the caller is cancelled meanwhile.

        A transaction handed to the store commits whatever becomes of its caller (a client that gives up
        cancels its RPC), so what follows the commit must happen too: else the worker's credit and the
        tasks and timers it created would be known only to the store, until a restart. The store calls
        `_after_commit` as the commit settles, so no task of its own is needed per transition.
        """
        committed: _Committed = await self._store.wf_transact(
            work, now=now, follow=self._after_commit, loads=loads
        )
        return committed

    def _relations(self, tx: WorkflowTx, *, reload_missing: bool) -> TxRelations:
        """What a transition in `tx` may do to other processes (start those its call steps run)."""
        return TxRelations(
            tx,
            versions=lambda name: self._versions.get(name, []),
            compiled=lambda name, version: self._definitions[(name, version)],
            write=lambda tx_, machine: self._write(tx_, machine, new=True),
            reload_missing=reload_missing,
        )

    @staticmethod
    def _write(tx: WorkflowTx, machine: Machine, *, new: bool) -> list[tuple[str, str, int]]:
        """Store a transition's effects; returns the Bus waits it started."""
        effects = machine.effects
        indexed = search_index.changes(machine.definition, machine.record, effects.events)
        tx.save(machine.record, new=new)
        tx.history(effects.events)
        if indexed:
            tx.set_search(machine.record.id, machine.record.definition, indexed)
        if effects.resolved_incidents:
            tx.resolve_incidents(machine.record.id, effects.resolved_incidents)
        if effects.incidents:
            tx.add_incidents(effects.incidents)
        if effects.ended_tasks:
            tx.remove_tasks(effects.ended_tasks)
        if effects.new_tasks:
            tx.add_tasks(effects.new_tasks)
        if effects.cleared_timers:
            tx.drop_timers(machine.record.id, list(effects.cleared_timers))
        for name, due in effects.timers.items():
            tx.set_timer(machine.record.id, name, due)
        for process_id, name, due in effects.foreign_timers:
            tx.set_timer(process_id, name, due)
        for step_id in effects.cleared_bus_waits:
            tx.clear_bus_wait(machine.record.id, step_id)
        waits = [
            (step_id, pattern, tx.add_bus_wait(machine.record.id, step_id, pattern))
            for step_id, pattern in effects.bus_waits
        ]
        tx.publish(effects.messages)
        return waits

    def _after_commit(self, committed: _Committed) -> None:
        """What follows a commit, in memory: workers, Bus subscribers, timers, watchers."""
        effects = committed.effects
        cancelled = dict(effects.cancelled)
        for token in effects.ended_tasks:
            if token in cancelled:
                self.dispatcher.withdraw(token, cancelled[token])
            else:
                self.dispatcher.settle(token)
        if self._claims is None:
            self.dispatcher.offer(effects.new_tasks)
        else:
            # Created owned by this replica: those no worker here can run go to the others.
            self.dispatcher.offer(self._claims.keep(effects.new_tasks))
            if effects.ended_tasks:
                self._claims.credit_freed()
        # After the workers: woken in this order, the next task's frame is written before the Bus frames
        # of the same commit are built (a step's latency does not wait for its Bus subscribers).
        self._bus.log.add(committed.published)
        process_id = committed.record.id
        # Cleared first: a transition may clear a timer and arm it again under the same name.
        for name in effects.cleared_timers:
            self._timers.clear(process_id, name)
        for name, due in effects.timers.items():
            if self._timers.arm(process_id, name, due):
                self._timer_wakeup.notify()
        for other, name, due in effects.foreign_timers:
            if self._timers.arm(other, name, due):
                self._timer_wakeup.notify()
        for step_id in effects.cleared_bus_waits:
            self._bus_waits.remove(process_id, step_id)
        for step_id, pattern, after in committed.waits:
            self._bus_waits.add(process_id, step_id, pattern, after)
        watch = self._watchers.get(process_id)
        if watch is not None:
            watch.signal.notify()
        if effects.events:
            self.stats.record(committed.record, committed.before, effects.events, self._definitions)
            if self.transition_observers:
                record = committed.record
                definition = self._definitions.get((record.definition, record.version))
                for observer in self.transition_observers:
                    observer(record, effects.events, definition)
        for related in committed.related:
            self._after_commit(related)

    async def _fire_timers(self, stop: asyncio.Event) -> None:
        guard = Guard("workflow timers", stop, wait=self._wait)
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                due = self._timers.pop_due(self._wall(), _FIRE_BATCH)
                if due:
                    # Fired together, their transitions share commits instead of paying one each.
                    fired = await asyncio.gather(
                        *(self._fire(p, name) for p, name in due), return_exceptions=True
                    )
                    self._refire_failed(guard, due, fired)
                    continue
                next_due = self._timers.next_due()
                delay = next_due - self._wall() if next_due is not None else None
                await self._wait([self._timer_wakeup.waiter(), stopping], delay)
        finally:
            stopping.cancel()

    def _refire_failed(
        self, guard: Guard, due: list[tuple[str, str]], fired: Sequence[BaseException | None]
    ) -> None:
        """Timers whose transition failed (the store failing) fire again, each after a backoff of its own."""
        failure: BaseException | None = None
        for key, result in zip(due, fired, strict=True):
            if isinstance(result, BaseException):
                failure = failure or result
                failures = self._timer_failures[key] = self._timer_failures.get(key, 0) + 1
                self._timers.rearm(*key, self._wall() + backoff_delay(failures))
            else:
                self._timer_failures.pop(key, None)
        if failure is None:
            guard.succeeded()
        else:
            guard.failed(failure)

    async def _fire(self, process_id: str, name: str) -> None:
        # The timer row decides: a timer cleared, or moved later, by an earlier transition does not fire.
        with bound(process_id=process_id):
            await self._commit(
                process_id,
                lambda machine: machine.fire_timer(name),
                guard=lambda tx: tx.clear_timer(process_id, name, due_by=tx.now),
            )

    async def _offer_message(self, process_id: str, step_id: str, message: StoredMessage) -> None:
        """A Bus message for a waiting step: the step's correlation decides (NotFound: the process is gone)."""
        try:
            payload: Any = json.loads(message.data)
        except ValueError:
            payload = {"data": base64.b64encode(message.data).decode()}
        if not isinstance(payload, dict):
            payload = {"value": payload}
        await self._transition(
            process_id, lambda m: m.bus_message(step_id, message.subject, message.sequence, payload)
        )

    def _on_task_timeout(self, task: TaskAttempt, kind: str) -> None:
        failure_code = "TIMEOUT" if kind == "TIMEOUT" else "HEARTBEAT_TIMEOUT"

        async def time_out() -> None:
            def apply(machine: Machine) -> None:
                if machine.check_current(task.step_id, task.attempt, task.compensation):
                    return
                failure = error(
                    failure_code,
                    f"attempt {task.attempt} ran out of time",
                    task.step_id,
                    task.attempt,
                    at=machine.now,
                )
                machine.fail_task(
                    task.step_id, task.attempt, task.compensation, failure, retryable=True, timed_out=True
                )

            try:
                with bound(
                    process_id=task.process_id,
                    definition=task.definition,
                    step_id=task.step_id,
                    attempt=task.attempt,
                    service=task.service,
                ):
                    await self._transition(task.process_id, apply)
            except (NotFound, FailedPrecondition) as exc:
                logger.info("attempt %s not timed out: %s", task.token, exc)  # the process went or ended

        async def until_recorded() -> None:
            # The attempt's deadline fired once: a failure to record it (the store failing) is retried.
            guard = Guard(f"timing out attempt {task.token}", wait=self._wait)
            while not await guard.run(time_out):
                pass

        self._spawn(until_recorded())

    def on_registry_change(self, change: RegistryChange) -> None:
        """Requeue at once the attempts of a worker whose instance left (the root subscribes this)."""
        if change.type is ChangeType.DOWN:
            self.dispatcher.instance_gone(change.instance.service, change.instance.instance_id, change.reason)


def _started(relations: TxRelations) -> list[_Committed]:
    """The processes a transition's call steps started, as commits of their own (to follow in memory)."""
    return [_Committed(None, m.effects, m.record, [], waits) for m, waits in relations.started]


def _check_action(reason: str, step_id: str | None, value: tuple[str, Any, int] | None) -> None:
    """Refuse an operator action's bad fields (a reason is required: it goes into the history)."""
    violations = validate.check_text("reason", reason, MAX_CANCEL_REASON)
    if not reason.strip():
        violations.append(FieldViolation("reason", "must not be empty: say why, for the history"))
    if step_id is not None:
        violations += validate.check_text("step_id", step_id, NAME_MAX)
        if not step_id:
            violations.append(FieldViolation("step_id", "must not be empty"))
    if value is not None and value[1] is not None:
        violations += validate.check_json(value[0], value[1], value[2])
    if violations:
        raise InvalidArgument(violations)


def _log_unusable(version: DefinitionVersion, exc: InvalidArgument) -> None:
    # Stored by a version with looser checks (or by hand): its processes cannot advance here.
    logger.error(
        "definition %s version %d no longer passes validation: %s", version.name, version.version, exc
    )


class _UnknownDefinition(Exception):
    """A transition met a definition version this replica has not loaded yet."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


_GONE = ProcessRecord("", "", 0, "", ProcessState.CANCELLED, None, 0.0, 0.0)
