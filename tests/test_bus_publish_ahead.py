"""A PublishStream stores many of its requests at once, so a slow commit does not queue them.

A publisher sending one message per request at 1,000/s has as many requests in flight as arrive
while a commit is on disk. With the stream storing only 4 at a time, a machine whose fsync took
over 4 ms fell behind for good (the bench saw publish round trips of 190 ms at 1,000 msgs/s).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import grpc

from control_plane.models import AppendResult, OutgoingMessage
from control_plane.server import App
from control_plane.servicers.bus import _Budget
from hms.mgmt.v1 import bus_pb2 as pb
from hms.mgmt.v1 import bus_pb2_grpc

REQUESTS = 64


async def test_the_requests_of_a_stream_are_stored_together_while_a_commit_is_slow(server: App) -> None:
    release = threading.Event()
    entered = threading.Event()

    def slow_commit(conn: Any) -> None:
        """Holds the store's writer as a slow disk would."""
        entered.set()
        release.wait(30)

    log = server.bus.log
    append = log.append
    storing = 0
    all_storing = asyncio.Event()

    async def counted(batch: list[OutgoingMessage], **options: Any) -> AppendResult:
        nonlocal storing
        storing += 1
        if storing == REQUESTS:
            all_storing.set()
        return await append(batch, **options)

    log.append = counted  # type: ignore[method-assign]  # a spy: the real append does the work
    held = asyncio.ensure_future(server.store._writer.submit(slow_commit, slow=True))  # type: ignore[attr-defined]
    try:
        await asyncio.to_thread(entered.wait, 10)
        async with grpc.aio.insecure_channel(server.address) as channel:
            call = bus_pb2_grpc.BusStub(channel).PublishStream()
            for index in range(REQUESTS):
                message = pb.BusMessage(subject="ahead.one", data=b"x")
                await call.write(pb.PublishStreamRequest(batch_id=index, messages=[message]))
            async with asyncio.timeout(10):
                await all_storing.wait()  # every request is being stored while the commit is held
            release.set()
            answers: list[pb.PublishStreamResponse] = [await call.read() for _ in range(REQUESTS)]  # type: ignore[misc]
            await call.done_writing()
    finally:
        release.set()
        await held
    assert [a.batch_id for a in answers] == list(range(REQUESTS))
    sequences = [a.sequences[0] for a in answers]
    assert sequences == sorted(sequences) and len(set(sequences)) == REQUESTS
    assert [a.subject_sequences[0] for a in answers] == list(range(1, REQUESTS + 1))


async def test_a_stream_holds_at_most_its_byte_budget_of_requests_but_always_one() -> None:
    budget = _Budget(10)
    await budget.take(6)
    second = asyncio.ensure_future(budget.take(6))
    await asyncio.sleep(0)  # waits-on-purpose: one loop pass lets it run to its wait
    assert not second.done()  # 12 bytes would pass the budget of 10
    budget.given(6)
    async with asyncio.timeout(10):
        await second
    budget.given(6)
    async with asyncio.timeout(10):
        await budget.take(25)  # larger than the whole budget, let in alone
