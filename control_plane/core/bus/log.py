"""The message log: durable in the store, its recent tail in memory so live readers never touch disk.

The tail is bounded twice: by message count and by bytes (`message_bytes`), so a burst of 1 MiB
messages costs at most the byte budget of memory. Readers behind the tail page through the store,
and every read, from memory or the store, stops at a byte budget as well as a count.
"""

from __future__ import annotations

import array
import asyncio
import bisect
import itertools
import logging
from collections.abc import Callable, Sequence
from typing import Any

from control_plane.core.bus.stats import BusStats
from control_plane.core.bus.subjects import Pattern
from control_plane.core.signal import Signal, Wait, wait_any
from control_plane.models import AppendResult, OutgoingMessage, StoredMessage, message_bytes, stored_sizes
from control_plane.models.bus import STORED_SUBJECT
from control_plane.storage.base import Store

logger = logging.getLogger(__name__)

# Most messages read from the store per query when a reader is behind the in-memory tail.
_PAGE = 1000
# Most payload bytes read from the store per query (a page of 1,000 messages of 1 MiB would be 1 GiB).
_PAGE_DATA = 4 * 1024 * 1024
# Messages looked up at once when fetching by sequence (redeliveries): bounds a fetch of 1 MiB messages.
_FETCH_CHUNK = 16


class MessageLog:
    """Appends batches (one commit each, shared with concurrent ones) and serves reads after a sequence."""

    def __init__(self, store: Store, tail_size: int, tail_bytes: int, stats: BusStats | None = None) -> None:
        self._store = store
        self.stats = stats or BusStats()
        self._tail_size = tail_size
        self._tail_budget = tail_bytes
        self._tail: list[StoredMessage] = []
        # Running totals of `message_bytes` over the log: _ends[i] through _tail[i], _start before _tail[0].
        # Reads cut a frame's bytes by bisecting them, and trims drop by them, with no pass per message.
        # An array of 64-bit ints: 8 bytes a message in memory rather than a list's pointer and int object.
        self._ends = array.array("q")
        self._start = 0
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

    def add(self, stored: list[StoredMessage], *, committed_here: bool = True) -> None:
        """Make committed messages visible, in sequence order (commits complete in order).

        `committed_here` is False for what other replicas committed: they count it as published.
        """
        if not stored:
            return
        if committed_here:
            self.stats.count_published(stored)
        if not self._shared:
            if stored[0].sequence <= self.last_sequence:
                # Cannot happen with one writer; keep the tail sorted anyway rather than mis-deliver.
                logger.error(
                    "bus log: sequence %d committed after %d", stored[0].sequence, self.last_sequence
                )
                self._tail = sorted([*self._tail, *stored], key=lambda m: m.sequence)
                self._weigh()
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
            rows = await self._store.bus_read(self.last_sequence, _PAGE, max_data=_PAGE_DATA)
            if rows and rows[0].sequence > self.last_sequence + 1:
                # Removed by retention before this replica read them: readers start after the hole.
                logger.warning(
                    "bus log: sequences %d..%d are gone", self.last_sequence + 1, rows[0].sequence - 1
                )
                self._tail = []
                self._weigh()
                self.last_sequence = rows[0].sequence - 1
            self.add(rows, committed_here=False)
            if not _page_cut(rows, _PAGE, _PAGE_DATA):
                return

    def _extend(self, stored: list[StoredMessage]) -> None:
        self._tail.extend(stored)
        totals = itertools.accumulate(
            stored_sizes(stored), initial=self._ends[-1] if self._ends else self._start
        )
        next(totals)  # the initial value: the total before these
        self._ends.extend(totals)
        self._extended(stored)

    def _weigh(self) -> None:
        """Running totals of the whole tail again (after it was replaced other than at its ends)."""
        self._start = 0
        self._ends = array.array("q", itertools.accumulate(stored_sizes(self._tail)))

    def _extended(self, stored: list[StoredMessage]) -> None:
        self.last_sequence = max(self.last_sequence, stored[-1].sequence)
        if len(self._tail) > 2 * self._tail_size or self.tail_bytes > self._tail_budget:
            self._trim()
        for listener in self.listeners:
            listener(stored)
        self.arrived.notify()

    def _trim(self) -> None:
        """Drop the oldest messages: down to `tail_size` once there are twice as many, and down to
        three quarters of the byte budget once it is exceeded (both leave room, so trims are rare).
        """
        ends = self._ends
        drop = len(self._tail) - self._tail_size if len(self._tail) > 2 * self._tail_size else 0
        if ends[-1] - (ends[drop - 1] if drop else self._start) > self._tail_budget:
            # The fewest more to drop that leave at most the target: the first whose running total reaches
            # the last total minus the target is the last one dropped.
            target = self._tail_budget - self._tail_budget // 4
            drop = max(drop, bisect.bisect_left(ends, ends[-1] - target) + 1)
            drop = min(drop, len(ends))
        if drop:
            self._start = ends[drop - 1]
            del self._tail[:drop]
            del ends[:drop]

    def forget(self, removed: Callable[[StoredMessage, int], bool]) -> int:
        """Drop from memory the messages retention removed from the store, so that no reader gets them;
        `removed(message, last subject sequence of its subject)` says which. Returns how many."""
        last: dict[str, int] = {}
        for message in self._tail:
            last[message.subject] = message.subject_sequence
        kept = [m for m in self._tail if not removed(m, last[m.subject])]
        dropped = len(self._tail) - len(kept)
        if dropped:
            self._tail = kept
            self._weigh()
        return dropped

    @property
    def tail_bytes(self) -> int:
        """Bytes (`message_bytes`) of the messages held in memory now."""
        return self._ends[-1] - self._start if self._ends else 0

    def in_tail(self, after: int) -> bool:
        """Whether everything after `after` is in memory."""
        return bool(self._tail) and after + 1 >= self._tail[0].sequence

    async def read(
        self,
        after: int,
        limit: int,
        pattern: Pattern,
        max_bytes: int | None = None,
        *,
        first_free: bool = True,
    ) -> tuple[list[StoredMessage], int]:
        """Up to `limit` messages after `after` matching `pattern`, and the sequence scanned up to.

        With `max_bytes`, only as many as fit in it (`message_bytes`); the first one comes even when it
        alone is larger, unless `first_free` is False (the caller has already filled part of a frame).
        """
        if after >= self.last_sequence:
            return [], after
        if self.in_tail(after):
            return self.read_tail(after, limit, pattern, max_bytes, first_free=first_free)
        head = self.last_sequence
        if pattern.literal:
            # The store filters by subject, so every row is taken: read no more than the reader takes.
            subject, page = pattern.text, min(_PAGE, limit)
            page_data = _PAGE_DATA if max_bytes is None else min(_PAGE_DATA, max_bytes)
        else:
            subject, page, page_data = None, _PAGE, _PAGE_DATA
        rows = await self._store.bus_read(after, page, subject, max_data=page_data)
        found, scanned = _select(rows, 0, after, limit, pattern, max_bytes, first_free)
        if scanned == (rows[-1].sequence if rows else after) and not _page_cut(rows, page, page_data):
            # Every row was taken or passed over, and the store held nothing more up to `head` when read.
            return found, max(head, scanned)
        return found, scanned

    def read_tail(
        self,
        after: int,
        limit: int,
        pattern: Pattern,
        max_bytes: int | None = None,
        *,
        first_free: bool = True,
    ) -> tuple[list[StoredMessage], int]:
        """Like `read`, for a reader whose position is in memory (see `in_tail`)."""
        tail = self._tail
        start = bisect.bisect_right(tail, after, key=lambda m: m.sequence)
        end = min(len(tail), start + limit)
        if start == end:
            return [], after
        # The hot path of every live reader: when every message of the next `limit` matches (their few
        # distinct subjects do), the frame is a slice, its bytes cut by the running totals.
        found = tail[start:end]
        if all(map(pattern.matches, set(map(STORED_SUBJECT, found)))):
            if max_bytes is not None:
                before = self._ends[start - 1] if start else self._start
                cut = bisect.bisect_right(self._ends, before + max_bytes, start, end)
                if cut == start and not first_free:
                    return [], after
                if cut < end:
                    del found[max(cut, start + 1) - start :]
            return found, found[-1].sequence
        return _select(tail, start, after, limit, pattern, max_bytes, first_free)

    def count_after(self, after: int, pattern: Pattern) -> int | None:
        """Matching messages after `after` when they are all in memory; None otherwise."""
        if after >= self.last_sequence:
            return 0
        if not self.in_tail(after):
            return None
        start = bisect.bisect_right(self._tail, after, key=lambda m: m.sequence)
        return sum(1 for m in self._tail[start:] if pattern.matches(m.subject))

    def published_since(self, since: float) -> tuple[int, bool]:
        """Messages published at or after `since` (wall clock) that are in memory, and whether that is all
        of them (False when the in-memory tail starts later, so older ones may be missing)."""
        start = bisect.bisect_left(self._tail, since, key=lambda m: m.published_at)
        # New messages always enter the tail: it misses some only when it was trimmed (or reloaded) after `since`.
        complete = not self._tail or self._tail[0].published_at < since or self._tail[0].sequence == 1
        return len(self._tail) - start, complete

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

    async def fetch_within(
        self, sequences: list[int], max_bytes: int
    ) -> tuple[dict[int, StoredMessage], int]:
        """Like `fetch`, for the longest prefix of `sequences` whose messages fit in `max_bytes` (at least
        one); returns them and how many of `sequences` were looked at (the rest wait for another frame).
        """
        found: dict[int, StoredMessage] = {}
        size = 0
        for start in range(0, len(sequences), _FETCH_CHUNK):
            chunk = sequences[start : start + _FETCH_CHUNK]
            fetched = await self.fetch(chunk)
            for offset, sequence in enumerate(chunk):
                message = fetched.get(sequence)
                if message is None:
                    continue  # removed by retention
                weight = message_bytes(message)
                if found and size + weight > max_bytes:
                    return found, start + offset
                found[sequence] = message
                size += weight
        return found, len(sequences)

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


def _select(
    messages: Sequence[StoredMessage],
    start: int,
    after: int,
    limit: int,
    pattern: Pattern,
    max_bytes: int | None,
    first_free: bool,
) -> tuple[list[StoredMessage], int]:
    """Matching messages from `messages[start:]`, up to `limit` and `max_bytes`, and the sequence scanned up to.

    The scan stops before a match that does not fit, so the reader's next read starts with it.
    """
    found: list[StoredMessage] = []
    scanned = after
    size = 0
    matches = pattern.matches
    for index in range(start, len(messages)):
        message = messages[index]
        if matches(message.subject):
            if max_bytes is not None:
                weight = message_bytes(message)
                if size + weight > max_bytes and (found or not first_free):
                    break
                size += weight
            found.append(message)
            scanned = message.sequence
            if len(found) == limit:
                break
        else:
            scanned = message.sequence
    return found, scanned


def _page_cut(rows: list[StoredMessage], limit: int, max_data: int) -> bool:
    """Whether a store page may have stopped short of what the store held (see `Store.bus_read`)."""
    return len(rows) >= limit or sum(len(m.data) for m in rows) >= max_data
