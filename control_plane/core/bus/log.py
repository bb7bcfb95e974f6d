"""The message log: durable in the store, its recent tail in memory so live readers never touch disk."""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Callable, Sequence
from typing import Any

from control_plane.core.bus.subjects import Pattern
from control_plane.core.signal import Signal, Wait, wait_any
from control_plane.models import AppendResult, OutgoingMessage, StoredMessage
from control_plane.storage.base import Store

logger = logging.getLogger(__name__)

# Most messages read from the store per query when a reader is behind the in-memory tail.
_PAGE = 1000


class MessageLog:
    """Appends batches (one commit each, shared with concurrent ones) and serves reads after a sequence."""

    def __init__(self, store: Store, tail_size: int) -> None:
        self._store = store
        self._tail_size = tail_size
        self._tail: list[StoredMessage] = []
        self.last_sequence = 0
        self.arrived = Signal()
        # Other replicas append to the same log: a local commit can land after sequences this replica
        # has not read yet. Such messages wait here until the follower has brought the ones before them.
        self._shared = store.cluster.shared
        self._held: list[StoredMessage] = []
        self.gap = Signal()
        # Called with every batch of messages as it becomes visible here (local or another replica's).
        self.listeners: list[Callable[[list[StoredMessage]], None]] = []

    async def load(self) -> None:
        """Learn the last sequence, so NEW_ONLY readers start after it."""
        _, self.last_sequence = await self._store.bus_bounds()

    async def append(
        self, batch: list[OutgoingMessage], *, now: float, dedup_window_s: float
    ) -> AppendResult:
        """Store a batch atomically and make it visible to readers once it is on disk."""
        result = await self._store.bus_append(batch, now=now, dedup_window_s=dedup_window_s)
        self.add(result.stored)
        return result

    def add(self, stored: list[StoredMessage]) -> None:
        """Make committed messages visible, in sequence order (commits complete in order)."""
        if not stored:
            return
        if not self._shared:
            if stored[0].sequence <= self.last_sequence:
                # Cannot happen with one writer; keep the tail sorted anyway rather than mis-deliver.
                logger.error(
                    "bus log: sequence %d committed after %d", stored[0].sequence, self.last_sequence
                )
                self._tail = sorted([*self._tail, *stored], key=lambda m: m.sequence)
                self._extended(stored)
            else:
                self._extend(stored)
            return
        self._held.extend(m for m in stored if m.sequence > self.last_sequence)
        self._held.sort(key=lambda m: m.sequence)
        ready: list[StoredMessage] = []
        last = self.last_sequence
        while self._held and self._held[0].sequence <= last + 1:
            message = self._held.pop(0)
            if message.sequence == last + 1:
                ready.append(message)
                last = message.sequence
        if ready:
            self._extend(ready)
        if self._held:
            self.gap.notify()

    async def catch_up(self) -> None:
        """Bring in what other replicas appended since the last sequence seen here."""
        while True:
            rows = await self._store.bus_read(self.last_sequence, _PAGE)
            if rows and rows[0].sequence > self.last_sequence + 1:
                # Removed by retention before this replica read them: readers start after the hole.
                logger.warning(
                    "bus log: sequences %d..%d are gone", self.last_sequence + 1, rows[0].sequence - 1
                )
                self._tail = []
                self.last_sequence = rows[0].sequence - 1
            self.add(rows)
            if len(rows) < _PAGE:
                return

    def _extend(self, stored: list[StoredMessage]) -> None:
        self._tail.extend(stored)
        self._extended(stored)

    def _extended(self, stored: list[StoredMessage]) -> None:
        self.last_sequence = max(self.last_sequence, stored[-1].sequence)
        if len(self._tail) > 2 * self._tail_size:
            del self._tail[: len(self._tail) - self._tail_size]
        for listener in self.listeners:
            listener(stored)
        self.arrived.notify()

    def in_tail(self, after: int) -> bool:
        """Whether everything after `after` is in memory."""
        return bool(self._tail) and after + 1 >= self._tail[0].sequence

    async def read(self, after: int, limit: int, pattern: Pattern) -> tuple[list[StoredMessage], int]:
        """Up to `limit` messages after `after` matching `pattern`, and the sequence scanned up to."""
        if after >= self.last_sequence:
            return [], after
        if self.in_tail(after):
            return self.read_tail(after, limit, pattern)
        head = self.last_sequence
        rows = await self._store.bus_read(after, _PAGE, pattern.text if pattern.literal else None)
        found = [m for m in rows if pattern.matches(m.subject)][:limit]
        if len(found) == limit:
            return found, found[-1].sequence
        if len(rows) < _PAGE:
            # The store held nothing more up to `head` when it was read.
            return found, max(head, rows[-1].sequence if rows else after)
        return found, rows[-1].sequence

    def read_tail(self, after: int, limit: int, pattern: Pattern) -> tuple[list[StoredMessage], int]:
        """Like `read`, for a reader whose position is in memory (see `in_tail`)."""
        start = bisect.bisect_right(self._tail, after, key=lambda m: m.sequence)
        found: list[StoredMessage] = []
        scanned = after
        matches = pattern.matches
        for message in self._tail[start:]:
            scanned = message.sequence
            if matches(message.subject):
                found.append(message)
                if len(found) == limit:
                    break
        return found, scanned

    def count_after(self, after: int, pattern: Pattern) -> int | None:
        """Matching messages after `after` when they are all in memory; None otherwise."""
        if after >= self.last_sequence:
            return 0
        if not self.in_tail(after):
            return None
        start = bisect.bisect_right(self._tail, after, key=lambda m: m.sequence)
        return sum(1 for m in self._tail[start:] if pattern.matches(m.subject))

    async def fetch(self, sequences: list[int]) -> dict[int, StoredMessage]:
        """The still-retained messages among `sequences` (for redelivery), by sequence."""
        found: dict[int, StoredMessage] = {}
        missing: list[int] = []
        for sequence in sequences:
            index = bisect.bisect_left(self._tail, sequence, key=lambda m: m.sequence)
            if index < len(self._tail) and self._tail[index].sequence == sequence:
                found[sequence] = self._tail[index]
            else:
                missing.append(sequence)
        if missing:
            for message in await self._store.bus_read_sequences(missing):
                found[message.sequence] = message
        return found

    async def wait_beyond(
        self,
        sequence: int,
        others: Sequence[asyncio.Future[Any]],
        delay_s: float | None,
        wait: Wait = wait_any,
    ) -> None:
        """Wait for a message after `sequence`, one of `others`, or `delay_s` (timed by `wait`)."""
        if self.last_sequence > sequence:
            return
        await wait([self.arrived.waiter(), *others], delay_s)
