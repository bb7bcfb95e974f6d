"""The Bus's bounds: frame sizes, gRPC message limits, the memory tail's byte budget, idle subscribers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

import grpc
import pytest

from control_plane.limits import FRAME_BYTES, MAX_BATCH_BYTES, MAX_PAYLOAD_BYTES, MAX_RPC_MESSAGE_BYTES, MIB
from control_plane.models import OutgoingMessage, message_bytes
from control_plane.server import App, running
from control_plane.settings import Settings
from hms.mgmt.v1 import bus_pb2 as pb
from hms.mgmt.v1 import bus_pb2_grpc
from hms_mgmt import BusSubscription, Client
from tests.test_bus import messages

# A frame carries about FRAME_BYTES of messages; deliveries add their ids and sequences around them.
FRAME_ENVELOPE = 64 * 1024


def big(subject: str, count: int, size: int = MAX_PAYLOAD_BYTES) -> list[pb.BusMessage]:
    """`count` messages of `size` bytes, each filled with its own index (mod 256)."""
    return [pb.BusMessage(subject=subject, data=bytes([n % 256]) * size) for n in range(count)]


async def frames(sub: BusSubscription, count: int, timeout_s: float = 10.0) -> list[pb.SubscribeResponse]:
    """Frames until they carry `count` deliveries in all (waits with a deadline)."""
    got: list[pb.SubscribeResponse] = []
    async with asyncio.timeout(timeout_s):
        while sum(len(f.deliveries) for f in got) < count:
            got.append(await sub.next_frame())
    return got


@contextlib.asynccontextmanager
async def raw_bus(address: str) -> AsyncIterator[bus_pb2_grpc.BusAsyncStub]:
    """A Bus stub on a plain gRPC channel with gRPC's own defaults (no SDK options)."""
    async with grpc.aio.insecure_channel(address) as channel:
        yield bus_pb2_grpc.BusStub(channel)


async def test_subscribe_frames_capped_by_bytes_1mib_messages(client: Client) -> None:
    # Eight frames of 1 MiB, not one of 8 MiB: over gRPC's 4 MiB a frame is refused with
    # RESOURCE_EXHAUSTED, and with explicit acks the batch came back and was refused forever.
    published = [(await client.bus.publish(m.subject, m.data)).sequence for m in big("big.x", 8)]
    async with (
        client.bus.subscribe("big.x", start=pb.START_POSITION_ALL) as plain,
        client.bus.subscribe("big.x", start=pb.START_POSITION_ALL, explicit_ack=True) as acked,
    ):
        plain_frames = await frames(plain, 8)
        first = await frames(acked, 8)
        nacked = [d.delivery_id for f in first for d in f.deliveries]
        await client.bus.nack(*nacked, delay_s=0)
        again = await frames(acked, 8)
        await client.bus.ack(*(d.delivery_id for f in again for d in f.deliveries))
        info = await client.bus.consumer_info(acked.consumer)

    for got in (plain_frames, first, again):
        assert [len(f.deliveries) for f in got] == [1] * 8
        assert [f.deliveries[0].message.sequence for f in got] == published
        assert [f.deliveries[0].message.data[:1] for f in got] == [bytes([n]) for n in range(8)]
        assert max(f.ByteSize() for f in got) <= MAX_PAYLOAD_BYTES + FRAME_ENVELOPE
    assert {f.deliveries[0].attempt for f in again} == {2}
    assert info.num_ack_pending == 0


async def test_subscribe_frames_of_smaller_messages_fill_about_1mib(client: Client) -> None:
    size = 100 * 1024
    published = await client.bus.publish_many(big("mid.x", 30, size))
    async with client.bus.subscribe("mid.x", start=pb.START_POSITION_ALL, max_batch=1000) as sub:
        got = await frames(sub, 30)

    assert [d.message.sequence for f in got for d in f.deliveries] == published
    assert [len(f.deliveries) for f in got] == [FRAME_BYTES // (size + 5)] * 3
    assert max(f.ByteSize() for f in got) <= FRAME_BYTES + FRAME_ENVELOPE


async def test_publish_many_sends_1mib_messages_in_batches_within_4mib(client: Client) -> None:
    async with client.bus.subscribe("pm.x") as sub:
        published = await client.bus.publish_many(big("pm.x", 10))
        got = await frames(sub, 10)

    assert len(published) == 10
    assert [d.message.sequence for f in got for d in f.deliveries] == published
    assert [
        d.message.data == bytes([n]) * MAX_PAYLOAD_BYTES
        for n, d in enumerate(d for f in got for d in f.deliveries)
    ] == [True] * 10


async def test_a_full_batch_with_its_envelope_passes_the_grpc_message_limit(server: App) -> None:
    # 4 MiB of messages counted as the server counts them, more than 4 MiB encoded: gRPC's default
    # limit refused it before the batch could be checked.
    headers = {f"h{n:02}": "v" * 1000 for n in range(60)}
    data = MAX_BATCH_BYTES // 4 - message_bytes(OutgoingMessage("env.x", b"", headers))
    full = pb.PublishStreamRequest(
        batch_id=1, messages=[pb.BusMessage(subject="env.x", data=b"x" * data, headers=headers)] * 4
    )
    over = pb.PublishStreamRequest(batch_id=2, messages=[*full.messages, full.messages[0]])
    huge = pb.PublishStreamRequest(batch_id=3, messages=[*over.messages, *full.messages])
    assert full.ByteSize() > 4 * MIB and over.ByteSize() < MAX_RPC_MESSAGE_BYTES < huge.ByteSize()

    async with raw_bus(server.address) as bus:
        stream = bus.PublishStream()
        await stream.write(full)
        stored = await stream.read()
        await stream.write(over)
        refused = await stream.read()
        await stream.write(huge)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stream.read()

    assert isinstance(stored, pb.PublishStreamResponse) and len(stored.sequences) == 4
    assert isinstance(refused, pb.PublishStreamResponse) and not refused.sequences
    assert [v.field for v in refused.violations] == ["messages"]
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_bus_tail_bounded_by_bytes(settings: Settings) -> None:
    # 300 messages of 256 KiB (75 MiB) through a 4 MiB budget: the tail used to keep all of them.
    size, budget = MIB // 4, 4 * MIB
    limited = replace(settings, bus=replace(settings.bus, tail_bytes=budget))
    highest = 0
    published: list[int] = []
    received: list[tuple[int, int]] = []
    async with running(limited) as app, Client(app.address) as client:
        # One message per frame, so that only the tail is under test here (frames: see above).
        async with client.bus.subscribe("tail.x", start=pb.START_POSITION_ALL, max_batch=1) as reader:
            for start in range(0, 300, 10):
                batch = [
                    pb.BusMessage(subject="tail.x", data=bytes([n % 256]) * size)
                    for n in range(start, start + 10)
                ]
                published += await client.bus.publish_many(batch)
                highest = max(highest, app.bus.log.tail_bytes)
            # The reader, which took nothing yet, reads the older messages from the store, in order.
            async with asyncio.timeout(30):
                while len(received) < 300:
                    frame = await reader.next_frame()
                    assert not frame.HasField("gap")
                    received += [(d.message.sequence, d.message.data[0]) for d in frame.deliveries]
        oldest_in_memory = app.bus.log.in_tail(published[0])

    assert highest <= budget
    assert not oldest_in_memory
    assert [s for s, _ in received] == published
    assert [first for _, first in received] == [n % 256 for n in range(300)]


async def test_idle_subscribers_cost_fast_subscriber_nothing(server: App, client: Client) -> None:
    total = 20_000
    async with contextlib.AsyncExitStack() as stack:
        idle = [await stack.enter_async_context(client.bus.subscribe("load.x")) for _ in range(200)]
        async with client.bus.subscribe("load.x") as fast:
            publisher = asyncio.create_task(client.bus.publish_many(messages("load.x", total)))
            got: list[int] = []
            async with asyncio.timeout(30):
                while len(got) < total:
                    frame = await fast.next_frame()
                    assert not frame.HasField("gap"), "the fast subscriber fell behind"
                    got += [d.message.sequence for d in frame.deliveries]
                sequences = await publisher
        handed = {v.config.name: v.delivered_sequence for v in await server.bus.consumers(True)}

    assert got == sequences
    # The control plane converted for an idle subscriber only what its stream's window took before
    # flow control held it back (64 KiB, about 1,300 of these small messages), not every message.
    assert max(handed[s.consumer] for s in idle) - sequences[0] < 2_000


async def test_readers_behind_the_tail_page_through_the_store_within_frames(settings: Settings) -> None:
    limited = replace(settings, bus=replace(settings.bus, tail_bytes=MIB))
    subjects = ["pg.a" if n % 3 else "pg.b" for n in range(60)]
    async with running(limited) as app, Client(app.address) as client:
        published = await client.bus.publish_many(
            [pb.BusMessage(subject=s, data=bytes([n]) * (128 * 1024)) for n, s in enumerate(subjects)]
        )
        assert not app.bus.log.in_tail(published[0])
        async with (
            client.bus.subscribe("pg.a", start=pb.START_POSITION_ALL, max_batch=1000) as literal,
            client.bus.subscribe("pg.*", start=pb.START_POSITION_ALL, max_batch=1000) as wildcard,
        ):
            one = await frames(literal, 40)
            every = await frames(wildcard, 60)

    assert [d.message.sequence for f in one for d in f.deliveries] == [
        s for s, subject in zip(published, subjects, strict=True) if subject == "pg.a"
    ]
    assert [d.message.sequence for f in every for d in f.deliveries] == published
    assert max(f.ByteSize() for f in [*one, *every]) <= FRAME_BYTES + FRAME_ENVELOPE
