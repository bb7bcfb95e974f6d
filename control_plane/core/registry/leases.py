"""Leases: which instance holds each one, when each lapses, and the renewals other replicas must see.

A lease lapses at its last renewal plus its TTL, exactly (etcd's rule, not Eureka's 2x). Deadlines are
kept on the monotonic clock in a heap that only ever gains entries for earlier deadlines: a renewal
that moves a deadline later just updates the table, and the sweeper re-arms from it when the old
entry comes due. The table is plain data; the registry's expiry loop decides what to evict.
"""

from __future__ import annotations

import heapq
from collections.abc import ItemsView, Iterable
from dataclasses import dataclass

from control_plane.core.signal import Signal

InstanceKey = tuple[str, str]  # (service, instance id)


@dataclass(frozen=True, slots=True)
class Lease:
    """A granted lease: the instance goes when `expires_at` (wall clock) passes without renewal."""

    lease_id: str
    ttl_s: float
    expires_at: float


class Leases:
    """The live leases of this replica: their holders, their deadlines (monotonic) and unshared renewals."""

    def __init__(self) -> None:
        self._holders: dict[str, InstanceKey] = {}
        self._deadlines: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        # Notified when the earliest deadline moves earlier: the sweeper's wait must end sooner.
        self.earlier = Signal()
        # Renewals made here that the leader has yet to see (lease id -> wall-clock expiry).
        self._renewals: dict[str, float] = {}
        self.renewed = Signal()

    def __contains__(self, lease_id: object) -> bool:
        return lease_id in self._holders

    def holder(self, lease_id: str) -> InstanceKey:
        """The instance holding `lease_id`; KeyError when the lease is not live."""
        return self._holders[lease_id]

    def held(self) -> ItemsView[str, InstanceKey]:
        """Every live lease with its holder."""
        return self._holders.items()

    def hold(self, lease_id: str, key: InstanceKey) -> None:
        """Record that `key` holds `lease_id` (its deadline is armed separately)."""
        self._holders[lease_id] = key

    def drop(self, lease_id: str) -> None:
        """Forget a lease whose instance is gone."""
        self._holders.pop(lease_id, None)
        self._deadlines.pop(lease_id, None)

    def deadline(self, lease_id: str) -> float | None:
        """When `lease_id` lapses unless renewed, or None when it has no deadline here."""
        return self._deadlines.get(lease_id)

    def arm(self, lease_id: str, deadline: float) -> None:
        """Set the lease's deadline; wakes the sweeper when it becomes the earliest."""
        previous = self._deadlines.get(lease_id)
        self._deadlines[lease_id] = deadline
        # Later deadlines need no heap entry: the sweeper re-arms from the dict when the old one fires.
        if previous is None or deadline < previous:
            heapq.heappush(self._heap, (deadline, lease_id))
            if self._heap[0][1] == lease_id:
                self.earlier.notify()

    def extend(self, lease_id: str, deadline: float) -> None:
        """Move a lease that came due to a later deadline (another replica renewed it)."""
        self._deadlines[lease_id] = deadline
        heapq.heappush(self._heap, (deadline, lease_id))

    def revoke(self, lease_id: str) -> float | None:
        """Forget a lease (renewals are refused from here on); returns its deadline, for `restore`."""
        self._holders.pop(lease_id, None)
        return self._deadlines.pop(lease_id, None)

    def restore(self, lease_id: str, key: InstanceKey, deadline: float | None) -> None:
        """Undo `revoke` after the removal failed to commit (a lapsed lease is due again at once)."""
        self._holders[lease_id] = key
        if deadline is not None:
            self.arm(lease_id, deadline)

    def next_deadline(self) -> float | None:
        """The earliest deadline in the heap (possibly already moved later), or None when there is none."""
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[str]:
        """Take the leases whose deadline is `now` or earlier; those renewed since are re-armed instead."""
        due: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            _, lease_id = heapq.heappop(self._heap)
            deadline = self._deadlines.get(lease_id)
            if deadline is None:
                continue
            if deadline > now:
                heapq.heappush(self._heap, (deadline, lease_id))
            else:
                due.append(lease_id)
        return due

    def requeue(self, lease_ids: Iterable[str]) -> None:
        """Put leases taken by `pop_due` back in the heap at their deadline (not evicted after all)."""
        for lease_id in lease_ids:
            deadline = self._deadlines.get(lease_id)
            if deadline is not None:
                heapq.heappush(self._heap, (deadline, lease_id))

    def share(self, lease_id: str, expires_at: float) -> None:
        """Note a renewal made here for the replica that expires leases."""
        self._renewals[lease_id] = expires_at
        self.renewed.notify()

    def take_renewals(self) -> dict[str, float]:
        """The renewals to write, now forgotten here (empty when there are none)."""
        batch, self._renewals = self._renewals, {}
        return batch

    def keep_renewals(self, batch: dict[str, float]) -> None:
        """Take back a batch whose write failed, merged with renewals made meanwhile.

        Dropped, the leader would expire a lease that was renewed.
        """
        for lease_id, expires_at in batch.items():
            if lease_id in self._holders and self._renewals.get(lease_id, 0.0) < expires_at:
                self._renewals[lease_id] = expires_at
