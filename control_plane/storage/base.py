"""The Store protocol: the whole persistence API the cores may use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from control_plane.models import (
    AppendResult,
    ChangeType,
    ConsumerConfig,
    Instance,
    OutgoingMessage,
    RegistryChange,
    RetentionPolicy,
    StoredConsumer,
    StoredMessage,
    SubjectStats,
)


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    """What the registry reloads at start: live instances, the revision, recent changes."""

    instances: list[Instance]
    revision: int
    changes: list[RegistryChange]


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

    async def bus_trim(self, rules: list[tuple[str, float, int]]) -> int:
        """Apply (subject, remove published before, keep newest N) rules; returns messages removed."""
        ...

    async def bus_subjects(self) -> list[str]:
        """Subjects with retained messages."""
        ...

    async def bus_prune_dedup(self, older_than: float) -> int:
        """Forget message ids published before `older_than`."""
        ...

    async def close(self) -> None:
        """Finish pending writes and release the backend; safe to call twice."""
        ...
