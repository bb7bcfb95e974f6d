"""A fake clock for the cores' timing rules: time moves only when the test moves it, and never in real time.

The cores take `wall_clock`, `monotonic` and `wait` (control_plane.core.signal.Wait); given this
clock's three, a TTL of 10 s or a backoff of 120 s passes the moment the test says so. Moving the
clock fires each wait that comes due on the way at its own time, then returns once everything it
set off has run (the waiting tasks are waiting again, or finished), store commits included: what a
test asserts next is what the core did by then, not a race with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from control_plane.core.signal import Signal

# The wall clock starts here (2023-11-14T22:13:20Z): far from zero, as a real one.
EPOCH = 1_700_000_000.0
# Real seconds a core may take to finish what a moment of fake time set off (store commits on a
# loaded machine included) before the test fails instead of hanging.
SETTLE_TIMEOUT_S = 10.0
# Waits fired by one move, at most: a core that keeps asking to be woken "now" is a bug, not a hang.
_MAX_FIRINGS = 100_000


@dataclass(slots=True)
class _Waiting:
    """A task inside `FakeClock.wait`: what it waits for, and when its delay ends (None: never)."""

    futures: list[asyncio.Future[Any]]
    due: float | None
    timer: asyncio.Future[None] | None


class FakeClock:
    """Wall and monotonic time that move only by `advance`/`advance_to`, and the waits timed by them."""

    def __init__(self) -> None:
        self.elapsed = 0.0
        self._waiting: dict[asyncio.Task[Any], _Waiting] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._changed = Signal()

    def wall(self) -> float:
        """Wall-clock time (seconds since 1970), for `wall_clock=`."""
        return EPOCH + self.elapsed

    def monotonic(self) -> float:
        """Monotonic time, for `monotonic=`."""
        return self.elapsed

    def at(self, elapsed: float) -> float:
        """The wall-clock time `elapsed` seconds after the start."""
        return EPOCH + elapsed

    async def wait(self, futures: Sequence[asyncio.Future[Any]], delay_s: float | None) -> None:
        """The cores' `Wait`: return when one of `futures` completes or `delay_s` of this clock passed."""
        if delay_s is not None and delay_s <= 0:
            return
        task = asyncio.current_task()
        assert task is not None
        if task not in self._tasks:
            self._tasks.add(task)
            task.add_done_callback(self._finished)
        timer = asyncio.get_running_loop().create_future() if delay_s is not None else None
        waiting = _Waiting([*futures, *([timer] if timer is not None else [])], None, timer)
        if not waiting.futures:
            raise AssertionError("a wait for nothing, without end")
        if delay_s is not None:
            waiting.due = self.elapsed + delay_s
        self._waiting[task] = waiting
        self._changed.notify()
        try:
            await asyncio.wait(waiting.futures, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if self._waiting.get(task) is waiting:
                del self._waiting[task]
            if timer is not None:
                timer.cancel()

    async def advance(self, seconds: float) -> None:
        """Move time on by `seconds` (see `advance_to`)."""
        await self.advance_to(self.elapsed + seconds)

    async def advance_to(self, elapsed: float) -> None:
        """Move time on to `elapsed`, firing every wait that comes due on the way at its own time."""
        assert elapsed >= self.elapsed, "time does not go back"
        await self.settle()
        for _ in range(_MAX_FIRINGS):
            dues = [w.due for w in self._waiting.values() if w.due is not None and w.due <= elapsed]
            if not dues:
                break
            self.elapsed = max(self.elapsed, min(dues))
            for waiting in list(self._waiting.values()):
                due, timer = waiting.due, waiting.timer
                if due is not None and due <= self.elapsed and timer is not None and not timer.done():
                    timer.set_result(None)
            await self.settle()
        else:
            raise AssertionError(f"waits keep coming due at {self.elapsed}: a core is spinning")
        self.elapsed = elapsed

    async def settle(self, waiting: int = 0) -> None:
        """Return once every task that waits on this clock waits again (or has finished).

        `waiting` is how many tasks must be waiting by then: loops just started have not waited yet.
        """
        me = asyncio.current_task()
        async with asyncio.timeout(SETTLE_TIMEOUT_S):
            while True:
                changed = self._changed.waiter()
                if self._idle(me) and len(self._waiting) >= waiting:
                    return
                await changed

    def next_due(self) -> float | None:
        """When the earliest timed wait ends (None: nothing waits for a time)."""
        return min((w.due for w in self._waiting.values() if w.due is not None), default=None)

    def _idle(self, me: asyncio.Task[Any] | None) -> bool:
        for task in self._tasks:
            if task is me or task.done():
                continue
            waiting = self._waiting.get(task)
            if waiting is None or any(f.done() for f in waiting.futures):
                return False  # running, or woken and about to run
        return True

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._changed.notify()
