"""A consumer: a cursor over the log shared by its subscribers, and (explicit acks) its unsettled deliveries."""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import logging
import operator
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple, overload

from control_plane.core.bus.log import MessageLog
from control_plane.core.bus.stats import consumer_label
from control_plane.core.bus.subjects import Pattern
from control_plane.core.signal import Signal, Wait, wait_any
from control_plane.errors import FailedPrecondition, NotFound
from control_plane.limits import FRAME_BYTES
from control_plane.models import AckMode, ConsumerConfig, OutgoingMessage, StoredMessage, message_bytes
from control_plane.storage.base import Store

logger = logging.getLogger(__name__)


class AckAction(StrEnum):
    """What a subscriber does with one delivery."""

    ACK = "ack"
    NACK = "nack"
    IN_PROGRESS = "in_progress"
    TERMINATE = "terminate"


class AckOutcome(StrEnum):
    """What became of one settle request."""

    ACCEPTED = "accepted"
    ALREADY_ACKED = "already_acked"
    STALE = "stale"
    NOT_FOUND = "not_found"


class Delivery(NamedTuple):
    """One message handed to a subscriber, as one numbered attempt (NamedTuple: built per message)."""

    message: StoredMessage
    delivery_id: str
    attempt: int
    consumer: str


# Delivery(...) runs a NamedTuple's Python-level __new__; tuple.__new__ builds the same value in C.
_new_delivery = functools.partial(tuple.__new__, Delivery)
_MESSAGE = operator.itemgetter(0)  # a Delivery's message, read in C


class LiveDeliveries(Sequence[Delivery]):
    """At-most-once deliveries of one consumer: each message's first and only attempt, without an id.

    Held as the messages themselves: a Delivery per message per subscriber (a tuple the garbage collector
    tracks) cost the at-most-once path about 4% of the control plane's CPU with the young collections its
    allocations set off (py-spy). The frame encoder reads `messages`; iterating or indexing builds
    Deliveries as asked.
    """

    __slots__ = ("consumer", "messages")

    def __init__(self, messages: list[StoredMessage], consumer: str) -> None:
        self.messages = messages
        self.consumer = consumer

    def __len__(self) -> int:
        return len(self.messages)

    @overload
    def __getitem__(self, index: int) -> Delivery: ...

    @overload
    def __getitem__(self, index: slice) -> list[Delivery]: ...

    def __getitem__(self, index: int | slice) -> Delivery | list[Delivery]:
        if isinstance(index, slice):
            return [_new_delivery((m, "", 1, self.consumer)) for m in self.messages[index]]
        return _new_delivery((self.messages[index], "", 1, self.consumer))

    def __iter__(self) -> Iterator[Delivery]:
        consumer = self.consumer
        return (_new_delivery((m, "", 1, consumer)) for m in self.messages)


def delivered_messages(deliveries: Sequence[Delivery]) -> list[StoredMessage]:
    """The messages of `deliveries`, in order."""
    if isinstance(deliveries, LiveDeliveries):
        return deliveries.messages
    return list(map(_MESSAGE, deliveries))


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages an at-most-once subscriber skipped because it fell too far behind."""

    first_sequence: int
    last_sequence: int
    skipped: int


@dataclass(frozen=True, slots=True)
class Batch:
    """What one read hands a subscriber: at most its max_batch messages and about FRAME_BYTES of them
    (`message_bytes`; a larger message comes alone), so a frame stays far below the gRPC message limit.
    """

    deliveries: Sequence[Delivery]
    gap: Gap | None = None


@dataclass(slots=True)
class _Pending:
    attempt: int
    member: int | None
    deadline: float = 0.0  # ack deadline while a member holds it
    due: float = 0.0  # earliest redelivery while released


@dataclass(slots=True)
class Member:
    """One subscriber stream attached to a consumer."""

    id: int
    max_in_flight: int
    max_batch: int
    held: set[int] = field(default_factory=set)


def delivery_id(consumer: str, sequence: int, attempt: int, tag: str) -> str:
    """The opaque id of one delivery attempt; `tag` is the consumer's (see Bus.consumer_tag)."""
    return f"{consumer}/{sequence}/{attempt}.{tag}"


def _count(text: str) -> bool:
    """ASCII digits of a 64-bit count ("²".isdigit() is true too, and int() refuses it)."""
    return text.isascii() and text.isdigit() and len(text) <= 18


def parse_delivery_id(text: str) -> tuple[str, int, int, str] | None:
    """(consumer, sequence, attempt, tag) of a delivery id, or None when it is not one."""
    name, _, rest = text.rpartition("/")
    consumer, _, sequence = name.rpartition("/")
    attempt, _, tag = rest.partition(".")
    if not consumer or not _count(sequence) or not _count(attempt) or int(attempt) < 1 or not tag:
        return None
    return consumer, int(sequence), int(attempt), tag


class Consumer:
    """Hands messages after its cursor to its members: each message to one member, acked or not."""

    def __init__(
        self,
        config: ConsumerConfig,
        pattern: Pattern,
        log: MessageLog,
        store: Store,
        *,
        cursor: int,
        dead_lettered: int = 0,
        pending: dict[int, int] | None = None,
        tag: str = "",
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        wait: Wait = wait_any,
    ) -> None:
        self.config = config
        self.tag = tag
        self.pattern = pattern
        self.cursor = cursor
        self.dead_lettered = dead_lettered
        self.members: dict[int, Member] = {}
        self.last_active = 0.0
        self._log = log
        self._stats = log.stats
        self._label = consumer_label(config.name, config.durable)
        self._store = store
        self._now = monotonic
        self._wall = wall_clock
        self._wait = wait  # times ack deadlines and redelivery backoff on the `monotonic` clock
        self._ids = itertools.count(1)
        self._claim = asyncio.Lock()
        self._changed = Signal()
        self._closed: Exception | None = None
        self._pending: dict[int, _Pending] = {}
        self._deadlines: list[tuple[float, int, int]] = []
        self._due: list[tuple[float, int, int]] = []
        now = monotonic()
        for sequence, attempt in sorted((pending or {}).items()):
            # Restored deliveries belong to nobody: they go out again as soon as a subscriber asks.
            self._pending[sequence] = _Pending(attempt, None, due=now)
            heapq.heappush(self._due, (now, sequence, attempt))

    @property
    def name(self) -> str:
        """The consumer's name."""
        return self.config.name

    @property
    def explicit(self) -> bool:
        """Whether deliveries must be acknowledged."""
        return self.config.ack_mode is AckMode.EXPLICIT

    @property
    def num_ack_pending(self) -> int:
        """Delivered and not yet settled."""
        return len(self._pending)

    @property
    def num_redelivered(self) -> int:
        """Unsettled deliveries that went out more than once."""
        return sum(1 for p in self._pending.values() if p.attempt > 1)

    @property
    def ack_floor(self) -> int:
        """Every matching message at or below this sequence is settled."""
        return min(self._pending, default=self.cursor + 1) - 1

    # -- members --------------------------------------------------------------------------------

    def attach(self, max_in_flight: int, max_batch: int) -> Member:
        """Add a subscriber; a durable without a queue group takes one at a time."""
        if self._closed is not None:
            raise NotFound("consumer", self.name)
        if self.config.durable and not self.config.queue_group and self.members:
            raise FailedPrecondition(
                f"durable consumer {self.name!r} already has a subscriber; give a queue_group to share it"
            )
        member = Member(next(self._ids), max_in_flight, max_batch)
        self.members[member.id] = member
        self.last_active = self._wall()
        self._changed.notify()
        return member

    def detach(self, member: Member) -> None:
        """Remove a subscriber; what it held but did not settle goes to the others at once."""
        self.members.pop(member.id, None)
        now = self._now()
        for sequence in member.held:
            pending = self._pending.get(sequence)
            if pending is not None and pending.member == member.id:
                self._release(sequence, pending, now)
        member.held.clear()
        self._changed.notify()

    def close(self, reason: Exception) -> None:
        """End every member's stream with `reason` (consumer deleted, shutdown)."""
        self._closed = reason
        self._changed.notify()

    # -- delivering -----------------------------------------------------------------------------

    async def take(self, member: Member) -> Batch:
        """The next batch for `member`, waiting until there is one."""
        while True:
            if self._closed is not None:
                raise self._closed
            now = self._now()
            batch = await (self._take_explicit(member, now) if self.explicit else self._take_live(member))
            if batch.deliveries or batch.gap:
                self.last_active = self._wall()
                self._stats.count_delivered(delivered_messages(batch.deliveries))
                if batch.gap is not None:
                    self._stats.count_gap(batch.gap.skipped)
                return batch
            next_timer = self._next_timer(member)
            delay = None if next_timer is None else max(0.0, next_timer - self._now())
            others = [self._changed.waiter()]
            if self.explicit and len(member.held) >= member.max_in_flight:
                await self._wait(others, delay)  # no credit: only a settle, a release or a timer helps
            else:
                await self._log.wait_beyond(self.cursor, others, delay, self._wait)

    async def _take_live(self, member: Member) -> Batch:
        async with self._claim:
            gap = self._skip_if_behind(member)
            messages, self.cursor = await self._log.read(
                self.cursor, member.max_batch, self.pattern, FRAME_BYTES
            )
        if self.config.durable and (messages or gap):
            await self._store.bus_record_deliveries(self.name, self.cursor, [])
        return Batch(LiveDeliveries(messages, self.name), gap)

    def _skip_if_behind(self, member: Member) -> Gap | None:
        # Checked only while the backlog is in memory: a reader behind the in-memory tail catches up
        # from the store page by page, which costs the control plane no memory.
        if self._log.last_sequence - self.cursor <= member.max_in_flight:
            return None
        backlog = self._log.count_after(self.cursor, self.pattern)
        if backlog is None or backlog <= member.max_in_flight:
            return None
        skipped, scanned = self._log.read_tail(self.cursor, backlog - member.max_in_flight, self.pattern)
        self.cursor = scanned
        return Gap(skipped[0].sequence, skipped[-1].sequence, len(skipped))

    async def _take_explicit(self, member: Member, now: float) -> Batch:
        await self._expire(now)
        room = min(member.max_in_flight - len(member.held), member.max_batch)
        if room <= 0:
            return Batch([])
        claimed = await self._redeliveries(member, room, now)
        space = FRAME_BYTES - sum(message_bytes(m) for m in claimed)
        if len(claimed) < room and space > 0:
            async with self._claim:
                messages, self.cursor = await self._log.read(
                    self.cursor, room - len(claimed), self.pattern, space, first_free=not claimed
                )
                for message in messages:
                    self._hold(member, message.sequence, _Pending(1, member.id), now)
                claimed += messages
        if not claimed:
            return Batch([])
        attempts = [(m.sequence, self._pending[m.sequence].attempt) for m in claimed]
        if self.config.durable:
            await self._store.bus_record_deliveries(self.name, self.cursor, attempts)
        return Batch(
            [
                Delivery(m, delivery_id(self.name, m.sequence, attempt, self.tag), attempt, self.name)
                for m, (_, attempt) in zip(claimed, attempts, strict=True)
            ]
        )

    def _hold(self, member: Member, sequence: int, pending: _Pending, now: float) -> None:
        pending.member = member.id
        pending.deadline = now + self.config.ack_wait_s
        self._pending[sequence] = pending
        member.held.add(sequence)
        heapq.heappush(self._deadlines, (pending.deadline, sequence, pending.attempt))

    def _release(self, sequence: int, pending: _Pending, due: float) -> None:
        holder = self.members.get(pending.member) if pending.member is not None else None
        if holder is not None:
            holder.held.discard(sequence)
        pending.member = None
        pending.due = due
        heapq.heappush(self._due, (due, sequence, pending.attempt))

    async def _redeliveries(self, member: Member, room: int, now: float) -> list[StoredMessage]:
        ready: list[int] = []
        while self._due and self._due[0][0] <= now and len(ready) < room:
            _, sequence, attempt = heapq.heappop(self._due)
            pending = self._pending.get(sequence)
            if pending is None or pending.member is not None or pending.attempt != attempt:
                continue  # settled, or a stale heap entry
            if pending.due > now:
                heapq.heappush(self._due, (pending.due, sequence, attempt))
                continue
            ready.append(sequence)
        if not ready:
            return []
        found, reached = await self._log.fetch_within(ready, FRAME_BYTES)
        for sequence in ready[reached:]:  # beyond this frame's bytes: still due, for the next frame
            pending = self._pending.get(sequence)
            if pending is not None and pending.member is None:
                heapq.heappush(self._due, (pending.due, sequence, pending.attempt))
        ready = ready[:reached]
        gone = [s for s in ready if s not in found]
        for sequence in gone:  # removed by retention: nothing left to deliver
            self._pending.pop(sequence, None)
        if gone and self.config.durable:
            await self._store.bus_settle(self.name, gone)
        messages = [found[s] for s in ready if s in found]
        for message in messages:
            pending = self._pending.get(message.sequence)
            if pending is None or pending.member is not None:
                continue
            pending.attempt += 1
            self._hold(member, message.sequence, pending, now)
            self._stats.count_redelivery(self._label)
        return [m for m in messages if self._pending.get(m.sequence, _Pending(0, None)).member == member.id]

    async def _expire(self, now: float) -> None:
        """Deliveries whose ack deadline passed: redeliver later, or dead-letter the last attempt."""
        while self._deadlines and self._deadlines[0][0] <= now:
            _, sequence, attempt = heapq.heappop(self._deadlines)
            pending = self._pending.get(sequence)
            if pending is None or pending.member is None or pending.attempt != attempt:
                continue
            if pending.deadline > now:  # extended by in-progress
                heapq.heappush(self._deadlines, (pending.deadline, sequence, attempt))
                continue
            if attempt >= self.config.max_deliveries:
                await self._dead_letter(sequence, f"max_deliveries ({attempt} attempts)")
            else:
                self._release(sequence, pending, now + self._backoff(attempt))

    def _backoff(self, attempt: int) -> float:
        backoff = self.config.backoff_s
        return backoff[min(attempt, len(backoff)) - 1] if backoff else 0.0

    def _next_timer(self, member: Member) -> float | None:
        times = []
        if self._deadlines:
            times.append(self._deadlines[0][0])
        if self._due and len(member.held) < member.max_in_flight:
            times.append(self._due[0][0])
        return min(times) if times else None

    async def _dead_letter(self, sequence: int, reason: str) -> None:
        pending = self._pending.pop(sequence, None)
        if pending is None:
            return
        holder = self.members.get(pending.member) if pending.member is not None else None
        if holder is not None:
            holder.held.discard(sequence)
        found = await self._log.fetch([sequence])
        original = found.get(sequence)
        if original is None:
            if self.config.durable:
                await self._store.bus_settle(self.name, [sequence])
            return
        letter = OutgoingMessage(
            subject=self.config.dead_letter_subject,
            data=original.data,
            headers={
                **original.headers,
                "hms-dlq-subject": original.subject,
                "hms-dlq-sequence": str(sequence),
                "hms-dlq-consumer": self.name,
                "hms-dlq-attempts": str(pending.attempt),
                "hms-dlq-reason": reason,
            },
            content_type=original.content_type,
        )
        now = self._wall()
        if self.config.durable:
            stored = await self._store.bus_dead_letter(self.name, sequence, letter, now=now)
            self._log.add([stored])
        else:
            await self._log.append([letter], now=now, dedup_window_s=0.0)
        self.dead_lettered += 1
        self._stats.count_dead_letter(self._label)
        logger.info("dead-lettered %s of consumer %s to %s: %s", sequence, self.name, letter.subject, reason)

    # -- settling -------------------------------------------------------------------------------

    async def settle(
        self,
        sequence: int,
        attempt: int,
        action: AckAction,
        *,
        delay_s: float | None = None,
        reason: str = "",
    ) -> AckOutcome:
        """Apply one ack, nack, in-progress or terminate to a delivery attempt."""
        pending = self._pending.get(sequence)
        if pending is None:
            return AckOutcome.ALREADY_ACKED if sequence <= self.cursor else AckOutcome.NOT_FOUND
        if pending.attempt != attempt:
            return AckOutcome.STALE if attempt < pending.attempt else AckOutcome.NOT_FOUND
        now = self._now()
        self.last_active = self._wall()
        match action:
            case AckAction.ACK:
                self._forget(sequence, pending)
                if self.config.durable:
                    await self._store.bus_settle(self.name, [sequence])
            case AckAction.NACK:
                if attempt >= self.config.max_deliveries:
                    await self._dead_letter(sequence, f"max_deliveries ({attempt} attempts)")
                else:
                    self._release(
                        sequence, pending, now + (self._backoff(attempt) if delay_s is None else delay_s)
                    )
            case AckAction.IN_PROGRESS:
                if pending.member is not None:
                    pending.deadline = now + self.config.ack_wait_s
            case AckAction.TERMINATE:
                await self._dead_letter(sequence, f"terminated: {reason}" if reason else "terminated")
        self._changed.notify()
        return AckOutcome.ACCEPTED

    async def ack_many(self, items: list[tuple[int, int]]) -> list[AckOutcome]:
        """Plain acks of many deliveries, settled in one store write."""
        outcomes: list[AckOutcome] = []
        settled: list[int] = []
        for sequence, attempt in items:
            pending = self._pending.get(sequence)
            if pending is None:
                outcomes.append(AckOutcome.ALREADY_ACKED if sequence <= self.cursor else AckOutcome.NOT_FOUND)
            elif pending.attempt != attempt:
                outcomes.append(AckOutcome.STALE if attempt < pending.attempt else AckOutcome.NOT_FOUND)
            else:
                self._forget(sequence, pending)
                settled.append(sequence)
                outcomes.append(AckOutcome.ACCEPTED)
        if settled:
            self._compact_timers()
            self.last_active = self._wall()
            if self.config.durable:
                await self._store.bus_settle(self.name, settled)
            self._changed.notify()
        return outcomes

    def _compact_timers(self) -> None:
        # Settled deliveries leave their heap entries behind (removing from a heap is O(n)); rebuild
        # once stale entries dominate, so memory follows what is pending, not what was delivered.
        if len(self._deadlines) > 2 * len(self._pending) + 1024:
            self._deadlines = [
                (p.deadline, s, p.attempt) for s, p in self._pending.items() if p.member is not None
            ]
            heapq.heapify(self._deadlines)
        if len(self._due) > 2 * len(self._pending) + 1024:
            self._due = [(p.due, s, p.attempt) for s, p in self._pending.items() if p.member is None]
            heapq.heapify(self._due)

    def _forget(self, sequence: int, pending: _Pending) -> None:
        del self._pending[sequence]
        holder = self.members.get(pending.member) if pending.member is not None else None
        if holder is not None:
            holder.held.discard(sequence)
