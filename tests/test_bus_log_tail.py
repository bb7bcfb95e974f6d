"""The Bus log's in-memory tail: reads cut by running byte totals give what a message-by-message scan
gives, and trims keep the tail within its bounds by the same rules."""

from __future__ import annotations

import random

import pytest

from control_plane.core.bus.log import MessageLog, _select
from control_plane.core.bus.subjects import compile_pattern
from control_plane.models import NO_HEADERS, StoredMessage, message_bytes, stored_sizes
from control_plane.storage import Store

PATTERNS = ["a.x", "a.*", "a.>", ">", "b.y", "*.y"]
SUBJECTS = ["a.x", "a.y", "b.y"]


def batches(seed: int, count: int) -> list[list[StoredMessage]]:
    """Batches of 1-40 messages on one or several subjects, some with headers, ids or content types."""
    rng = random.Random(seed)
    out: list[list[StoredMessage]] = []
    sequence = 0
    for _ in range(count):
        mixed = rng.random() < 0.3
        subject = rng.choice(SUBJECTS)
        batch = []
        for _ in range(rng.randint(1, 40)):
            sequence += 1
            batch.append(
                StoredMessage(
                    sequence,
                    sequence,
                    rng.choice(SUBJECTS) if mixed else subject,
                    b"d" * rng.randint(0, 300),
                    {"k": "v" * rng.randint(0, 9)} if rng.random() < 0.1 else NO_HEADERS,
                    "text/plain" if rng.random() < 0.2 else "",
                    f"id{sequence}" if rng.random() < 0.2 else "",
                    float(sequence),
                )
            )
        out.append(batch)
    return out


def test_stored_sizes_weigh_as_message_bytes() -> None:
    for batch in batches(1, 50):
        assert stored_sizes(batch) == [message_bytes(m) for m in batch]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_tail_reads_match_a_scan_message_by_message(store: Store, seed: int) -> None:
    log = MessageLog(store, tail_size=10_000, tail_bytes=10**9)
    for batch in batches(seed, 60):
        log.add(batch)
    tail = log._tail
    rng = random.Random(seed)
    for _ in range(2000):
        after = rng.randint(0, log.last_sequence)
        pattern = compile_pattern(rng.choice(PATTERNS))
        limit = rng.randint(1, 120)
        max_bytes = rng.choice([None, 0, 1, 150, 1000, 5000])
        first_free = rng.random() < 0.7
        start = next((i for i, m in enumerate(tail) if m.sequence > after), len(tail))
        expected = _select(tail, start, after, limit, pattern, max_bytes, first_free)
        assert log.read_tail(after, limit, pattern, max_bytes, first_free=first_free) == expected


@pytest.mark.parametrize(("tail_size", "tail_bytes"), [(50, 10**9), (10_000, 4000), (30, 2500)])
async def test_trims_keep_the_newest_within_both_bounds(
    store: Store, tail_size: int, tail_bytes: int
) -> None:
    log = MessageLog(store, tail_size=tail_size, tail_bytes=tail_bytes)
    every: list[StoredMessage] = []
    for batch in batches(7, 80):
        log.add(batch)
        every += batch
        kept = log._tail
        assert kept == every[len(every) - len(kept) :]  # the newest, in order
        assert log.tail_bytes == sum(message_bytes(m) for m in kept)
        assert len(kept) <= 2 * tail_size
        # Over a bound, a trim leaves room: down to tail_size messages, or 3/4 of the byte budget (or one).
        assert log.tail_bytes <= tail_bytes or len(kept) == 0
    assert log.read_tail(every[-1].sequence - 1, 10, compile_pattern(">")) == (
        [every[-1]],
        every[-1].sequence,
    )


async def test_forgotten_messages_leave_the_running_totals(store: Store) -> None:
    log = MessageLog(store, tail_size=10_000, tail_bytes=10**9)
    for batch in batches(9, 20):
        log.add(batch)
    dropped = log.forget(lambda m, _: m.subject == "a.y")
    assert dropped
    assert log.tail_bytes == sum(message_bytes(m) for m in log._tail)
    rest = log._tail
    found, scanned = log.read_tail(0, 10_000, compile_pattern(">"), 10**9)
    assert found == rest and scanned == rest[-1].sequence
