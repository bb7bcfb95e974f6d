"""The change feed on its own (no server): ordering, resume bounds, slow watchers."""

from __future__ import annotations

import asyncio

import pytest

from control_plane.core.registry import ChangeFeed
from control_plane.errors import OutOfRange, ResourceExhausted, Unavailable
from control_plane.models import ChangeType, Instance, RegistryChange
from hms_mgmt import Client


def change(revision: int, service: str = "svc") -> RegistryChange:
    instance = Instance(service, f"i{revision}", "127.0.0.1:1", f"l{revision}", 10.0, 0.0, revision=revision)
    return RegistryChange(revision, ChangeType.UP, instance, 0.0)


async def test_a_watcher_that_falls_behind_is_cut_and_others_are_not() -> None:
    feed = ChangeFeed(history=100, watcher_bound=5)
    with feed.watch("", None) as slow, feed.watch("", None) as fast:
        for revision in range(1, 5):
            feed.publish(change(revision))
        assert [c.revision for c in await fast.next_batch(1.0)] == [1, 2, 3, 4]
        for revision in range(5, 10):
            feed.publish(change(revision))

        with pytest.raises(ResourceExhausted):
            await slow.next_batch(1.0)
        assert [c.revision for c in await fast.next_batch(1.0)] == [5, 6, 7, 8, 9]


async def test_resume_replays_only_matching_changes_and_refuses_forgotten_ones() -> None:
    feed = ChangeFeed(history=3, watcher_bound=100)
    for revision in range(1, 7):
        feed.publish(change(revision, service="a" if revision % 2 else "b"))

    with feed.watch("a", after_revision=3) as watcher:
        assert [c.revision for c in await watcher.next_batch(1.0)] == [5]
    with pytest.raises(OutOfRange) as caught, feed.watch("", after_revision=2):
        pass
    assert caught.value.metadata["oldest_revision"] == "3"


async def test_closing_the_feed_ends_idle_watchers() -> None:
    feed = ChangeFeed(history=10, watcher_bound=10)
    with feed.watch("", None) as watcher:
        waiting = asyncio.create_task(watcher.next_batch(30.0))
        await asyncio.sleep(0)  # waits-on-purpose: one loop turn parks the read on its event
        feed.close()
        with pytest.raises(Unavailable):
            await asyncio.wait_for(waiting, 5)


async def test_a_waiting_watcher_has_its_change_one_loop_turn_after_the_publish() -> None:
    # The commit-to-frame path of Watch: the read is woken directly, with no task in between
    # (asyncio.wait_for over an Event took three turns before Python 3.12).
    feed = ChangeFeed(history=10, watcher_bound=10)
    with feed.watch("svc", None) as watcher:
        waiting = asyncio.create_task(watcher.next_batch(30.0))
        await asyncio.sleep(0)  # waits-on-purpose: one loop turn parks the read on its future
        feed.publish(change(1))
        await asyncio.sleep(0)  # waits-on-purpose: the one turn the woken read may take
        assert waiting.done()
        assert [c.revision for c in waiting.result()] == [1]


async def test_a_cancelled_read_leaves_the_watcher_usable_and_an_idle_read_ends_empty() -> None:
    feed = ChangeFeed(history=10, watcher_bound=10)
    with feed.watch("", None) as watcher:
        cancelled = asyncio.create_task(watcher.next_batch(30.0))
        await asyncio.sleep(0)  # waits-on-purpose: one loop turn parks the read on its future
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert await watcher.next_batch(0.01) == []
        feed.publish(change(1))
        assert [c.revision for c in await watcher.next_batch(30.0)] == [1]


async def test_concurrent_registrations_reach_a_watcher_in_order_without_gaps(client: Client) -> None:
    async with client.registry.watch() as stream:
        start = stream.revision
        await asyncio.gather(
            *(
                client.registry.register(f"s{n % 7}", f"127.0.0.1:{n + 1}", instance_id=f"i{n}")
                for n in range(300)
            )
        )
        revisions: list[int] = []
        async with asyncio.timeout(10):
            async for response in stream:
                revisions += [c.revision for c in response.changes]
                if len(revisions) >= 300:
                    break

    assert revisions == list(range(start + 1, start + 301))
