"""The durable timers a replica has armed in memory: when to try firing them (the store's row decides)."""

from __future__ import annotations

import sys

from control_plane.core.deadlines import Deadlines


class Timers:
    """Timers by (process id, name): armed and cleared with the transitions that commit them.

    Where replicas share the store, a process's next transition may run on another replica and clear a
    timer armed here; this replica learns only that the process ended (its final Bus event), so timers
    are also indexed by process, to be forgotten together then. A process has one timer name there, as a
    string, until it has two (a set of strings: ~220 bytes more, where most processes wait on one timer).
    """

    def __init__(self, *, by_process: bool) -> None:
        self._deadlines: Deadlines[tuple[str, str]] = Deadlines()
        self._names: dict[str, str | set[str]] | None = {} if by_process else None

    def __len__(self) -> int:
        """Timers armed."""
        return len(self._deadlines)

    @property
    def footprint(self) -> int:
        """Entries held in memory (see Deadlines.footprint)."""
        return self._deadlines.footprint

    def arm(self, process_id: str, name: str, due: float) -> bool:
        """Arm or move a timer; True when it is now the earliest."""
        # A name is one of few (`wait:<step>`, `retry:<step>`, ...), built anew by each transition: every
        # process waiting with a timeout kept a copy of its own (~60 bytes) as long as its timer.
        name = sys.intern(name)
        if self._names is not None:
            names = self._names.get(process_id)
            if names is None:
                self._names[process_id] = name
            elif isinstance(names, set):
                names.add(name)
            elif names != name:
                self._names[process_id] = {names, name}
        return self._deadlines.set((process_id, name), due)

    def rearm(self, process_id: str, name: str, due: float) -> None:
        """Arm again a timer whose firing failed (the store failing), unless a transition armed it meanwhile."""
        if (process_id, name) not in self._deadlines:
            self.arm(process_id, name, due)

    def clear(self, process_id: str, name: str) -> None:
        """A transition cleared the timer: forget it now, not when it would have fired."""
        self._deadlines.discard((process_id, name))
        self._unindex(process_id, name)

    def forget_process(self, process_id: str) -> None:
        """The process ended (on whichever replica): none of its timers can fire any more."""
        if self._names is None:
            return
        names = self._names.pop(process_id, None)
        for name in (names,) if isinstance(names, str) else names or ():
            self._deadlines.discard((process_id, name))

    def pop_due(self, now: float, limit: int) -> list[tuple[str, str]]:
        """(process id, name) of up to `limit` timers due by `now`, earliest first; they are forgotten."""
        due = self._deadlines.pop_due(now, limit)
        for process_id, name in due:
            self._unindex(process_id, name)
        return due

    def next_due(self) -> float | None:
        """When to look again (None: no timer is armed)."""
        return self._deadlines.next_due()

    def _unindex(self, process_id: str, name: str) -> None:
        if self._names is None:
            return
        names = self._names.get(process_id)
        if names == name:
            del self._names[process_id]
        elif isinstance(names, set):
            names.discard(name)
            if len(names) == 1:
                self._names[process_id] = names.pop()
