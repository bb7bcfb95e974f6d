"""What bus.proto promises a client in any language, checked through the generated stubs only.

One test per promise (or per small group of promises of one comment), named after it. What other
files already check (frame sizes, redelivery timing, dead letters, replay) is not repeated here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from control_plane.server import App
from hms.mgmt.v1 import bus_pb2 as pb
from tests.promise_support import SubscribeStream, Wire, read


@pytest.fixture
async def wire(server: App) -> AsyncIterator[Wire]:
    """Stubs on a channel to `server`."""
    connection = Wire(server.address)
    yield connection
    await connection.close()


def message(subject: str, data: bytes = b"x", **fields: Any) -> pb.BusMessage:
    return pb.BusMessage(subject=subject, data=data, **fields)


async def publish(wire: Wire, subject: str, data: bytes = b"x", **fields: Any) -> pb.PublishResponse:
    return await wire.bus.Publish(pb.PublishRequest(message=message(subject, data, **fields)))


async def subscribe(wire: Wire, pattern: str, **fields: Any) -> tuple[SubscribeStream, pb.SubscriptionReady]:
    stream = wire.bus.Subscribe(pb.SubscribeRequest(pattern=pattern, **fields))
    async with asyncio.timeout(10):
        first = await read(stream)
    assert first.HasField("ready") and not first.deliveries, first
    return stream, first.ready


async def deliveries(stream: SubscribeStream, count: int) -> list[pb.Delivery]:
    got: list[pb.Delivery] = []
    async with asyncio.timeout(10):
        while len(got) < count:
            got.extend((await read(stream)).deliveries)
    assert len(got) == count, got
    return got


async def _code(call: Any) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def seconds(value: duration_pb2.Duration) -> float:
    return value.seconds + value.nanos / 1e9


# -- subjects and patterns ------------------------------------------------------------------------


async def test_wildcards_match_one_token_or_the_rest_and_skip_system_subjects(wire: Wire) -> None:
    """'*' matches exactly one token, '>' one or more trailing tokens; a wildcard in the first position
    does not match subjects whose first token starts with '$', a pattern naming that token does."""
    star, _ = await subscribe(wire, "permit.*.submitted")
    rest, _ = await subscribe(wire, "permit.>")
    everything, _ = await subscribe(wire, ">")
    system, _ = await subscribe(wire, "$SYS.>")
    first_star, _ = await subscribe(wire, "*.audit")
    try:
        for subject in ("permit", "permit.a.submitted", "permit.a.b.submitted", "$SYS.audit", "app.audit"):
            await publish(wire, subject, subject.encode())
        await publish(wire, "zz.end")  # every subscriber that sees ">" sees this one last
        await publish(wire, "permit.end.submitted")
        await publish(wire, "$SYS.end")
        await publish(wire, "end.audit")
        got = {
            "star": await deliveries(star, 2),
            "rest": await deliveries(rest, 3),
            "everything": await deliveries(everything, 7),
            "system": await deliveries(system, 2),
            "first_star": await deliveries(first_star, 2),
        }
    finally:
        for stream in (star, rest, everything, system, first_star):
            stream.cancel()

    subjects = {name: [d.message.subject for d in got[name]] for name in got}
    assert subjects["star"] == ["permit.a.submitted", "permit.end.submitted"]
    assert subjects["rest"] == ["permit.a.submitted", "permit.a.b.submitted", "permit.end.submitted"]
    assert "$SYS.audit" not in subjects["everything"] and "permit" in subjects["everything"]
    assert subjects["system"] == ["$SYS.audit", "$SYS.end"]
    assert subjects["first_star"] == ["app.audit", "end.audit"]


async def test_sequences_are_bus_wide_and_per_subject_from_1(wire: Wire) -> None:
    """sequence: strictly increasing over the whole bus, from 1; subject_sequence: 1, 2, 3 per subject."""
    answers = [await publish(wire, subject) for subject in ("a.one", "a.two", "a.one", "a.one", "a.two")]

    assert [a.sequence for a in answers] == [1, 2, 3, 4, 5]
    assert [a.subject_sequence for a in answers] == [1, 1, 2, 3, 2]
    assert all(a.HasField("published_at") and not a.duplicate for a in answers)


# -- publishing -----------------------------------------------------------------------------------


async def test_a_duplicate_publish_answers_with_the_first_publish(wire: Wire) -> None:
    """A message id seen within the window: duplicate, nothing stored, the first publish's sequences
    and time; ids are bus-wide, not per subject."""
    first = await publish(wire, "orders.new", b"one", message_id="order-7")
    again = await publish(wire, "orders.other", b"two", message_id="order-7")
    stats = await wire.bus.ListSubjects(pb.ListSubjectsRequest())

    assert again.duplicate and (again.sequence, again.subject_sequence) == (
        first.sequence,
        first.subject_sequence,
    )
    assert again.published_at == first.published_at
    assert [(s.subject, s.messages) for s in stats.subjects] == [("orders.new", 1)]


async def test_publish_stream_answers_each_batch_in_order_and_stores_a_batch_whole_or_not_at_all(
    wire: Wire,
) -> None:
    """PublishStream: one response per request, in request order, echoing batch_id; sequences and
    subject_sequences per message in request order; duplicates by index; one published_at per batch
    (a batch's new messages share it); a rejected batch stores nothing, names messages[i] in
    violations, and the stream stays open for the next batch."""
    before = await publish(wire, "ps.a", message_id="seen")
    call = wire.bus.PublishStream()
    batches = [
        pb.PublishStreamRequest(batch_id=5, messages=[message("ps.a"), message("ps.b"), message("ps.a")]),
        pb.PublishStreamRequest(batch_id=6, messages=[message("ps.ok"), message("ps.*"), message("ps..x")]),
        pb.PublishStreamRequest(batch_id=7, messages=[message("ps.c"), message("ps.a", message_id="seen")]),
    ]
    answers: list[pb.PublishStreamResponse] = []
    try:
        async with asyncio.timeout(10):
            for batch in batches:
                await call.write(batch)
            await call.done_writing()
            while (answer := await call.read()) is not grpc.aio.EOF:
                assert isinstance(answer, pb.PublishStreamResponse)
                answers.append(answer)
    finally:
        call.cancel()
    subjects = {
        s.subject: s.messages for s in (await wire.bus.ListSubjects(pb.ListSubjectsRequest())).subjects
    }

    assert [a.batch_id for a in answers] == [5, 6, 7]
    first, rejected, mixed = answers
    assert list(first.sequences) == [2, 3, 4] and list(first.subject_sequences) == [2, 1, 3]
    assert first.HasField("published_at") and not first.duplicates and not first.violations
    assert not rejected.sequences and not rejected.subject_sequences and not rejected.HasField("published_at")
    assert [v.field for v in rejected.violations] == ["messages[1].subject", "messages[2].subject"]
    assert list(mixed.duplicates) == [1] and list(mixed.sequences) == [5, before.sequence]
    assert mixed.published_at.ToNanoseconds() > before.published_at.ToNanoseconds()
    assert subjects == {"ps.a": 3, "ps.b": 1, "ps.c": 1}


async def test_every_message_of_a_batch_is_checked_even_after_one_with_the_same_subject_passed(
    wire: Wire,
) -> None:
    """A batch names each message at fault, whatever went before it on the same subject (the check
    skips a subject it already found clean, never the message's other fields)."""
    call = wire.bus.PublishStream()
    batch = [
        message("same.x"),
        message("same.x", content_type="t" * 129),
        message("same.x", headers={"hms-dlq-reason": "x"}),
        message("same.x", message_id="i" * 129),
        message("same.x"),
        message("same.x", data=b"d" * (1024 * 1024 + 1)),
    ]
    try:
        async with asyncio.timeout(10):
            await call.write(pb.PublishStreamRequest(batch_id=1, messages=batch))
            answer = await call.read()
    finally:
        call.cancel()

    assert isinstance(answer, pb.PublishStreamResponse)
    assert [v.field for v in answer.violations if v.field.startswith("messages[")] == [
        "messages[1].content_type",
        "messages[2].headers['hms-dlq-reason']",
        "messages[3].message_id",
        "messages[5].data",
    ]
    assert not answer.sequences


async def test_reserved_header_keys_are_refused(wire: Wire) -> None:
    """Header keys starting with "hms-" are the bus's: a publish that sets one is INVALID_ARGUMENT."""
    code = await _code(
        wire.bus.Publish(pb.PublishRequest(message=message("h.x", headers={"hms-dlq-reason": "x"})))
    )

    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_workflow_engines_process_subjects_are_refused_to_publishers(wire: Wire) -> None:
    """workflow.<definition>.<process id>.<event> is the engine's alone (it numbers those subjects
    itself): a publish there, or a consumer dead-lettering there, is INVALID_ARGUMENT; other workflow.
    subjects (not four tokens) stay open."""
    forged = await _code(publish(wire, "workflow.permit.p1.process_completed"))
    dead = await _code(
        read(
            wire.bus.Subscribe(
                pb.SubscribeRequest(
                    pattern="in.>", ack_mode=pb.ACK_MODE_EXPLICIT, dead_letter_subject="workflow.a.b.c"
                )
            )
        )
    )
    others = [(await publish(wire, s)).subject_sequence for s in ("workflow.permit", "workflow.a.b.c.d")]

    assert (forged, dead) == (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INVALID_ARGUMENT)
    assert others == [1, 1]


# -- subscribing ----------------------------------------------------------------------------------


async def test_the_ready_frame_shows_the_consumer_with_its_defaults(wire: Wire) -> None:
    """SubscriptionReady: the consumer as configured with the defaults filled in (ack_wait 30 s,
    max_deliveries 5, backoff 1 s, 5 s, 30 s, 120 s, dead letters to "$DLQ.<name>"), created true for a
    new consumer; an ephemeral consumer is named "_eph-..." by the server; start_sequence: nothing
    published from it on is missed."""
    await publish(wire, "ready.x")
    durable, durable_ready = await subscribe(wire, "ready.>", durable="keeper", ack_mode=pb.ACK_MODE_EXPLICIT)
    ephemeral, ephemeral_ready = await subscribe(wire, "ready.>")
    durable.cancel()
    ephemeral.cancel()

    consumer = durable_ready.consumer
    assert (consumer.name, consumer.durable, consumer.pattern) == ("keeper", True, "ready.>")
    assert consumer.ack_mode == pb.ACK_MODE_EXPLICIT and seconds(consumer.ack_wait) == 30
    assert consumer.max_deliveries == 5 and [seconds(b) for b in consumer.backoff] == [1, 5, 30, 120]
    assert consumer.dead_letter_subject == "$DLQ.keeper" and consumer.HasField("created_at")
    assert durable_ready.created and durable_ready.start_sequence == 2
    assert ephemeral_ready.consumer.name.startswith("_eph-") and not ephemeral_ready.consumer.durable
    assert ephemeral_ready.consumer.ack_mode == pb.ACK_MODE_NONE and ephemeral_ready.created


async def test_a_durable_resumes_with_its_stored_settings_and_refuses_changed_identity(wire: Wire) -> None:
    """A durable that exists: pattern, queue_group and ack_mode must be the stored ones (else
    FAILED_PRECONDITION); start fields are ignored; settings left at 0 keep their stored values, set
    ones replace them; created false."""
    first, _ = await subscribe(
        wire, "d.>", durable="d1", ack_mode=pb.ACK_MODE_EXPLICIT, max_deliveries=7,
        dead_letter_subject="dead.d1",
    )  # fmt: skip
    first.cancel()
    await publish(wire, "d.x", b"while away")
    other_pattern = wire.bus.Subscribe(
        pb.SubscribeRequest(pattern="d.x", durable="d1", ack_mode=pb.ACK_MODE_EXPLICIT)
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await read(other_pattern)
    other_mode = wire.bus.Subscribe(pb.SubscribeRequest(pattern="d.>", durable="d1"))
    with pytest.raises(grpc.aio.AioRpcError) as refused_mode:
        await read(other_mode)
    resumed, ready = await subscribe(
        wire, "d.>", durable="d1", ack_mode=pb.ACK_MODE_EXPLICIT, start=pb.START_POSITION_NEW_ONLY,
        ack_wait=duration_pb2.Duration(seconds=60),
    )  # fmt: skip
    try:
        (waiting,) = await deliveries(resumed, 1)
    finally:
        resumed.cancel()

    assert refused.value.code() == refused_mode.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert not ready.created and waiting.message.data == b"while away"  # not NEW_ONLY: it resumed
    consumer = ready.consumer
    assert (consumer.max_deliveries, consumer.dead_letter_subject) == (7, "dead.d1")
    assert seconds(consumer.ack_wait) == 60


async def test_a_start_sequence_before_the_oldest_retained_starts_at_the_oldest(
    wire: Wire, server: App
) -> None:
    """START_POSITION_FROM_SEQUENCE: a start_sequence older than the oldest retained message starts at
    the oldest retained."""
    for n in range(4):
        await publish(wire, "old.x", str(n).encode())
    await wire.bus.SetRetention(
        pb.SetRetentionRequest(policy=pb.RetentionPolicy(subject_prefix="old", max_messages=2))
    )
    await server.bus.housekeeping()
    stream, _ = await subscribe(wire, "old.>", start=pb.START_POSITION_FROM_SEQUENCE, start_sequence=1)
    try:
        got = await deliveries(stream, 2)
    finally:
        stream.cancel()

    assert [d.message.data for d in got] == [b"2", b"3"]


async def test_explicit_acks_hold_at_most_1000_unacked_by_default(wire: Wire) -> None:
    """EXPLICIT mode: max_in_flight defaults to 1,000 unacked deliveries per stream; deliveries carry a
    delivery_id, their attempt and the consumer's name; a response carries at most max_batch (256 by
    default) deliveries."""
    call = wire.bus.PublishStream()
    await call.write(pb.PublishStreamRequest(batch_id=1, messages=[message("many.x")] * 1000))
    await call.write(pb.PublishStreamRequest(batch_id=2, messages=[message("many.x")]))
    await call.done_writing()
    async with asyncio.timeout(10):
        while await call.read() is not grpc.aio.EOF:
            pass
    stream, ready = await subscribe(
        wire, "many.>", ack_mode=pb.ACK_MODE_EXPLICIT, start=pb.START_POSITION_ALL
    )
    frames: list[pb.SubscribeResponse] = []
    try:
        async with asyncio.timeout(10):
            while sum(len(f.deliveries) for f in frames) < 1000:
                frames.append(await read(stream))
        info = (await wire.bus.GetConsumerInfo(pb.GetConsumerInfoRequest(name=ready.consumer.name))).consumer
    finally:
        stream.cancel()

    got = [d for f in frames for d in f.deliveries]
    assert len(got) == 1000 and (info.num_ack_pending, info.num_pending) == (1000, 1)
    assert max(len(f.deliveries) for f in frames) == 256
    assert all(d.delivery_id and d.attempt == 1 and d.consumer == ready.consumer.name for d in got)


async def test_a_stream_that_ends_hands_its_unacked_deliveries_to_the_other_members(wire: Wire) -> None:
    """When a subscriber's stream ends, its unsettled deliveries go to the other members at once
    (attempt 2); an ack of the first attempt still counts until the message is redelivered: here it
    has been, so it is STALE."""
    leaving, _ = await subscribe(wire, "q.>", queue_group="g", durable="q", ack_mode=pb.ACK_MODE_EXPLICIT)
    await publish(wire, "q.x", b"job")
    (held,) = await deliveries(leaving, 1)
    staying, _ = await subscribe(wire, "q.>", queue_group="g", durable="q", ack_mode=pb.ACK_MODE_EXPLICIT)
    try:
        leaving.cancel()
        (again,) = await deliveries(staying, 1)
        late = await wire.bus.Ack(pb.AckRequest(items=[pb.AckItem(delivery_id=held.delivery_id)]))
        ok = await wire.bus.Ack(pb.AckRequest(items=[pb.AckItem(delivery_id=again.delivery_id)]))
    finally:
        staying.cancel()

    assert (again.message.data, again.attempt) == (b"job", 2)
    assert list(late.results) == [pb.ACK_RESULT_STALE] and list(ok.results) == [pb.ACK_RESULT_ACCEPTED]


async def test_deleting_a_consumer_ends_its_streams_not_found_and_its_acks_find_nothing(wire: Wire) -> None:
    """DeleteConsumer: its subscribers' streams end with NOT_FOUND; an ack of one of its deliveries is
    NOT_FOUND; GetConsumerInfo and DeleteConsumer of an unknown consumer are NOT_FOUND."""
    stream, _ = await subscribe(wire, "del.>", durable="gone", ack_mode=pb.ACK_MODE_EXPLICIT)
    await publish(wire, "del.x")
    (held,) = await deliveries(stream, 1)
    await wire.bus.DeleteConsumer(pb.DeleteConsumerRequest(name="gone"))
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        async with asyncio.timeout(10):
            await read(stream)
    ack = await wire.bus.Ack(pb.AckRequest(items=[pb.AckItem(delivery_id=held.delivery_id)]))
    info = await _code(wire.bus.GetConsumerInfo(pb.GetConsumerInfoRequest(name="gone")))
    again = await _code(wire.bus.DeleteConsumer(pb.DeleteConsumerRequest(name="gone")))

    assert ended.value.code() == grpc.StatusCode.NOT_FOUND
    assert list(ack.results) == [pb.ACK_RESULT_NOT_FOUND]
    assert info == again == grpc.StatusCode.NOT_FOUND


# -- listing and retention ------------------------------------------------------------------------


async def test_subjects_are_listed_in_name_order_with_their_counts_and_pages(wire: Wire) -> None:
    """ListSubjects: name order, system subjects included without a pattern, only matching ones with
    one; counts, bytes and sequence ranges per subject; pages follow next_page_token."""
    for subject, data in [("b.x", b"12"), ("a.x", b"1"), ("b.x", b"123"), ("$DLQ.c", b"")]:
        await publish(wire, subject, data)
    everything = await wire.bus.ListSubjects(pb.ListSubjectsRequest())
    matching = await wire.bus.ListSubjects(pb.ListSubjectsRequest(pattern="*.x"))
    first = await wire.bus.ListSubjects(pb.ListSubjectsRequest(page_size=2))
    second = await wire.bus.ListSubjects(
        pb.ListSubjectsRequest(page_size=2, page_token=first.next_page_token)
    )

    assert [s.subject for s in everything.subjects] == ["$DLQ.c", "a.x", "b.x"]
    assert [s.subject for s in matching.subjects] == ["a.x", "b.x"]
    b = everything.subjects[2]
    assert (b.messages, b.bytes, b.first_sequence, b.last_sequence, b.last_subject_sequence) == (
        2,
        5,
        1,
        3,
        2,
    )
    assert b.first_published_at.ToNanoseconds() <= b.last_published_at.ToNanoseconds()
    assert b.retention.subject_prefix == ""
    assert [s.subject for s in [*first.subjects, *second.subjects]] == ["$DLQ.c", "a.x", "b.x"]
    assert first.next_page_token and not second.next_page_token


async def test_consumers_are_listed_durable_ones_always_ephemeral_ones_on_request(wire: Wire) -> None:
    """ListConsumers: durable consumers (attached or not), ephemeral ones only with include_ephemeral
    while a subscriber is attached, in name order, with their subscriber counts."""
    kept, _ = await subscribe(wire, "c.>", durable="zeta")
    kept.cancel()
    live, _ = await subscribe(wire, "c.>", durable="alpha")
    passing, ready = await subscribe(wire, "c.>")
    try:
        durable_only = await wire.bus.ListConsumers(pb.ListConsumersRequest())
        every = await wire.bus.ListConsumers(pb.ListConsumersRequest(include_ephemeral=True))
    finally:
        live.cancel()
        passing.cancel()

    assert [c.name for c in durable_only.consumers] == ["alpha", "zeta"]
    assert [c.name for c in every.consumers] == sorted(["alpha", "zeta", ready.consumer.name])
    assert {c.name: c.active_subscribers for c in every.consumers}["alpha"] == 1


async def test_the_default_retention_is_7_days_and_1000000_messages_and_comes_first(wire: Wire) -> None:
    """ListRetention: the default policy (prefix "") first, 7 days and 1,000,000 messages per subject;
    SetRetention answers the policy in force (after removing one, the inherited one); removing the
    default restores the server's default."""
    initial = await wire.bus.ListRetention(pb.ListRetentionRequest())
    set_one = await wire.bus.SetRetention(
        pb.SetRetentionRequest(policy=pb.RetentionPolicy(subject_prefix="logs", max_messages=10))
    )
    await wire.bus.SetRetention(
        pb.SetRetentionRequest(policy=pb.RetentionPolicy(subject_prefix="", max_messages=5))
    )
    listed = await wire.bus.ListRetention(pb.ListRetentionRequest())
    removed = await wire.bus.SetRetention(
        pb.SetRetentionRequest(policy=pb.RetentionPolicy(subject_prefix="logs"), remove=True)
    )
    restored = await wire.bus.SetRetention(pb.SetRetentionRequest(policy=pb.RetentionPolicy(), remove=True))

    (default,) = initial.policies
    assert default.subject_prefix == "" and seconds(default.max_age) == 7 * 86400
    assert default.max_messages == 1_000_000
    assert (set_one.policy.subject_prefix, set_one.policy.max_messages) == ("logs", 10)
    assert [(p.subject_prefix, p.max_messages) for p in listed.policies] == [("", 5), ("logs", 10)]
    assert (removed.policy.subject_prefix, removed.policy.max_messages) == ("", 5)
    assert restored.policy == default


async def test_consumer_info_follows_deliveries_and_acks(wire: Wire) -> None:
    """ConsumerInfo: delivered_sequence is the highest delivered; ack_floor_sequence the highest with
    everything at or below it settled; num_ack_pending the unsettled; last_active_at set once used."""
    stream, ready = await subscribe(wire, "info.>", durable="info", ack_mode=pb.ACK_MODE_EXPLICIT)
    try:
        sequences = [(await publish(wire, "info.x")).sequence for _ in range(3)]
        got = await deliveries(stream, 3)
        await wire.bus.Ack(pb.AckRequest(items=[pb.AckItem(delivery_id=got[i].delivery_id) for i in (0, 2)]))
        gap = (await wire.bus.GetConsumerInfo(pb.GetConsumerInfoRequest(name="info"))).consumer
        await wire.bus.Ack(pb.AckRequest(items=[pb.AckItem(delivery_id=got[1].delivery_id)]))
        settled = (await wire.bus.GetConsumerInfo(pb.GetConsumerInfoRequest(name="info"))).consumer
    finally:
        stream.cancel()

    assert ready.consumer.delivered_sequence == 0 and ready.consumer.ack_floor_sequence == 0
    assert (gap.delivered_sequence, gap.ack_floor_sequence, gap.num_ack_pending) == (
        sequences[2],
        sequences[0],
        1,
    )
    assert (settled.ack_floor_sequence, settled.num_ack_pending, settled.num_pending) == (sequences[2], 0, 0)
    assert settled.HasField("last_active_at") and settled.active_subscribers == 1


async def test_ephemeral_queue_members_share_one_consumer_that_goes_with_the_last_of_them(wire: Wire) -> None:
    """Ephemeral subscribers giving the same pattern and queue_group are members of one consumer (not
    created again by the second); the consumer is removed when its last subscriber leaves."""
    one, first = await subscribe(wire, "eq.>", queue_group="g")
    two, second = await subscribe(wire, "eq.>", queue_group="g")
    alone, other = await subscribe(wire, "eq.>")
    name = first.consumer.name
    try:
        for n in range(4):
            await publish(wire, "eq.x", str(n).encode())
        everything = await deliveries(alone, 4)
        members = await wire.bus.GetConsumerInfo(pb.GetConsumerInfoRequest(name=name))
    finally:
        one.cancel()
        two.cancel()
        alone.cancel()
    async with asyncio.timeout(10):
        while True:  # the streams' end reaches the server a moment after the cancels; nothing to await
            if (
                await _code(wire.bus.GetConsumerInfo(pb.GetConsumerInfoRequest(name=name)))
                != grpc.StatusCode.OK
            ):
                break
            await asyncio.sleep(0.05)  # waits-on-purpose: pacing the polls

    assert second.consumer.name == name != other.consumer.name and not second.created
    assert members.consumer.active_subscribers == 2 and len(everything) == 4
