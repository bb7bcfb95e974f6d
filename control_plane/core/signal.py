"""A broadcast wake-up: every waiter wakes on `notify`, none is queued for later."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any


class Signal:
    """Like an Event that resets itself: waiters see the next `notify` after they started waiting."""

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None

    def notify(self) -> None:
        """Wake everyone waiting now."""
        if self._future is not None and not self._future.done():
            self._future.set_result(None)
        self._future = None

    def waiter(self) -> asyncio.Future[None]:
        """A future that completes at the next `notify`."""
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
        return self._future


# How a core waits for one of some futures or a delay: `wait_any`, or in tests a fake clock's, which
# ends the delay when the test moves that clock on (the cores read the time from the same clock).
Wait = Callable[[Sequence["asyncio.Future[Any]"], float | None], Awaitable[None]]


async def wait_any(futures: Sequence[asyncio.Future[Any]], delay_s: float | None) -> None:
    """Return when one of `futures` completes or after `delay_s` (None: no limit); never cancels them.

    With no futures it is a plain sleep of `delay_s`.
    """
    if delay_s is not None and delay_s <= 0:
        return
    if not futures:
        await asyncio.sleep(delay_s if delay_s is not None else math.inf)
        return
    # What asyncio.wait_for(asyncio.wait(..., FIRST_COMPLETED), delay_s) does, without its task, sets and
    # timeout machinery: a subscriber waits here once per frame, a publisher's stream once per request.
    for future in futures:
        if future.done():
            return
    loop = asyncio.get_running_loop()
    woken = loop.create_future()

    def wake(_: object = None) -> None:
        if not woken.done():
            woken.set_result(None)

    for future in futures:
        future.add_done_callback(wake)
    timer = loop.call_later(delay_s, wake) if delay_s is not None else None
    try:
        await woken
    finally:
        if timer is not None:
            timer.cancel()
        for future in futures:
            future.remove_done_callback(wake)
