"""Helpers for client streams that must end promptly when the control plane stops."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

from control_plane.core.signal import wait_any
from control_plane.errors import Unavailable

T = TypeVar("T")


async def until_stopped(requests: AsyncIterator[T], stopping: asyncio.Event) -> AsyncIterator[T]:
    """Yield client messages until the client closes its side or the control plane begins to stop."""
    stop_wait = asyncio.ensure_future(stopping.wait())
    read: asyncio.Future[T] | None = None
    try:
        while True:
            read = asyncio.ensure_future(anext(requests))
            await wait_any((read, stop_wait), None)
            if not read.done():
                raise Unavailable("the control plane is shutting down; reconnect to another replica or retry")
            try:
                item = read.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        # Also on cancellation (the client went away): no read may be left behind unobserved.
        for pending in (stop_wait, read):
            if pending is None:
                continue
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                    await pending
            elif not pending.cancelled():
                pending.exception()  # marks a finished read's StopAsyncIteration as seen
