"""The Bus through a real server and the SDK: delivery, queue groups, acks, redelivery, replay."""

from __future__ import annotations

import asyncio
import collections
from datetime import UTC, datetime

import pytest

from control_plane.errors import FailedPrecondition, InvalidArgument
from hms.mgmt.v1 import bus_pb2 as pb
from hms_mgmt import BusSubscription, Client, Delivery, Published, StoredMessage


async def take(sub: BusSubscription, count: int, timeout_s: float = 10.0) -> list[Delivery]:
    """Exactly `count` deliveries (waits with a deadline)."""
    got: list[Delivery] = []
    async with asyncio.timeout(timeout_s):
        while len(got) < count:
            got.append(await anext(sub))
    return got


def messages(subject: str, count: int, prefix: str = "m") -> list[pb.BusMessage]:
    return [pb.BusMessage(subject=subject, data=f"{prefix}{n}".encode()) for n in range(count)]


async def test_publish_reaches_a_live_subscriber_with_its_sequences(client: Client) -> None:
    async with client.bus.subscribe("permit.*.submitted") as sub:
        first = await client.bus.publish(
            "permit.a1.submitted", b"hello", headers={"k": "v"}, content_type="text/plain"
        )
        await client.bus.publish("permit.a1.approved", b"not for us")
        second = await client.bus.publish("permit.a2.submitted", b"again")
        got = await take(sub, 2)

    assert [d.message.data for d in got] == [b"hello", b"again"]
    assert [d.message.sequence for d in got] == [first.sequence, second.sequence]
    assert got[0].message.headers == {"k": "v"}
    assert got[0].message.content_type == "text/plain"
    assert (got[0].message.subject_sequence, got[1].message.subject_sequence) == (1, 1)
    assert all(d.attempt == 1 and not d.delivery_id for d in got)


async def test_publish_and_deliveries_are_typed_values_keeping_their_messages(client: Client) -> None:
    async with client.bus.subscribe("typed.*", durable="typed", explicit_ack=True) as sub:
        published = await client.bus.publish("typed.a", b"x", message_id="typed-1")
        again = await client.bus.publish("typed.a", b"x", message_id="typed-1")
        (delivery,) = await take(sub, 1)
        acked = await client.bus.ack(delivery.delivery_id)

    assert isinstance(published, Published) and not published.duplicate and again.duplicate
    assert again.sequence == published.sequence and published.published_at is not None
    assert isinstance(published.proto, pb.PublishResponse) and published.proto.sequence == published.sequence
    assert isinstance(delivery, Delivery) and isinstance(delivery.message, StoredMessage)
    assert (delivery.message.subject, delivery.message.data, delivery.attempt) == ("typed.a", b"x", 1)
    assert delivery.message.published_at == published.published_at and delivery.consumer == sub.consumer
    assert isinstance(delivery.proto, pb.Delivery) and delivery.proto.delivery_id == delivery.delivery_id
    assert acked == [pb.ACK_RESULT_ACCEPTED]


async def test_publish_stream_batches_are_stored_in_order(client: Client) -> None:
    async with client.bus.subscribe("orders.>") as sub:
        sequences = await client.bus.publish_many(messages("orders.eu", 1200), batch_size=500)
        got = await take(sub, 1200)

    assert sequences == sorted(sequences) and len(set(sequences)) == 1200
    assert [d.message.sequence for d in got] == sequences
    assert [d.message.subject_sequence for d in got] == list(range(1, 1201))


async def test_a_frame_of_many_varied_deliveries_carries_every_message_whole(client: Client) -> None:
    # Frames of many deliveries are built from templates of the fields runs of them share: deliveries
    # that differ in subject, headers, content type, id and attempt must each arrive exactly as published.
    published = [
        pb.BusMessage(
            subject=f"mixed.{n % 3}",
            data=bytes([n]) * n,
            headers={"n": str(n)} if n % 4 == 0 else {},
            content_type="text/plain" if n % 5 == 0 else "",
            message_id=f"mixed-{n}" if n % 2 else "",
        )
        for n in range(40)
    ]
    sequences = await client.bus.publish_many(published)
    wanted = [
        (m.subject, m.data, dict(m.headers), m.content_type, m.message_id, sequence)
        for m, sequence in zip(published, sequences, strict=True)
    ]
    for explicit in (False, True):
        durable = "mixed" if explicit else ""
        async with client.bus.subscribe(
            "mixed.>", durable=durable, explicit_ack=explicit, start=pb.START_POSITION_ALL
        ) as sub:
            got = await take(sub, 40)
        assert [
            (m.subject, m.data, m.headers, m.content_type, m.message_id, m.sequence)
            for m in (d.message for d in got)
        ] == wanted
        assert [d.message.subject_sequence for d in got] == [n // 3 + 1 for n in range(40)]
        assert len({d.message.published_at for d in got}) == 1 and got[0].message.published_at is not None
        assert all(d.attempt == 1 and d.consumer == sub.consumer for d in got)
        ids = [d.delivery_id for d in got]
        assert len(set(ids)) == 40 if explicit else ids == [""] * 40


async def test_queue_group_members_each_get_every_message_once(client: Client) -> None:
    total = 3000
    received: collections.Counter[bytes] = collections.Counter()
    per_member: list[int] = []

    acked = 0

    async def member(sub: BusSubscription, done: asyncio.Event) -> None:
        nonlocal acked
        count = 0
        while not done.is_set():
            frame = await sub.next_frame()
            ids = [d.delivery_id for d in frame.deliveries]
            received.update(d.message.data for d in frame.deliveries)
            count += len(ids)
            if ids:
                await client.bus.ack(*ids)
                acked += len(ids)
            # Done once every delivery is acknowledged (members still acking must not be cut off).
            if acked >= total:
                done.set()
        per_member.append(count)

    async with (
        client.bus.subscribe(
            "jobs.>", durable="workers", queue_group="g", explicit_ack=True, max_batch=50
        ) as a,
        client.bus.subscribe(
            "jobs.>", durable="workers", queue_group="g", explicit_ack=True, max_batch=50
        ) as b,
        client.bus.subscribe(
            "jobs.>", durable="workers", queue_group="g", explicit_ack=True, max_batch=50
        ) as c,
    ):
        done = asyncio.Event()
        members = [asyncio.create_task(member(s, done)) for s in (a, b, c)]
        await client.bus.publish_many(messages("jobs.build", total), batch_size=100)
        async with asyncio.timeout(30):
            await done.wait()
        for task in members:
            task.cancel()
        await asyncio.gather(*members, return_exceptions=True)

    assert len(received) == total
    assert set(received.values()) == {1}
    info = await client.bus.consumer_info("workers")
    assert info.num_ack_pending == 0


async def test_a_redelivery_is_attempt_2_and_makes_the_first_delivery_id_stale(client: Client) -> None:
    # Redelivery after a missed ack deadline, at its time, is tests/core/test_bus_timing.py's.
    async with client.bus.subscribe("t.redeliver", explicit_ack=True) as sub:
        await client.bus.publish("t.redeliver", b"x")
        (first,) = await take(sub, 1)
        await client.bus.nack(first.delivery_id, delay_s=0)
        (second,) = await take(sub, 1)
        results = await client.bus.ack(first.delivery_id, second.delivery_id, second.delivery_id)

    assert (first.attempt, second.attempt) == (1, 2)
    assert first.message.sequence == second.message.sequence
    assert results == [pb.ACK_RESULT_STALE, pb.ACK_RESULT_ACCEPTED, pb.ACK_RESULT_ALREADY_ACKED]


async def test_max_deliveries_sends_the_message_to_the_dead_letter_subject(client: Client) -> None:
    async with client.bus.subscribe("$DLQ.>") as dead:
        async with client.bus.subscribe(
            "t.poison", durable="poison", explicit_ack=True, max_deliveries=2, backoff_s=[0]
        ) as sub:
            await client.bus.publish("t.poison", b"bad", headers={"app": "1"})
            (one,) = await take(sub, 1)
            await client.bus.nack(one.delivery_id, delay_s=0)
            (two,) = await take(sub, 1)
            await client.bus.nack(two.delivery_id, delay_s=0)
            (letter,) = await take(dead, 1)
        info = await client.bus.consumer_info("poison")

    assert two.attempt == 2
    assert letter.message.subject == "$DLQ.poison"
    assert letter.message.data == b"bad"
    assert letter.message.headers["hms-dlq-subject"] == "t.poison"
    assert letter.message.headers["hms-dlq-attempts"] == "2"
    assert letter.message.headers["app"] == "1"
    assert (info.num_ack_pending, info.num_dead_lettered) == (0, 1)


async def test_terminate_dead_letters_at_once_with_the_reason(client: Client) -> None:
    async with (
        client.bus.subscribe("$DLQ.>") as dead,
        client.bus.subscribe("t.term", explicit_ack=True) as sub,
    ):
        await client.bus.publish("t.term", b"x")
        (one,) = await take(sub, 1)
        await client.bus.settle(
            [pb.AckItem(delivery_id=one.delivery_id, action=pb.ACK_ACTION_TERMINATE, reason="bad input")]
        )
        (letter,) = await take(dead, 1)

    assert letter.message.headers["hms-dlq-reason"] == "terminated: bad input"


async def test_durable_consumer_resumes_after_reconnecting(client: Client) -> None:
    async with client.bus.subscribe("r.>", durable="resumer", explicit_ack=True) as sub:
        await client.bus.publish_many(messages("r.x", 4))
        got = await take(sub, 4)
        await client.bus.ack(*(d.delivery_id for d in got[:2]))
    await client.bus.publish_many(messages("r.x", 2, prefix="late"))

    async with client.bus.subscribe("r.>", durable="resumer", explicit_ack=True) as sub:
        assert not sub.ready.created
        again = await take(sub, 4)

    assert [d.message.data for d in again] == [b"m2", b"m3", b"late0", b"late1"]
    assert [d.attempt for d in again] == [2, 2, 1, 1]


async def test_replay_from_sequence_and_from_time(client: Client) -> None:
    before = await client.bus.publish_many(messages("replay.a", 3))
    middle = datetime.now(UTC)
    after = await client.bus.publish_many(messages("replay.a", 2, prefix="n"))

    async with client.bus.subscribe(
        "replay.>", start=pb.START_POSITION_FROM_SEQUENCE, start_sequence=before[1]
    ) as sub:
        from_sequence = await take(sub, 4)
    async with client.bus.subscribe("replay.>", start=pb.START_POSITION_FROM_TIME, start_time=middle) as sub:
        from_time = await take(sub, 2)
    async with client.bus.subscribe("replay.>", start=pb.START_POSITION_ALL) as sub:
        everything = await take(sub, 5)

    assert [d.message.sequence for d in from_sequence] == [*before[1:], *after]
    assert [d.message.sequence for d in from_time] == after
    assert [d.message.sequence for d in everything] == [*before, *after]


async def test_message_id_deduplicates_within_the_window(client: Client) -> None:
    first = await client.bus.publish("d.x", b"once", message_id="order-42")
    again = await client.bus.publish("d.x", b"twice", message_id="order-42")
    other = await client.bus.publish("d.x", b"other", message_id="order-43")

    async with client.bus.subscribe("d.x", start=pb.START_POSITION_ALL) as sub:
        stored = await take(sub, 2)

    assert not first.duplicate and again.duplicate and not other.duplicate
    assert again.sequence == first.sequence
    assert [d.message.data for d in stored] == [b"once", b"other"]


async def test_max_in_flight_bounds_unacked_deliveries(client: Client) -> None:
    async with client.bus.subscribe("f.x", explicit_ack=True, max_in_flight=5) as sub:
        await client.bus.publish_many(messages("f.x", 12))
        first = await take(sub, 5)
        info = await client.bus.consumer_info(sub.consumer)
        assert info.num_ack_pending == 5  # the other 7 wait for credit
        assert info.num_pending == 7
        await client.bus.ack(*(d.delivery_id for d in first[:3]))
        more = await take(sub, 3)

    assert [d.message.data for d in more] == [b"m5", b"m6", b"m7"]


async def test_a_slow_subscriber_does_not_hold_back_a_fast_one(client: Client) -> None:
    async with (
        client.bus.subscribe("s.x", max_in_flight=100) as slow,
        client.bus.subscribe("s.x") as fast,
    ):
        payload = b"x" * 1024  # 2 MB in all: far beyond what the transport buffers for a reader that waits
        await client.bus.publish_many(
            [pb.BusMessage(subject="s.x", data=payload + bytes([n % 256])) for n in range(2000)]
        )
        # The fast subscriber gets all 2,000 while the slow one has read none of its stream.
        got = await take(fast, 2000)
        frame = await slow.next_frame()

    assert [d.message.data[-1] for d in got[:2]] == [0, 1]
    assert frame.HasField("gap") and frame.gap.skipped > 0
    assert frame.gap.skipped + len(frame.deliveries) <= 2000


async def test_a_second_plain_durable_subscriber_is_refused(client: Client) -> None:
    async with client.bus.subscribe("solo.x", durable="solo"):
        with pytest.raises(FailedPrecondition):
            async with client.bus.subscribe("solo.x", durable="solo"):
                pass


@pytest.mark.parametrize(
    ("subject", "fragment"),
    [("a..b", "empty"), ("a.*.b", "wildcard"), ("", "empty"), ("a." + "b" * 300, "255")],
)
async def test_invalid_publish_subjects_are_refused(client: Client, subject: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await client.bus.publish(subject, b"x")

    assert caught.value.violations[0].field == "message.subject"
    assert fragment in caught.value.violations[0].description


@pytest.mark.parametrize("pattern", ["a.>.b", "a*.b", "", "a..b"])
async def test_invalid_patterns_are_refused(client: Client, pattern: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        async with client.bus.subscribe(pattern):
            pass

    assert caught.value.violations[0].field == "pattern"
