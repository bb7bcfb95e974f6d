"""A client's request waits its patience for room in a queue; what it spawns waits as long as it takes; and
marking a request's task leaves nothing for the cyclic collector."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from control_plane.backpressure import limit_wait, patience


@pytest.fixture
def no_collector() -> Iterator[None]:
    """The cyclic collector off: what is freed must be freed by reference counting alone."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


async def test_only_the_request_task_is_bound_by_its_patience() -> None:
    async def spawned() -> float | None:
        return patience()

    async def request() -> tuple[float | None, float | None]:
        limit_wait(0.25)
        return patience(), await asyncio.ensure_future(spawned())

    assert await asyncio.ensure_future(request()) == (0.25, None)
    assert patience() is None  # the test's own task was not marked


async def test_a_request_task_is_freed_as_soon_as_it_ends(no_collector: None) -> None:
    """The task is held weakly by its own context: a strong reference was a cycle per request (task ->
    context -> task), left with everything its frames held to the collector, which freed them in bursts
    that paused the loop."""

    async def request() -> float | None:
        limit_wait(0.25)
        return patience()

    task = asyncio.ensure_future(request())
    assert await task == 0.25
    gone = weakref.ref(task)
    del task
    # One loop turn, not time: the callback that resumed this test holds the task until it returns.
    await asyncio.sleep(0)  # waits-on-purpose
    assert gone() is None
