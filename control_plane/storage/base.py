"""The Store protocol: the whole persistence API the cores may use."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from control_plane.models import (
    AppendResult,
    ChangeType,
    ConsumerConfig,
    DefinitionVersion,
    HistoryEvent,
    Incident,
    Instance,
    MeshSnapshot,
    OutgoingMessage,
    ProcessRecord,
    ProcessSearch,
    ProcessState,
    RegistryChange,
    RetentionPolicy,
    RoutePolicy,
    StoredConsumer,
    StoredMessage,
    SubjectStats,
    TaskAttempt,
)
from control_plane.models.schedule import ScheduleRecord


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    """What the registry reloads at start: live instances, the revision, recent changes."""

    instances: list[Instance]
    revision: int
    changes: list[RegistryChange]


T = TypeVar("T")

# Told of each commit: how long the shared transaction took, fsync included (s), and the writes it carried.
CommitObserver = Callable[[float, int], None]


@dataclass(slots=True)
class StoreStats:
    """What a store counts for metrics, read by the edge."""

    # Transitions run again after losing a race with another replica (deadlock, concurrent insert).
    transactions_retried: int = 0
    # Set by the edge for metrics; called on the store's writer thread, so it must be thread-safe.
    on_commit: CommitObserver | None = None


class Cluster(Protocol):
    """This replica's view of the others sharing its store (see storage.cluster)."""

    replica_id: str
    # Whether other replicas may write the same store (PostgreSQL) or not (SQLite).
    shared: bool
    # Whether this replica runs what must run once: lease expiry, probes, compaction, reclaiming.
    leader: bool

    def start(self) -> None:
        """Begin following the other replicas (once the cores subscribed)."""
        ...

    def subscribe(self, topic: str, callback: Callable[[str], None]) -> None:
        """Call `callback(payload)` on the event loop when another replica commits news of `topic`."""
        ...

    def on_leadership(self, callback: Callable[[bool], None]) -> None:
        """Call `callback(is_leader)` on the event loop when leadership is won or lost."""
        ...

    def close(self) -> None:
        """Stop following the others; gives up leadership."""
        ...


class WorkflowTx(Protocol):
    """What a workflow transition may read and write, all inside one store transaction."""

    now: float
    published: list[StoredMessage]

    def load(self, process_id: str) -> ProcessRecord | None:
        """The process, or None."""
        ...

    def find_by_key(self, definition: str, business_key: str) -> ProcessRecord | None:
        """The process of a definition with a business key, or None."""
        ...

    def peek(self, process_id: str) -> ProcessRecord | None:
        """Another process as stored, not locked (a call step reads its child's outcome), or None."""
        ...

    def save(self, record: ProcessRecord, *, new: bool) -> None:
        """Insert or update the process."""
        ...

    def history(self, events: Sequence[HistoryEvent]) -> None:
        """Append history events."""
        ...

    def put_map_item(self, process_id: str, step_id: str, item: int, *, failed: bool, output: Any) -> None:
        """Keep what one item of a map step ended with (its output, or its error when it failed)."""
        ...

    def map_outputs(self, process_id: str, step_id: str) -> list[Any]:
        """The outputs of a map step's items in item order (None for a failed item)."""
        ...

    def add_tasks(self, tasks: Sequence[TaskAttempt]) -> None:
        """Record outstanding task attempts."""
        ...

    def remove_tasks(self, tokens: Sequence[str]) -> None:
        """Forget task attempts that ended."""
        ...

    def set_timer(self, process_id: str, name: str, due_at: float) -> None:
        """Create or move a durable timer."""
        ...

    def clear_timer(self, process_id: str, name: str, *, due_by: float | None = None) -> bool:
        """Remove a timer (only if due by `due_by`, when given); False when there was none to remove."""
        ...

    def drop_timers(self, process_id: str, names: Sequence[str]) -> None:
        """Remove timers, if there are any, without asking whether there were (which costs a pipelined
        backend a round trip)."""
        ...

    def add_bus_wait(self, process_id: str, step_id: str, pattern: str) -> int:
        """Wait for a Bus message from now on; returns the log sequence after which messages count."""
        ...

    def clear_bus_wait(self, process_id: str, step_id: str) -> None:
        """Stop waiting for a Bus message."""
        ...

    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Append Bus messages in this transaction; they are in `published` once it commits."""
        ...

    def add_incidents(self, incidents: Sequence[Incident]) -> None:
        """Record incidents opened by this transition."""
        ...

    def resolve_incidents(self, process_id: str, resolved: Sequence[tuple[str, str]]) -> None:
        """Close the open incidents of steps: (step id, resolution)."""
        ...

    def set_search(self, process_id: str, definition: str, changes: dict[str, str | None]) -> None:
        """Index a process's changed search attributes (None: the attribute has no value any more)."""
        ...


class Store(Protocol):
    """Durable state of the control plane; every write is on disk when its await returns."""

    cluster: Cluster
    stats: StoreStats

    @property
    def pending_writes(self) -> int:
        """Writes submitted and not yet committed (the group-commit queue)."""
        ...

    async def secret(self, name: str) -> bytes:
        """A key shared by every replica of this store, made at first use (signing task tokens etc.)."""
        ...

    async def mesh_load(self) -> MeshSnapshot:
        """Every stored route policy and the mesh revision."""
        ...

    async def mesh_put(self, route: RoutePolicy, *, now: float) -> RoutePolicy:
        """Store (create or replace) a route policy at the next mesh revision."""
        ...

    async def mesh_delete(self, service: str) -> int | None:
        """Remove a route policy at the next mesh revision; None when there was none."""
        ...

    async def registry_commit(
        self, instance: Instance, change_type: ChangeType, *, reason: str, now: float
    ) -> RegistryChange:
        """Store (or, for DOWN, delete) `instance` and append the change at the next revision."""
        ...

    async def registry_remove(
        self, instances: list[Instance], *, reason: str, now: float
    ) -> list[RegistryChange]:
        """Delete `instances` and append their DOWN changes, at consecutive revisions, in one commit."""
        ...

    async def registry_load(self, history: int) -> RegistrySnapshot:
        """Every stored instance, the current revision and the last `history` changes."""
        ...

    async def registry_changes_after(self, revision: int, limit: int) -> list[RegistryChange]:
        """Up to `limit` changes after `revision`, in order (what other replicas committed)."""
        ...

    async def registry_renew(self, leases: dict[str, float]) -> None:
        """Record lease renewals (lease id -> wall-clock expiry) for the replica that expires leases."""
        ...

    async def registry_lease_expiry(self, lease_ids: list[str]) -> dict[str, float]:
        """The latest recorded expiry of each lease that any replica renewed."""
        ...

    async def registry_revision(self) -> int:
        """The registry's last committed revision, whichever replica committed it."""
        ...

    async def registry_compact(self, keep: int) -> int:
        """Forget all but the last `keep` changes; return how many were dropped."""
        ...

    # -- Bus ------------------------------------------------------------------------------------

    async def bus_append(
        self, batch: list[OutgoingMessage], *, now: float, dedup_window_s: float
    ) -> AppendResult:
        """Store a batch atomically (all or nothing), deduplicating by message id within the window."""
        ...

    async def bus_read(
        self, after: int, limit: int, subject: str | None = None, max_data: int | None = None
    ) -> list[StoredMessage]:
        """Up to `limit` messages after log sequence `after` (of one subject when given), in order.

        With `max_data`, the page ends with the message whose data reaches `max_data` in all: a page of
        large messages stays small. A page cut short that way carries at least `max_data` bytes of data.
        """
        ...

    async def bus_read_sequences(self, sequences: list[int]) -> list[StoredMessage]:
        """The messages among `sequences` that are still retained, in order."""
        ...

    async def bus_bounds(self) -> tuple[int, int]:
        """(oldest retained sequence or 0, last sequence ever assigned)."""
        ...

    async def bus_first_sequence_at(self, at: float) -> int:
        """The first sequence published at or after `at`, or the next one to be assigned."""
        ...

    async def bus_load_consumers(self) -> list[StoredConsumer]:
        """Every durable consumer with its position and pending deliveries."""
        ...

    async def bus_load_consumer(self, name: str) -> StoredConsumer | None:
        """One durable consumer as stored (another replica may have moved it on), or None."""
        ...

    async def bus_save_consumer(self, config: ConsumerConfig, delivered_sequence: int) -> None:
        """Create or update a durable consumer."""
        ...

    async def bus_delete_consumer(self, name: str) -> bool:
        """Remove a durable consumer and its pending deliveries; False when unknown."""
        ...

    async def bus_record_deliveries(
        self, consumer: str, delivered_sequence: int, attempts: list[tuple[int, int]]
    ) -> None:
        """Advance a durable consumer's position and record its unacked (sequence, attempt) pairs."""
        ...

    async def bus_settle(self, consumer: str, sequences: list[int]) -> None:
        """Forget acknowledged deliveries of a durable consumer."""
        ...

    async def bus_dead_letter(
        self, consumer: str, sequence: int, letter: OutgoingMessage, *, now: float
    ) -> StoredMessage:
        """Publish a dead letter and settle the original delivery in one transaction."""
        ...

    async def bus_subject_stats(self) -> list[SubjectStats]:
        """Per-subject counts of retained messages."""
        ...

    async def bus_retention(self) -> list[RetentionPolicy]:
        """Stored retention policies."""
        ...

    async def bus_set_retention(self, prefix: str, policy: RetentionPolicy | None) -> None:
        """Store, replace or (None) remove the policy of a prefix."""
        ...

    async def bus_apply_retention(self, policies: list[RetentionPolicy], *, now: float) -> int:
        """Remove what each policy no longer keeps under its prefix (longer prefixes excepted); returns removals."""
        ...

    async def bus_prune_dedup(self, older_than: float) -> int:
        """Forget message ids published before `older_than`."""
        ...

    # -- Workflow -------------------------------------------------------------------------------

    async def wf_transact(
        self,
        work: Callable[[WorkflowTx], T],
        *,
        now: float,
        follow: Callable[[T], None] | None = None,
        loads: str = "",
    ) -> T:
        """Run a transition in one transaction (shared, group-committed with others); on disk when it returns.

        `follow` is called with the result on the event loop as soon as the transaction commits, even if
        the caller was cancelled meanwhile (the transaction commits whatever becomes of its caller).
        `loads`: the process the transition loads, when known, so that a backend may read it ahead
        together with the other transitions of the same commit."""
        ...

    async def wf_definitions(self, name: str = "") -> list[DefinitionVersion]:
        """Every version of a definition (all names when empty), newest first per name."""
        ...

    async def wf_put_definition(self, name: str, digest: str, source: str, *, now: float) -> tuple[int, bool]:
        """Store a new version unless the latest has the same digest; returns (version, created)."""
        ...

    async def wf_process(self, process_id: str) -> ProcessRecord | None:
        """One process, or None."""
        ...

    async def wf_list_processes(
        self,
        *,
        definition: str,
        version: int,
        states: Sequence[ProcessState],
        business_key: str,
        before: tuple[float, str] | None,
        limit: int,
        business_key_prefix: str = "",
        started: tuple[float | None, float | None] = (None, None),
        parent_id: str = "",
        search: ProcessSearch | None = None,
    ) -> list[ProcessRecord]:
        """Processes matching the filters, newest first, after a (created_at, id) position.

        `started` bounds the creation time: (at or after, before); None leaves that side open.
        `parent_id` keeps the processes started by that process's call steps.
        """
        ...

    async def wf_incidents(
        self,
        *,
        definition: str,
        process_id: str,
        resolved: bool,
        before: tuple[float, str, int] | None,
        limit: int,
    ) -> list[Incident]:
        """Incidents (open only, unless `resolved`), newest first, after (opened_at, process id, sequence)."""
        ...

    async def wf_delete_ended(self, ended_before: float, limit: int) -> list[tuple[str, ProcessState]]:
        """Delete (in one short transaction) up to `limit` processes that ended before `ended_before`,
        with their history, incidents and search entries; returns their (definition, state)."""
        ...

    async def wf_count_by_version(self) -> dict[tuple[str, int], dict[ProcessState, int]]:
        """How many processes each definition version has in each state (none: left out)."""
        ...

    async def wf_history(self, process_id: str, after: int, limit: int) -> list[HistoryEvent]:
        """History events of a process after a sequence."""
        ...

    async def wf_count_processes(self) -> dict[tuple[str, ProcessState], int]:
        """Processes by (definition, state)."""
        ...

    async def wf_tasks(self) -> list[TaskAttempt]:
        """Every outstanding task attempt (to requeue at start)."""
        ...

    async def wf_claim_tasks(
        self, service: str, limit: int, task_types: Collection[str] | None = None
    ) -> list[TaskAttempt]:
        """Take up to `limit` attempts of `service` that no replica owns (never one another replica took),
        of `task_types` only unless None."""
        ...

    async def wf_release_tasks(self, tasks: list[TaskAttempt]) -> None:
        """Give up attempts this replica cannot hand out, for the replicas that can."""
        ...

    async def wf_release_owned(self) -> None:
        """Give up every attempt this replica owns (it is stopping)."""
        ...

    async def wf_release_orphans(self) -> list[str]:
        """Free what replicas that are gone owned; returns the services concerned."""
        ...

    async def wf_due_timers(self, before: float, limit: int) -> list[tuple[str, str, float]]:
        """Timers due by `before` as (process id, name, due at), earliest first."""
        ...

    async def wf_timers(self) -> list[tuple[str, str, float]]:
        """Every durable timer as (process id, name, due at)."""
        ...

    async def wf_bus_waits(self) -> list[tuple[str, str, str, int]]:
        """Every Bus-message wait as (process id, step id, pattern, after sequence)."""
        ...

    # -- Schedules ------------------------------------------------------------------------------

    async def sched_create(self, record: ScheduleRecord, next_due: float | None) -> bool:
        """Store a new schedule at revision 1; False when its id is taken."""
        ...

    async def sched_update(self, record: ScheduleRecord, next_due: float | None) -> bool:
        """Store `record` as its next revision unless the stored revision moved on (then False)."""
        ...

    async def sched_delete(self, schedule_id: str) -> bool:
        """Remove a schedule; False when there was none."""
        ...

    async def sched_get(self, schedule_id: str) -> ScheduleRecord | None:
        """One schedule, or None."""
        ...

    async def sched_page(self, after: str, limit: int) -> list[ScheduleRecord]:
        """Up to `limit` schedules with ids after `after`, by id."""
        ...

    async def sched_due(self, now: float, limit: int) -> tuple[list[ScheduleRecord], list[ScheduleRecord]]:
        """(Up to `limit` schedules due by `now`; up to `limit` others holding a buffered start, not paused)."""
        ...

    async def sched_next_due(self) -> tuple[float | None, bool]:
        """(When the next schedule is due, or None; whether any holds a buffered start)."""
        ...

    async def close(self) -> None:
        """Finish pending writes and release the backend; safe to call twice."""
        ...
