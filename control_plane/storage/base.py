"""The Store protocol: the whole persistence API the cores may use."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from control_plane.models import (
    AppendResult,
    ChangeType,
    ConsumerConfig,
    DefinitionVersion,
    HistoryEvent,
    Instance,
    OutgoingMessage,
    ProcessRecord,
    ProcessState,
    RegistryChange,
    RetentionPolicy,
    StoredConsumer,
    StoredMessage,
    SubjectStats,
    TaskAttempt,
)


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    """What the registry reloads at start: live instances, the revision, recent changes."""

    instances: list[Instance]
    revision: int
    changes: list[RegistryChange]


T = TypeVar("T")


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

    def save(self, record: ProcessRecord, *, new: bool) -> None:
        """Insert or update the process."""
        ...

    def history(self, events: Sequence[HistoryEvent]) -> None:
        """Append history events."""
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

    def add_bus_wait(self, process_id: str, step_id: str, pattern: str) -> int:
        """Wait for a Bus message from now on; returns the log sequence after which messages count."""
        ...

    def clear_bus_wait(self, process_id: str, step_id: str) -> None:
        """Stop waiting for a Bus message."""
        ...

    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Append Bus messages in this transaction; they are in `published` once it commits."""
        ...


class Store(Protocol):
    """Durable state of the control plane; every write is on disk when its await returns."""

    async def registry_commit(
        self, instance: Instance, change_type: ChangeType, *, reason: str, now: float
    ) -> RegistryChange:
        """Store (or, for DOWN, delete) `instance` and append the change at the next revision."""
        ...

    async def registry_load(self, history: int) -> RegistrySnapshot:
        """Every stored instance, the current revision and the last `history` changes."""
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

    async def bus_read(self, after: int, limit: int, subject: str | None = None) -> list[StoredMessage]:
        """Up to `limit` messages after log sequence `after` (of one subject when given), in order."""
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

    async def wf_transact(self, work: Callable[[WorkflowTx], T], *, now: float) -> T:
        """Run a transition in one transaction (shared, group-committed with others); on disk when it returns."""
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
    ) -> list[ProcessRecord]:
        """Processes matching the filters, newest first, after a (created_at, id) position."""
        ...

    async def wf_history(self, process_id: str, after: int, limit: int) -> list[HistoryEvent]:
        """History events of a process after a sequence."""
        ...

    async def wf_tasks(self) -> list[TaskAttempt]:
        """Every outstanding task attempt (to requeue at start)."""
        ...

    async def wf_timers(self) -> list[tuple[str, str, float]]:
        """Every durable timer as (process id, name, due at)."""
        ...

    async def wf_bus_waits(self) -> list[tuple[str, str, str, int]]:
        """Every Bus-message wait as (process id, step id, pattern, after sequence)."""
        ...

    async def close(self) -> None:
        """Finish pending writes and release the backend; safe to call twice."""
        ...
