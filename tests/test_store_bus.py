"""The store contract, Bus part: every test runs on SQLite and on PostgreSQL (the `store` fixture)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from control_plane.models import (
    AckMode,
    ConsumerConfig,
    OutgoingMessage,
    Position,
    RetentionPolicy,
    StoredConsumer,
    StoredMessage,
    SubjectStats,
)
from control_plane.storage import Store

WINDOW = 120.0


def config(name: str = "c", **changes: object) -> ConsumerConfig:
    base = ConsumerConfig(
        name=name,
        durable=True,
        pattern="orders.>",
        queue_group="",
        ack_mode=AckMode.EXPLICIT,
        ack_wait_s=30.0,
        max_deliveries=5,
        backoff_s=(1.0, 5.0),
        dead_letter_subject=f"$DLQ.{name}",
        created_at=1_700_000_000.5,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


async def publish(store: Store, *subjects: str, now: float = 100.0) -> list[StoredMessage]:
    """Append one message per subject (data = its index) in one batch."""
    batch = [OutgoingMessage(s, str(n).encode()) for n, s in enumerate(subjects)]
    result = await store.bus_append(batch, now=now, dedup_window_s=WINDOW)
    return result.stored


# -- append and read ------------------------------------------------------------------------------


async def test_a_batch_gets_consecutive_log_sequences_and_a_sequence_per_subject(store: Store) -> None:
    first = await store.bus_append(
        [
            OutgoingMessage("a.x", b"1", {"k": "v"}, "text/plain", "m-1"),
            OutgoingMessage("b.y", b"\x00\xff"),
            OutgoingMessage("a.x", b"3"),
        ],
        now=10.0,
        dedup_window_s=WINDOW,
    )
    second = await store.bus_append([OutgoingMessage("a.x", b"4")], now=11.5, dedup_window_s=WINDOW)

    assert first.positions == [Position(1, 1, 10.0), Position(2, 1, 10.0), Position(3, 2, 10.0)]
    assert first.duplicates == []
    assert first.stored[0] == StoredMessage(1, 1, "a.x", b"1", {"k": "v"}, "text/plain", "m-1", 10.0)
    assert second.positions == [Position(4, 3, 11.5)]
    assert await store.bus_read(0, 100) == [*first.stored, *second.stored]
    assert (await store.bus_read(0, 100))[1].data == b"\x00\xff"  # binary data survives as is


async def test_concurrent_appends_share_commits_and_lose_no_sequence(store: Store) -> None:
    results = await asyncio.gather(
        *(
            store.bus_append([OutgoingMessage(f"s.{n % 3}", b"x")] * 2, now=1.0, dedup_window_s=WINDOW)
            for n in range(60)
        )
    )

    sequences = sorted(p.sequence for r in results for p in r.positions)
    stored = await store.bus_read(0, 1000)
    assert sequences == list(range(1, 121))
    assert [m.sequence for m in stored] == list(range(1, 121))
    for subject in ("s.0", "s.1", "s.2"):
        assert [m.subject_sequence for m in stored if m.subject == subject] == list(range(1, 41))
    for result in results:  # a batch is contiguous in the log
        assert result.positions[1].sequence == result.positions[0].sequence + 1
    # The counter moved on by every append of the shared commits (on PostgreSQL all but the first of a
    # transaction move it in their INSERT), so the next commit continues the log.
    (after,) = (await store.bus_append([OutgoingMessage("s.0", b"x")], now=2.0, dedup_window_s=0.0)).positions
    assert after.sequence == 121


async def test_a_large_batch_is_stored_whole_in_order_with_every_field(store: Store) -> None:
    # 301 rows: the store writes them in several statements of many rows (128, 128, 32, 8, 4, 1).
    batch = [
        OutgoingMessage(
            f"big.{n % 3}",
            n.to_bytes(2, "big"),
            {"n": str(n)} if n % 2 else {},
            "text/plain" if n % 5 == 0 else "",
            f"id-{n}" if n % 7 == 0 else "",
        )
        for n in range(301)
    ]

    result = await store.bus_append(batch, now=5.0, dedup_window_s=WINDOW)

    stored = await store.bus_read(0, 1000)
    assert stored == result.stored
    assert [m.sequence for m in stored] == list(range(1, 302))
    for n, (sent, kept) in enumerate(zip(batch, stored, strict=True)):
        assert (kept.subject, kept.data, dict(kept.headers), kept.content_type, kept.message_id) == (
            sent.subject,
            sent.data,
            dict(sent.headers),
            sent.content_type,
            sent.message_id,
        )
        assert kept.subject_sequence == n // 3 + 1
        assert kept.published_at == 5.0


async def test_reads_follow_the_log_after_a_sequence_with_a_limit_and_a_subject(store: Store) -> None:
    await publish(store, "a", "b", "a", "b", "a")

    assert [m.sequence for m in await store.bus_read(0, 2)] == [1, 2]
    assert [m.sequence for m in await store.bus_read(2, 100)] == [3, 4, 5]
    assert [m.sequence for m in await store.bus_read(1, 100, subject="a")] == [3, 5]
    assert [m.subject_sequence for m in await store.bus_read(0, 100, subject="b")] == [1, 2]
    assert await store.bus_read(0, 100, subject="a.>") == []  # a subject, not a pattern
    assert await store.bus_read(5, 100) == []


async def test_reading_sequences_returns_those_still_retained_in_order(store: Store) -> None:
    await store.bus_append([OutgoingMessage("many", b"x")] * 600, now=1.0, dedup_window_s=WINDOW)
    await store.bus_apply_retention([RetentionPolicy("many", 0.0, 590)], now=2.0)

    # More than one statement's worth of sequences, asked for out of order, with some gone or unknown.
    found = await store.bus_read_sequences([*range(600, 0, -1), 9999])

    assert [m.sequence for m in found] == list(range(11, 601))
    assert await store.bus_read_sequences([]) == []


async def test_bounds_are_the_oldest_retained_and_the_last_assigned_sequence(store: Store) -> None:
    empty = await store.bus_bounds()
    await publish(store, "old", "old", "new")
    full = await store.bus_bounds()
    await store.bus_apply_retention([RetentionPolicy("old", 0.0, 1)], now=100.0)
    trimmed = await store.bus_bounds()
    await store.bus_apply_retention([RetentionPolicy("", 1.0, 0)], now=200.0)

    assert (empty, full, trimmed) == ((0, 0), (1, 3), (2, 3))
    assert await store.bus_bounds() == (0, 3)  # nothing retained; sequence 3 stays assigned
    (next_one,) = await publish(store, "new")
    assert next_one.sequence == 4


async def test_the_first_sequence_at_a_time_is_found_by_publish_time(store: Store) -> None:
    for at in (10.0, 20.0, 20.0, 30.0):
        await publish(store, "t", now=at)

    assert await store.bus_first_sequence_at(5.0) == 1
    assert await store.bus_first_sequence_at(10.0) == 1  # at or after
    assert await store.bus_first_sequence_at(10.5) == 2
    assert await store.bus_first_sequence_at(20.0) == 2
    assert await store.bus_first_sequence_at(25.0) == 4
    assert await store.bus_first_sequence_at(31.0) == 5  # none yet: the next one to be assigned


async def test_the_first_sequence_at_a_time_skips_what_retention_removed(store: Store) -> None:
    assert await store.bus_first_sequence_at(0.0) == 1  # an empty log: the first one to come
    for at in (10.0, 20.0, 30.0):
        await publish(store, "t", now=at)
    await store.bus_apply_retention([RetentionPolicy("", 0.0, 1)], now=40.0)

    assert await store.bus_first_sequence_at(0.0) == 3
    assert await store.bus_first_sequence_at(35.0) == 4


async def test_first_sequence_at_is_the_next_one_when_retention_removed_every_message(store: Store) -> None:
    for at in (10.0, 20.0):
        await publish(store, "t", now=at)
    await store.bus_apply_retention([RetentionPolicy("", 5.0, 0)], now=100.0)

    assert await store.bus_bounds() == (0, 2)
    assert await store.bus_first_sequence_at(15.0) == 3
    assert await store.bus_first_sequence_at(200.0) == 3


# -- dedup ----------------------------------------------------------------------------------------


async def test_a_large_batch_on_one_subject_is_stored_whole_and_numbered_on(store: Store) -> None:
    # One subject, no headers: the store builds its rows in passes over the batch, not message by message.
    batch = [
        OutgoingMessage(
            "one.s",
            n.to_bytes(2, "big"),
            {},
            "text/plain" if n % 5 == 0 else "",
            f"id-{n}" if n % 7 == 0 else "",
        )
        for n in range(300)
    ]
    await store.bus_append([OutgoingMessage("one.s", b"first", {"k": "v"})], now=4.0, dedup_window_s=WINDOW)

    result = await store.bus_append(batch, now=5.0, dedup_window_s=WINDOW)
    mixed = await store.bus_append(
        [OutgoingMessage("one.s", b"a"), OutgoingMessage("two.s", b"b")], now=6.0, dedup_window_s=WINDOW
    )

    stored = await store.bus_read(0, 1000)
    assert stored[1:301] == result.stored
    assert [(m.sequence, m.subject_sequence) for m in result.stored] == [(n, n) for n in range(2, 302)]
    for sent, kept in zip(batch, result.stored, strict=True):
        assert (kept.subject, kept.data, dict(kept.headers), kept.content_type, kept.message_id) == (
            sent.subject,
            sent.data,
            {},
            sent.content_type,
            sent.message_id,
        )
        assert kept.published_at == 5.0
    assert stored[0].headers == {"k": "v"}
    assert [(m.sequence, m.subject_sequence) for m in mixed.stored] == [(302, 302), (303, 1)]
    again = await store.bus_append(
        [OutgoingMessage("one.s", b"x", message_id="id-7")], now=7.0, dedup_window_s=WINDOW
    )
    assert again.duplicates == [0] and again.positions == [Position(9, 9, 5.0)]


async def test_a_message_id_seen_within_the_window_is_a_duplicate_of_the_first(store: Store) -> None:
    first = await store.bus_append(
        [OutgoingMessage("o", b"1", message_id="id-1")], now=100.0, dedup_window_s=60
    )
    again = await store.bus_append(
        [OutgoingMessage("o", b"other", message_id="id-1"), OutgoingMessage("o", b"2", message_id="id-2")],
        now=159.0,
        dedup_window_s=60,
    )

    assert again.duplicates == [0]
    assert again.positions == [Position(1, 1, 100.0), Position(2, 2, 159.0)]
    assert [m.data for m in again.stored] == [b"2"]
    assert [m.data for m in await store.bus_read(0, 10)] == [b"1", b"2"]
    assert first.positions == [Position(1, 1, 100.0)]


async def test_a_message_id_repeated_within_one_batch_is_stored_once(store: Store) -> None:
    result = await store.bus_append(
        [OutgoingMessage("o", b"1", message_id="same"), OutgoingMessage("o", b"2", message_id="same")],
        now=1.0,
        dedup_window_s=WINDOW,
    )

    assert result.duplicates == [1]
    assert result.positions[0] == result.positions[1] == Position(1, 1, 1.0)
    assert await store.bus_bounds() == (1, 1)


async def test_concurrent_publishes_of_one_message_id_store_it_once(store: Store) -> None:
    results = await asyncio.gather(
        *(
            store.bus_append(
                [OutgoingMessage("o", str(n).encode(), message_id="once")], now=1.0, dedup_window_s=60
            )
            for n in range(20)
        )
    )

    assert sum(len(r.stored) for r in results) == 1
    assert {r.positions[0] for r in results} == {Position(1, 1, 1.0)}
    assert sorted(len(r.duplicates) for r in results) == [0] + [1] * 19


async def test_a_message_id_outside_the_window_or_without_a_window_is_stored_again(store: Store) -> None:
    await store.bus_append([OutgoingMessage("o", b"1", message_id="id")], now=100.0, dedup_window_s=60)
    later = await store.bus_append(
        [OutgoingMessage("o", b"2", message_id="id")], now=160.0, dedup_window_s=60
    )
    undeduplicated = await store.bus_append(
        [OutgoingMessage("o", b"3", message_id="id")], now=161.0, dedup_window_s=0.0
    )
    # The id now points at its latest publish: a duplicate within the window gets that position.
    duplicate = await store.bus_append(
        [OutgoingMessage("o", b"4", message_id="id")], now=162.0, dedup_window_s=60
    )

    assert (later.duplicates, later.positions) == ([], [Position(2, 2, 160.0)])
    assert (undeduplicated.duplicates, undeduplicated.positions) == ([], [Position(3, 3, 161.0)])
    assert (duplicate.duplicates, duplicate.positions) == ([0], [Position(3, 3, 161.0)])


async def test_pruning_forgets_the_message_ids_published_before_a_time(store: Store) -> None:
    await store.bus_append([OutgoingMessage("o", b"1", message_id="old")], now=10.0, dedup_window_s=WINDOW)
    await store.bus_append([OutgoingMessage("o", b"2", message_id="new")], now=20.0, dedup_window_s=WINDOW)

    pruned = await store.bus_prune_dedup(older_than=15.0)
    old = await store.bus_append(
        [OutgoingMessage("o", b"3", message_id="old")], now=21.0, dedup_window_s=WINDOW
    )
    new = await store.bus_append(
        [OutgoingMessage("o", b"4", message_id="new")], now=21.0, dedup_window_s=WINDOW
    )

    assert pruned == 1
    assert old.duplicates == [] and old.positions[0].sequence == 3
    assert new.duplicates == [0] and new.positions[0].sequence == 2
    assert await store.bus_prune_dedup(older_than=15.0) == 0


# -- consumers ------------------------------------------------------------------------------------


async def test_a_durable_consumer_is_stored_updated_and_deleted(store: Store) -> None:
    assert await store.bus_load_consumer("c") is None
    await store.bus_save_consumer(config("c"), delivered_sequence=7)
    await store.bus_save_consumer(config("a", ack_mode=AckMode.NONE, backoff_s=(), queue_group="g"), 0)
    created = await store.bus_load_consumer("c")
    await store.bus_save_consumer(config("c", ack_wait_s=5.0, max_deliveries=2), delivered_sequence=9)
    updated = await store.bus_load_consumer("c")

    assert created == StoredConsumer(config("c"), 7, 0, {})
    assert updated == StoredConsumer(config("c", ack_wait_s=5.0, max_deliveries=2), 9, 0, {})
    assert [c.config for c in await store.bus_load_consumers()] == [
        config("a", ack_mode=AckMode.NONE, backoff_s=(), queue_group="g"),
        config("c", ack_wait_s=5.0, max_deliveries=2),
    ]
    assert await store.bus_delete_consumer("c") is True
    assert await store.bus_delete_consumer("c") is False
    assert await store.bus_load_consumer("c") is None
    assert [c.config.name for c in await store.bus_load_consumers()] == ["a"]


async def test_deliveries_advance_the_position_and_stay_pending_until_settled(store: Store) -> None:
    await store.bus_save_consumer(config("c"), delivered_sequence=0)
    await store.bus_save_consumer(config("other"), delivered_sequence=0)

    await store.bus_record_deliveries("c", 3, [(1, 1), (2, 1), (3, 1)])
    await store.bus_record_deliveries("c", 2, [(2, 2)])  # a redelivery: the position never goes back
    await store.bus_record_deliveries("other", 1, [(1, 1)])
    await store.bus_settle("c", [1, 3, 42])
    await store.bus_record_deliveries("c", 5, [])  # at-most-once consumers record only their position

    c = await store.bus_load_consumer("c")
    other = await store.bus_load_consumer("other")
    assert c is not None and other is not None
    assert (c.delivered_sequence, c.pending) == (5, {2: 2})
    assert (other.delivered_sequence, other.pending) == (1, {1: 1})
    assert {s.config.name: s.pending for s in await store.bus_load_consumers()} == {
        "c": {2: 2},
        "other": {1: 1},
    }


async def test_deleting_a_consumer_drops_its_pending_deliveries(store: Store) -> None:
    await store.bus_save_consumer(config("c"), delivered_sequence=0)
    await store.bus_record_deliveries("c", 2, [(1, 1), (2, 3)])

    await store.bus_delete_consumer("c")
    await store.bus_save_consumer(config("c"), delivered_sequence=0)  # the same name, a new consumer

    again = await store.bus_load_consumer("c")
    assert again == StoredConsumer(config("c"), 0, 0, {})


async def test_a_dead_letter_is_published_and_its_delivery_settled_at_once(store: Store) -> None:
    (original,) = await publish(store, "orders.new")
    await store.bus_save_consumer(config("c"), delivered_sequence=0)
    await store.bus_record_deliveries("c", 1, [(1, 5)])
    letter = OutgoingMessage("$DLQ.c", original.data, {"hms-dlq-sequence": "1"}, "application/json")

    stored = await store.bus_dead_letter("c", 1, letter, now=150.0)
    twice = await store.bus_dead_letter("c", 1, letter, now=151.0)  # dead letters are never deduplicated

    assert stored == StoredMessage(
        2, 1, "$DLQ.c", b"0", {"hms-dlq-sequence": "1"}, "application/json", "", 150.0
    )
    assert twice.sequence == 3
    consumer = await store.bus_load_consumer("c")
    assert consumer is not None
    assert (consumer.pending, consumer.dead_lettered) == ({}, 2)
    assert await store.bus_read(1, 10, subject="$DLQ.c") == [stored, twice]
    # Saving the consumer's settings again keeps its dead-letter count.
    await store.bus_save_consumer(config("c", ack_wait_s=1.0), delivered_sequence=1)
    resaved = await store.bus_load_consumer("c")
    assert resaved is not None and resaved.dead_lettered == 2


# -- subjects and retention -----------------------------------------------------------------------


async def test_subject_stats_count_what_each_subject_retains(store: Store) -> None:
    await store.bus_append(
        [OutgoingMessage("b", b"12345"), OutgoingMessage("a", b"1"), OutgoingMessage("b", b"")],
        now=10.0,
        dedup_window_s=WINDOW,
    )
    await store.bus_append([OutgoingMessage("b", b"xy")], now=20.0, dedup_window_s=WINDOW)
    await store.bus_apply_retention([RetentionPolicy("b", 0.0, 2)], now=30.0)

    assert await store.bus_subject_stats() == [
        SubjectStats("a", 1, 1, 2, 2, 1, 10.0, 10.0),
        SubjectStats("b", 2, 2, 3, 4, 3, 10.0, 20.0),
    ]


async def test_messages_numbered_by_their_publisher_need_no_subject_row_and_retain_like_the_others(
    store: Store,
) -> None:
    """The workflow engine numbers its per-process subjects itself (subject_sequence set): the store keeps
    those numbers and no bus_subjects row for the subject, yet counts and trims it like any other."""
    subject = "workflow.permit.p1.step_started"
    numbered = [OutgoingMessage(subject, b"s1", subject_sequence=1), OutgoingMessage("orders.a", b"")]
    await store.bus_append(numbered, now=10.0, dedup_window_s=0.0)
    later = [
        OutgoingMessage(subject, b"s2", subject_sequence=2),
        OutgoingMessage(subject, b"", subject_sequence=3),
    ]
    await store.bus_append(later, now=20.0, dedup_window_s=0.0)
    await store.bus_append([OutgoingMessage("orders.a", b"")], now=20.0, dedup_window_s=0.0)

    read = [(m.subject, m.subject_sequence) for m in await store.bus_read(0, 100)]
    rows = await store._read(  # type: ignore[attr-defined]
        lambda conn: conn.execute("SELECT subject, last_sequence FROM bus_subjects").fetchall()
    )
    removed = await store.bus_apply_retention([RetentionPolicy("workflow", 0.0, 2)], now=30.0)
    stats = await store.bus_subject_stats()

    assert read == [(subject, 1), ("orders.a", 1), (subject, 2), (subject, 3), ("orders.a", 2)]
    assert [tuple(row) for row in rows] == [("orders.a", 2)]
    assert removed == 1  # the oldest of the engine's subject, over the limit of 2
    assert stats == [
        SubjectStats("orders.a", 2, 0, 2, 5, 2, 10.0, 20.0),
        SubjectStats(subject, 2, 2, 3, 4, 3, 20.0, 20.0),
    ]


async def test_retention_policies_are_stored_replaced_and_removed(store: Store) -> None:
    await store.bus_set_retention("logs", RetentionPolicy("logs", 60.0, 0))
    await store.bus_set_retention("audit", RetentionPolicy("audit", 0.0, 10))
    await store.bus_set_retention("logs", RetentionPolicy("logs", 30.0, 5))
    stored = await store.bus_retention()
    await store.bus_set_retention("audit", None)
    await store.bus_set_retention("never-set", None)

    assert stored == [RetentionPolicy("audit", 0.0, 10), RetentionPolicy("logs", 30.0, 5)]
    assert await store.bus_retention() == [RetentionPolicy("logs", 30.0, 5)]


async def test_retention_by_count_keeps_the_newest_of_each_subject_under_its_prefix(store: Store) -> None:
    await publish(store, "logs.a", "logs.a", "logs.a", "logs.b", "logs.b", "logsx", "logsx", "other")

    removed = await store.bus_apply_retention([RetentionPolicy("logs", 0.0, 1)], now=100.0)

    assert removed == 3
    # Token-wise: "logsx" is not under "logs", and nothing outside the prefix is touched.
    assert [(m.subject, m.subject_sequence) for m in await store.bus_read(0, 100)] == [
        ("logs.a", 3),
        ("logs.b", 2),
        ("logsx", 1),
        ("logsx", 2),
        ("other", 1),
    ]
    assert await store.bus_apply_retention([RetentionPolicy("logs", 0.0, 1)], now=100.0) == 0


async def test_retention_by_age_removes_what_was_published_before_the_cutoff(store: Store) -> None:
    await publish(store, "m.a", "m.b", now=10.0)
    await publish(store, "m.a", now=50.0)

    removed = await store.bus_apply_retention([RetentionPolicy("m", 30.0, 0)], now=60.0)

    assert removed == 2
    assert [(m.sequence, m.published_at) for m in await store.bus_read(0, 100)] == [(3, 50.0)]


async def test_a_longer_prefix_governs_its_subjects_instead_of_a_shorter_one(store: Store) -> None:
    await publish(store, *["audit.keep.x"] * 3, *["audit.other"] * 3, *["elsewhere"] * 3)
    policies = [
        RetentionPolicy("", 0.0, 2),  # the default for every subject
        RetentionPolicy("audit", 0.0, 1),
        RetentionPolicy("audit.keep", 0.0, 0),  # no limit under audit.keep
    ]

    removed = await store.bus_apply_retention(policies, now=100.0)

    counts = {s.subject: s.messages for s in await store.bus_subject_stats()}
    assert counts == {"audit.keep.x": 3, "audit.other": 1, "elsewhere": 2}
    assert removed == 3


async def test_retention_drops_the_pending_deliveries_of_what_it_removed(store: Store) -> None:
    await publish(store, "orders.a", "orders.a", "orders.a")
    await store.bus_save_consumer(config("c"), delivered_sequence=0)
    await store.bus_record_deliveries("c", 3, [(1, 1), (2, 1), (3, 1)])

    await store.bus_apply_retention([RetentionPolicy("orders", 0.0, 1)], now=100.0)

    consumer = await store.bus_load_consumer("c")
    assert consumer is not None and consumer.pending == {3: 1}
