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
    """

    def __init__(self) -> None:
        self._due: dict[K, float] = {}  # every live key's deadline
        self._entry: dict[K, tuple[float, int]] = {}  # (due, serial) of the heap entry that counts per key
        self._heap: list[tuple[float, int, K]] = []
        self._serials = itertools.count()
        self._dead = 0

    def __len__(self) -> int:
        """Live deadlines."""
        return len(self._due)

    def __contains__(self, key: object) -> bool:
        return key in self._due

    @property
    def footprint(self) -> int:
        """Heap entries held in memory, live or dead (at most twice the live ones, past a small floor)."""
        return len(self._heap)

    def get(self, key: K) -> float | None:
        """The deadline of `key`, None when it has none."""
        return self._due.get(key)

    def set(self, key: K, due: float) -> bool:
        """Set or move the deadline of `key`; True when it is now the earliest (a sleeper should wake)."""
        self._due[key] = due
        entry = self._entry.get(key)
        if entry is not None and entry[0] <= due:
            return False  # its entry comes up first and is pushed again at `due` then
        serial = self._push(key, due)
        if entry is not None:
            self._died()  # the entry at the later time
        return self._heap[0][1] == serial

    def discard(self, key: K) -> None:
        """Forget the deadline of `key` (if any): its heap entry is dead from now on."""
        if self._due.pop(key, None) is None:
            return
        del self._entry[key]
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
            when, serial, key = heapq.heappop(heap)
            if self._entry.get(key) != (when, serial):
                self._dead -= 1
                continue
            current = self._due[key]
            if current > when:
                self._push(key, current)  # moved later since this entry was pushed: comes out in its turn
                continue
            del self._due[key], self._entry[key]
            due.append(key)
        return due

    def _push(self, key: K, due: float) -> int:
        serial = next(self._serials)
        self._entry[key] = (due, serial)
        heapq.heappush(self._heap, (due, serial, key))
        return serial

    def _died(self) -> None:
        """One more dead entry; compact once they outnumber the live ones."""
        self._dead += 1
        if self._dead > _COMPACT_MIN and self._dead > len(self._entry):
            self._compact()

    def _drop_dead_head(self) -> None:
        heap = self._heap
        while heap and self._entry.get(heap[0][2]) != heap[0][:2]:
            heapq.heappop(heap)
            self._dead -= 1

    def _compact(self) -> None:
        """Keep only the entries that count: O(n), paid once per n deaths."""
        self._heap = [(due, serial, key) for key, (due, serial) in self._entry.items()]
        heapq.heapify(self._heap)
        self._dead = 0
