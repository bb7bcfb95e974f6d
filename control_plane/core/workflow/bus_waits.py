"""Steps that wait for a Bus message: each message on the log goes to the waits whose pattern it matches.

Waits are indexed by subject: a message looks up the waits on its exact subject in a dict and checks
only the distinct wildcard patterns, never every wait one by one (20,000 processes waiting for their own
order's payment made each message cost 20,000 checks, seconds of event loop per batch).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from control_plane.core.bus.log import MessageLog
from control_plane.core.bus.subjects import Pattern, compile_pattern
from control_plane.core.signal import Signal, wait_any
from control_plane.errors import NotFound
from control_plane.models import StoredMessage

logger = logging.getLogger(__name__)

# (process id, step id, pattern, messages after this log sequence count), as the store keeps them.
StoredWait = tuple[str, str, str, int]
Deliver = Callable[[str, str, StoredMessage], Awaitable[None]]
# A wait: (process id, step id).
Key = tuple[str, str]
T = TypeVar("T")

_EVERYTHING = compile_pattern(">")
_READ = 1000


class WaitIndex:
    """Waits by the subjects they match: literal patterns in a dict, wildcard ones grouped by pattern."""

    def __init__(self) -> None:
        self._waits: dict[Key, tuple[Pattern, int]] = {}
        self._literal: dict[str, dict[Key, int]] = {}
        # Few distinct wildcard patterns (one per wait_signal step of a definition), each with many waits.
        self._wildcard: dict[Pattern, dict[Key, int]] = {}

    def __len__(self) -> int:
        return len(self._waits)

    def __contains__(self, key: Key) -> bool:
        return key in self._waits

    def keys(self) -> set[Key]:
        """Every wait."""
        return set(self._waits)

    def add(self, key: Key, pattern: Pattern, after: int) -> None:
        """Index a wait (replacing the one with the same key)."""
        self.remove(key)
        self._waits[key] = (pattern, after)
        if pattern.literal:
            self._literal.setdefault(pattern.text, {})[key] = after
        else:
            self._wildcard.setdefault(pattern, {})[key] = after

    def remove(self, key: Key) -> None:
        """Forget a wait; nothing happens when there is none."""
        entry = self._waits.pop(key, None)
        if entry is None:
            return
        pattern, _ = entry
        if pattern.literal:
            _discard(self._literal, pattern.text, key)
        else:
            _discard(self._wildcard, pattern, key)

    def matching(self, message: StoredMessage) -> list[Key]:
        """The waits that want `message`: their pattern matches and the message is after their start."""
        subject, sequence = message.subject, message.sequence
        found = [key for key, after in self._literal.get(subject, {}).items() if sequence > after]
        for pattern, group in self._wildcard.items():
            if pattern.matches(subject):
                found.extend(key for key, after in group.items() if sequence > after)
        return found


def _discard(groups: dict[T, dict[Key, int]], index: T, key: Key) -> None:
    group = groups[index]
    del group[key]
    if not group:
        del groups[index]


class BusWaits:
    """Follows the log from the oldest position any wait needs; the step's correlation decides on each message."""

    def __init__(self, log: MessageLog, deliver: Deliver) -> None:
        self._log = log
        self._deliver = deliver
        self._waits = WaitIndex()
        self._cursor = 0
        self._changed = Signal()

    def load(self, stored: list[StoredWait]) -> None:
        """Start from the stored waits (at start-up)."""
        self._cursor = self._log.last_sequence
        for process_id, step_id, pattern, after in stored:
            self.add(process_id, step_id, pattern, after)

    def add(self, process_id: str, step_id: str, pattern: str, after: int) -> None:
        """Wait for messages after `after` matching `pattern`."""
        self._waits.add((process_id, step_id), compile_pattern(pattern), after)
        # Messages after `after` may already have been scanned: look at them again.
        self._cursor = min(self._cursor, after)
        self._changed.notify()

    def remove(self, process_id: str, step_id: str) -> None:
        """Stop waiting (the step ended, or the wait was cleared)."""
        self._waits.remove((process_id, step_id))

    async def adopt(self, read: Callable[[], Awaitable[list[StoredWait]]]) -> None:
        """Match the stored waits: take on those other replicas started, drop those that ended elsewhere."""
        before = self._waits.keys()  # a wait added while the store is read is newer than what it returns
        stored = {(p, s): (pattern, after) for p, s, pattern, after in await read()}
        for key in before - stored.keys():
            self._waits.remove(key)
        for (process_id, step_id), (pattern, after) in stored.items():
            if (process_id, step_id) not in self._waits:
                self.add(process_id, step_id, pattern, after)

    async def run(self, stop: asyncio.Event) -> None:
        """Hand each message to the waits it matches until `stop` is set."""
        stopping = asyncio.ensure_future(stop.wait())
        log = self._log
        try:
            while not stop.is_set():
                if not self._waits:
                    self._cursor = log.last_sequence
                    await wait_any([self._changed.waiter(), stopping], None)
                    continue
                start = self._cursor
                messages, scanned = await log.read(start, _READ, _EVERYTHING)
                for message in messages:
                    for process_id, step_id in self._waits.matching(message):
                        await self._offer(process_id, step_id, message)
                # A wait added meanwhile may have moved the cursor back; otherwise go on from what was scanned.
                if self._cursor == start:
                    self._cursor = scanned
                if not messages and self._cursor >= log.last_sequence:
                    await log.wait_beyond(self._cursor, [self._changed.waiter(), stopping], None)
        finally:
            stopping.cancel()

    async def _offer(self, process_id: str, step_id: str, message: StoredMessage) -> None:
        try:
            await self._deliver(process_id, step_id, message)
        except NotFound:
            self._waits.remove((process_id, step_id))
