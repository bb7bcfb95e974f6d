"""Long-running background loops outlive a failing store: they log, back off and carry on.

A store error raised inside a loop (UNAVAILABLE while PostgreSQL fails over, a full disk) would
otherwise end the task group the server serves in. Every loop runs its passes through a `Guard`:
a failed pass is logged with the loop's name, the loop waits a capped, exponentially growing delay
and runs again; the work it had to do is still to do, so it catches up once the store answers.
Cancellation (shutdown) always propagates.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence

from control_plane.core.signal import Signal, Wait, wait_any

logger = logging.getLogger(__name__)

# The first retry comes quickly (a failover takes seconds; a lost race, milliseconds); the delay
# doubles with each failure in a row up to the cap, so an outage costs a retry every few seconds.
INITIAL_DELAY_S = 0.05
MAX_DELAY_S = 5.0


def backoff_delay(failures: int, *, initial_s: float = INITIAL_DELAY_S, cap_s: float = MAX_DELAY_S) -> float:
    """The wait after `failures` failures in a row (1 for the first), with jitter so loops do not retry in step."""
    delay = min(cap_s, initial_s * 2.0 ** min(max(failures - 1, 0), 30))
    return delay * random.uniform(0.8, 1.0)


class Guard:
    """The failure policy of one loop: a failed pass is logged and followed by a backoff, never raised."""

    def __init__(
        self,
        name: str,
        stop: asyncio.Event | None = None,
        *,
        initial_s: float = INITIAL_DELAY_S,
        cap_s: float = MAX_DELAY_S,
        wait: Wait = wait_any,
    ) -> None:
        self.name = name
        self._stop = stop
        self._wait = wait  # the core's clock: a fake one in tests
        self._initial_s = initial_s
        self._cap_s = cap_s
        # Failures in a row; the backoff grows with it and a success resets it.
        self.failures = 0

    async def run(self, body: Callable[[], Awaitable[object]]) -> bool:
        """Run one pass; True when it succeeded, False after logging its failure and backing off."""
        try:
            await body()
        except Exception as exc:
            await self.back_off(self.failed(exc))
            return False
        self.succeeded()
        return True

    def failed(self, exc: BaseException) -> float:
        """Log a failure (the whole traceback once per run of failures) and return the delay before the next try."""
        self.failures += 1
        delay = backoff_delay(self.failures, initial_s=self._initial_s, cap_s=self._cap_s)
        if self.failures == 1:
            logger.error("%s failed; retrying in %.2f s", self.name, delay, exc_info=exc)
        else:
            logger.warning(
                "%s failed again (%d in a row): %s; retrying in %.2f s", self.name, self.failures, exc, delay
            )
        return delay

    def succeeded(self) -> None:
        """A pass went through: the next failure starts the backoff over."""
        if self.failures:
            logger.info("%s recovered after %d failed attempts", self.name, self.failures)
            self.failures = 0

    async def back_off(self, delay_s: float) -> None:
        """Wait `delay_s`, or less if the loop is told to stop."""
        if self._stop is None:
            await self._wait([], delay_s)
            return
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await self._wait([stopping], delay_s)
        finally:
            stopping.cancel()


async def on_signal(
    stop: asyncio.Event,
    work: Callable[[], Awaitable[None]],
    signals: Sequence[Signal],
    every_s: float | None,
    what: str,
) -> None:
    """Run `work` now and again after each notify of `signals` (or `every_s`), until `stop` is set.

    The waits are taken before `work` runs, so a notify during it is not missed. A failure is
    logged and `work` runs again after the backoff, whether or not a signal comes.
    """
    guard = Guard(what, stop)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            wakeups = [s.waiter() for s in signals]
            if await guard.run(work):
                await wait_any([*wakeups, stopping], every_s)
    finally:
        stopping.cancel()


async def supervise(name: str, stop: asyncio.Event, loop: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `loop(stop)` until it returns; should it raise, log, back off and run it again.

    For loops that keep their position in their object (a cursor, a heap), so that starting them
    again resumes where they were. A run that lasted longer than the cap counts as a recovery.
    """
    guard = Guard(name, stop)
    while not stop.is_set():
        started = asyncio.get_running_loop().time()
        try:
            await loop(stop)
            return
        except Exception as exc:
            if asyncio.get_running_loop().time() - started > MAX_DELAY_S:
                guard.succeeded()
            await guard.back_off(guard.failed(exc))
