"""The registry's change feed: recent history for resuming, bounded queues for live watchers."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterator
from contextlib import contextmanager

from control_plane.errors import OutOfRange, ResourceExhausted, Unavailable
from control_plane.models import RegistryChange


class Watcher:
    """One watch: changes of one service (or all) after a revision, in order, never blocking the feed."""

    def __init__(self, service: str, bound: int) -> None:
        self.service = service
        self._bound = bound
        self._pending: collections.deque[RegistryChange] = collections.deque()
        # The future the reader waits on, if it waits: woken directly by `offer`, not through an
        # Event under wait_for (which, before Python 3.12, runs the wait as a task of its own: two
        # more turns of the loop between a commit and the watcher's frame, for every watcher).
        self._waiter: asyncio.Future[None] | None = None
        self._overflowed = False
        self._closed = False

    def close(self) -> None:
        """End the watch: the next read raises Unavailable so the client reconnects and resumes."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def wants(self, change: RegistryChange) -> bool:
        """Whether this watcher's filter selects `change`."""
        return not self.service or change.instance.service == self.service

    def offer(self, change: RegistryChange) -> None:
        """Queue a change; past the bound the watcher is cut instead of slowing the feed (etcd victims)."""
        if self._overflowed:
            return
        if len(self._pending) >= self._bound:
            self._overflowed = True
            self._pending.clear()
        else:
            self._pending.append(change)
        self._wake()

    async def next_batch(self, idle_timeout: float) -> list[RegistryChange]:
        """Every queued change (possibly none, after `idle_timeout` seconds of quiet)."""
        if not self._pending and not self._overflowed and not self._closed:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(idle_timeout, _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
            if not self._pending and not self._overflowed and not self._closed:
                return []  # idle for `idle_timeout`
        if self._closed:
            raise Unavailable(
                "the control plane is shutting down; resume the watch from the last revision seen"
            )
        if self._overflowed:
            raise ResourceExhausted(
                f"watcher fell more than {self._bound} changes behind; resume from the last revision seen"
            )
        batch = list(self._pending)
        self._pending.clear()
        return batch


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class ChangeFeed:
    """Fans each committed change out to watchers and keeps the last `history` changes for resuming."""

    def __init__(self, history: int, watcher_bound: int) -> None:
        self._history: collections.deque[RegistryChange] = collections.deque(maxlen=history)
        self._watchers: set[Watcher] = set()
        self._watcher_bound = watcher_bound
        self.revision = 0

    def load(self, revision: int, changes: list[RegistryChange]) -> None:
        """Start from stored state (after a restart)."""
        self.revision = revision
        self._history.clear()
        self._history.extend(changes)

    @property
    def watcher_count(self) -> int:
        """Open watchers."""
        return len(self._watchers)

    @property
    def oldest_resumable(self) -> int:
        """The smallest `after_revision` a watcher may resume from without missing a change."""
        return self._history[0].revision - 1 if self._history else self.revision

    def close(self) -> None:
        """End every watch (shutdown); new watches are still accepted until the server stops."""
        for watcher in self._watchers:
            watcher.close()

    def publish(self, change: RegistryChange) -> None:
        """Record a committed change and hand it to every interested watcher."""
        self.revision = change.revision
        self._history.append(change)
        for watcher in self._watchers:
            if watcher.wants(change):
                watcher.offer(change)

    @contextmanager
    def watch(self, service: str, after_revision: int | None) -> Iterator[Watcher]:
        """Register a watcher; with `after_revision`, first replay every later change still kept."""
        watcher = Watcher(service, self._watcher_bound)
        if after_revision is not None:
            if after_revision < self.oldest_resumable:
                raise OutOfRange(
                    f"revision {after_revision} is no longer kept; the oldest resumable revision is "
                    f"{self.oldest_resumable}: start a new watch with a snapshot",
                    oldest_revision=str(self.oldest_resumable),
                    current_revision=str(self.revision),
                )
            for change in self._history:
                if change.revision > after_revision and watcher.wants(change):
                    watcher.offer(change)
        self._watchers.add(watcher)
        try:
            yield watcher
        finally:
            self._watchers.discard(watcher)
