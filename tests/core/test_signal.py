"""wait_any: the one real-time wait of the cores (tests elsewhere use the fake clock's)."""

from __future__ import annotations

import asyncio
import time

from control_plane.core.signal import Signal, wait_any


async def test_returns_when_one_future_completes_and_leaves_the_others_alone() -> None:
    loop = asyncio.get_running_loop()
    first, second = loop.create_future(), loop.create_future()
    loop.call_soon(first.set_result, 1)

    async with asyncio.timeout(5):
        await wait_any([first, second], None)

    assert first.done() and not second.done() and not second.cancelled()


async def test_returns_at_once_when_a_future_is_already_done_or_the_delay_is_spent() -> None:
    done = asyncio.get_running_loop().create_future()
    done.set_result(None)
    pending = Signal().waiter()

    async with asyncio.timeout(5):
        await wait_any([pending, done], None)
        await wait_any([pending], 0)

    assert not pending.done()


async def test_returns_after_the_delay_when_nothing_completes() -> None:
    pending = Signal().waiter()
    started = time.monotonic()

    async with asyncio.timeout(5):
        await wait_any([pending], 0.02)

    assert time.monotonic() - started >= 0.015
    assert not pending.done()


async def test_a_cancelled_wait_cancels_none_of_its_futures() -> None:
    pending = Signal().waiter()
    waiting = asyncio.ensure_future(wait_any([pending], None))
    await asyncio.sleep(0)  # waits-on-purpose: one loop pass lets it run to its wait

    waiting.cancel()
    async with asyncio.timeout(5):
        await asyncio.gather(waiting, return_exceptions=True)

    assert waiting.cancelled() and not pending.done()
