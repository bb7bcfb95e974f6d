"""Keyed deadlines, earliest first: one per key, moved when set again, gone from memory when discarded."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

# Below this many heap entries a compaction is not worth its pass over the heap.
_COMPACT_MIN = 64


class Deadlines(Generic[K]):
    """A heap with lazy deletion, compacted so that what it holds stays within twice what is live.

    A plain heap of (due, key) keeps an entry for every deadline ever set until it comes up: a cleared
    14-day timer would stay 14 days, a heartbeat would add an entry each time. Here every key has at most
    one entry that counts (`_entry`); the others are dead, skipped when they surface and dropped in bulk
    once they outnumber the live ones. A deadline moved later keeps its entry (as etcd's lessor does): when
    that entry comes up it is pushed again at the new time, so a heartbeat costs a dict write, not a push.

    A key costs one dict slot and its heap entry, no more: `_entry` holds the very tuple pushed on the heap
    (so an entry counts when it *is* the key's, an identity check), and the deadline it was moved to, when
    later than its entry's, sits in `_later` (only keys moved so). Each is held by a million durable timers
    of processes waiting with a timeout: a second dict of deadlines and a second tuple per key were ~110
    bytes of each timer's ~340.
    """

    def __init__(self) -> None:
        # The heap entry (due, serial, key) that counts, per live key.
        self._entry: dict[K, tuple[float, int, K]] = {}
        # Live keys whose deadline was moved later than their entry's due: where it is now.
        self._later: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._serials = itertools.count()
        self._dead = 0

    def __len__(self) -> int:
        """Live deadlines."""
        return len(self._entry)

    def __contains__(self, key: object) -> bool:
        return key in self._entry

    @property
    def footprint(self) -> int:
        """Heap entries held in memory, live or dead (at most twice the live ones, past a small floor)."""
        return len(self._heap)

    def get(self, key: K) -> float | None:
        """The deadline of `key`, None when it has none."""
        entry = self._entry.get(key)
        if entry is None:
            return None
        return self._later.get(key, entry[0])

    def set(self, key: K, due: float) -> bool:
        """Set or move the deadline of `key`; True when it is now the earliest (a sleeper should wake)."""
        entry = self._entry.get(key)
        if entry is not None:
            if entry[0] < due:
                self._later[key] = due
                return False  # its entry comes up first and is pushed again at `due` then
            if entry[0] == due:
                self._later.pop(key, None)
                return False
            self._later.pop(key, None)
        pushed = self._push(key, due)
        if entry is not None:
            self._died()  # the entry at the later time
        return self._heap[0] is pushed

    def discard(self, key: K) -> None:
        """Forget the deadline of `key` (if any): its heap entry is dead from now on."""
        if self._entry.pop(key, None) is None:
            return
        self._later.pop(key, None)
        self._died()

    def next_due(self) -> float | None:
        """When the earliest entry comes up (possibly a moved deadline: waking then finds nothing)."""
        self._drop_dead_head()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float, limit: int | None = None) -> list[K]:
        """Remove and return the keys whose deadline is at or before `now`, earliest first."""
        due: list[K] = []
        heap = self._heap
        while heap and heap[0][0] <= now and (limit is None or len(due) < limit):
            item = heapq.heappop(heap)
            key = item[2]
            if self._entry.get(key) is not item:
                self._dead -= 1
                continue
            later = self._later.pop(key, None)
            if later is not None:
                self._push(key, later)  # moved later since this entry was pushed: comes out in its turn
                continue
            del self._entry[key]
            due.append(key)
        return due

    def _push(self, key: K, due: float) -> tuple[float, int, K]:
        entry = (due, next(self._serials), key)
        self._entry[key] = entry
        heapq.heappush(self._heap, entry)
        return entry

    def _died(self) -> None:
        """One more dead entry; compact once they outnumber the live ones."""
        self._dead += 1
        if self._dead > _COMPACT_MIN and self._dead > len(self._entry):
            self._compact()

    def _drop_dead_head(self) -> None:
        heap = self._heap
        while heap and self._entry.get(heap[0][2]) is not heap[0]:
            heapq.heappop(heap)
            self._dead -= 1

    def _compact(self) -> None:
        """Keep only the entries that count: O(n), paid once per n deaths."""
        self._heap = list(self._entry.values())
        heapq.heapify(self._heap)
        self._dead = 0
