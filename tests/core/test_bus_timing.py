"""Bus timing on a fake clock (JetStream's defaults): ack deadline, redelivery backoff, dead letters, windows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from control_plane.core.bus.bus import AckRequestItem, Subscribed, Subscription
from control_plane.core.bus.consumer import AckAction, AckOutcome, Delivery
from control_plane.models import AckMode, OutgoingMessage, RetentionPolicy, StartPosition
from tests.core.conftest import Cores

# Every default: 30 s to ack, redeliveries 1 s, 5 s, 30 s and 120 s after a deadline, 5 deliveries.
EXPLICIT = Subscription(pattern="orders.>", durable="audit", ack_mode=AckMode.EXPLICIT)


@dataclass
class Subscriber:
    """Takes every batch as soon as the consumer hands it out, noting when (on the fake clock)."""

    subscribed: Subscribed
    cores: Cores
    received: list[tuple[float, Delivery]] = field(default_factory=list)

    async def take_all(self) -> None:
        while True:
            batch = await self.subscribed.consumer.take(self.subscribed.member)
            self.received += [(self.cores.clock.elapsed, d) for d in batch.deliveries]

    def attempts(self) -> list[tuple[float, int]]:
        return [(t, d.attempt) for t, d in self.received]

    async def settle(self, delivery: Delivery, action: AckAction, delay_s: float | None = None) -> AckOutcome:
        (outcome,) = await self.cores.bus.ack([AckRequestItem(delivery.delivery_id, action, delay_s)])
        return outcome


@asynccontextmanager
async def subscriber(cores: Cores, request: Subscription = EXPLICIT) -> AsyncIterator[Subscriber]:
    async with cores.bus.subscribe(request) as subscribed:
        sub = Subscriber(subscribed, cores)
        taking = asyncio.create_task(sub.take_all())
        try:
            await cores.settle(extra=1)
            yield sub
        finally:
            taking.cancel()


async def advance_to(cores: Cores, elapsed: float) -> None:
    await cores.advance_to(elapsed, extra=1)  # the subscriber waits on the clock too


async def publish(
    cores: Cores, subject: str = "orders.new", message_id: str = "", subscribers: int = 1
) -> int:
    result = await cores.bus.publish([OutgoingMessage(subject, b"{}", message_id=message_id)])
    await cores.settle(extra=subscribers)  # the subscribers have taken what they could
    return result.positions[0].sequence


async def test_an_unacked_delivery_comes_back_after_each_deadline_with_the_backoff_then_dead_letters(
    cores: Cores,
) -> None:
    async with subscriber(cores) as sub:
        sequence = await publish(cores)
        await advance_to(cores, 29.999)
        before_deadline = sub.attempts()
        await advance_to(cores, 30.999)  # deadline at 30 s, then 1 s of backoff
        before_backoff = sub.attempts()
        await advance_to(cores, 400.0)
        info = await cores.bus.consumer("audit")

    # Deadlines 30 s after each delivery; redeliveries 1, 5, 30 and 120 s after a deadline.
    assert before_deadline == [(0.0, 1)]
    assert before_backoff == [(0.0, 1)]
    assert sub.attempts() == [(0.0, 1), (31.0, 2), (66.0, 3), (126.0, 4), (276.0, 5)]
    (letter,) = await cores.store.bus_read(0, 10, subject="$DLQ.audit")
    assert letter.published_at == cores.clock.at(306.0)  # the fifth attempt's deadline
    assert (letter.headers["hms-dlq-sequence"], letter.headers["hms-dlq-attempts"]) == (str(sequence), "5")
    assert (info.num_ack_pending, info.dead_lettered) == (0, 1)


async def test_an_acked_delivery_never_comes_back(cores: Cores) -> None:
    async with subscriber(cores) as sub:
        await publish(cores)
        await advance_to(cores, 29.0)
        outcome = await sub.settle(sub.received[0][1], AckAction.ACK)
        await advance_to(cores, 1000.0)

    assert outcome is AckOutcome.ACCEPTED
    assert sub.attempts() == [(0.0, 1)]


async def test_in_progress_moves_the_ack_deadline_to_now_plus_the_ack_wait(cores: Cores) -> None:
    async with subscriber(cores) as sub:
        await publish(cores)
        await advance_to(cores, 20.0)
        await sub.settle(sub.received[0][1], AckAction.IN_PROGRESS)
        await advance_to(cores, 49.999)  # past the first deadline (30 s)
        kept = sub.attempts()
        await advance_to(cores, 51.0)  # the new deadline (50 s), then 1 s of backoff

    assert kept == [(0.0, 1)]
    assert sub.attempts() == [(0.0, 1), (51.0, 2)]


async def test_a_nack_redelivers_after_the_backoff_or_the_delay_it_asks_for(cores: Cores) -> None:
    async with subscriber(cores) as sub:
        await publish(cores)
        await advance_to(cores, 2.0)
        await sub.settle(sub.received[-1][1], AckAction.NACK)  # attempt 1: the first backoff, 1 s
        await advance_to(cores, 3.5)
        await sub.settle(sub.received[-1][1], AckAction.NACK)  # attempt 2: the second backoff, 5 s
        await advance_to(cores, 8.5)
        await sub.settle(sub.received[-1][1], AckAction.NACK, delay_s=0.25)
        await advance_to(cores, 10.0)

    assert sub.attempts() == [(0.0, 1), (3.0, 2), (8.5, 3), (8.75, 4)]


async def test_the_fifth_nack_dead_letters_at_once(cores: Cores) -> None:
    async with subscriber(cores) as sub:
        await publish(cores)
        for _ in range(5):
            await sub.settle(sub.received[-1][1], AckAction.NACK, delay_s=0.0)
            await advance_to(cores, cores.clock.elapsed)

    assert sub.attempts() == [(0.0, n) for n in range(1, 6)]
    (letter,) = await cores.store.bus_read(0, 10, subject="$DLQ.audit")
    assert (letter.published_at, letter.headers["hms-dlq-attempts"]) == (cores.clock.at(0.0), "5")


async def test_a_message_id_is_a_duplicate_for_two_minutes(cores: Cores) -> None:
    first = await publish(cores, message_id="order-1", subscribers=0)
    await cores.advance_to(119.999)
    within = await publish(cores, message_id="order-1", subscribers=0)
    await cores.advance_to(120.0)
    after = await publish(cores, message_id="order-1", subscribers=0)

    assert within == first
    assert after == first + 1


async def test_retention_by_age_removes_a_message_once_it_is_older_than_the_max_age(cores: Cores) -> None:
    await cores.bus.set_retention(RetentionPolicy("logs", 60.0, 0), remove=False)
    await publish(cores, "logs.app", subscribers=0)
    await cores.advance_to(30.0)
    await publish(cores, "logs.app", subscribers=0)

    await cores.advance_to(60.0)
    at_max_age = await cores.bus.housekeeping()
    await cores.advance_to(60.001)
    older = await cores.bus.housekeeping()
    await cores.advance_to(90.001)
    both = await cores.bus.housekeeping()

    assert (at_max_age, older, both) == (0, 1, 1)
    assert await cores.store.bus_read(0, 10) == []


async def test_the_messages_of_the_last_minute_are_counted_from_memory(cores: Cores) -> None:
    for _ in range(3):
        await publish(cores, subscribers=0)
    await cores.advance_to(30.0)
    await publish(cores, subscribers=0)
    await cores.advance_to(75.0)

    now = cores.clock.wall()
    assert cores.bus.log.published_since(now - 60) == (1, True)
    assert cores.bus.log.published_since(now - 120) == (4, True)
    assert cores.bus.log.published_since(now) == (0, True)


async def test_a_message_retention_removed_by_age_is_not_replayed_from_memory(cores: Cores) -> None:
    # The store removes it (above); the in-memory tail, which serves replays, must drop it as well.
    await cores.bus.set_retention(RetentionPolicy("logs", 60.0, 0), remove=False)
    await publish(cores, "logs.app", subscribers=0)
    await cores.advance_to(30.0)
    kept = await publish(cores, "logs.app", subscribers=0)
    await cores.advance_to(60.001)
    await cores.bus.housekeeping()

    async with subscriber(cores, Subscription(pattern="logs.>", start=StartPosition.ALL)) as replay:
        pass  # it has taken what it could

    assert [d.message.sequence for _, d in replay.received] == [kept]
