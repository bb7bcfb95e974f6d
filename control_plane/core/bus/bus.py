"""The Bus: validates publishes and subscriptions, owns the log and the consumers, keeps retention."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace

from control_plane.core.bus.consumer import AckAction, AckOutcome, Consumer, Member, parse_delivery_id
from control_plane.core.bus.log import MessageLog
from control_plane.core.bus.stats import BusStats
from control_plane.core.bus.subjects import (
    check_pattern,
    check_subject,
    compile_pattern,
    engine_owned,
    prefix_covers,
)
from control_plane.core.limits import (
    ACK_WAIT_S,
    MAX_ACK_DELAY_S,
    MAX_ACK_ITEMS,
    MAX_ACK_REASON,
    MAX_BACKOFF_ENTRIES,
    MAX_BACKOFF_S,
    MAX_BATCH,
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    MAX_CONTENT_TYPE,
    MAX_DATA,
    MAX_DELIVERIES,
    MAX_HEADER_KEY,
    MAX_HEADER_VALUE,
    MAX_HEADERS,
    MAX_IN_FLIGHT_EXPLICIT,
    MAX_IN_FLIGHT_NONE,
    MAX_MESSAGE_ID,
    MAX_RETENTION_AGE_S,
)
from control_plane.core.loops import Guard, on_signal
from control_plane.core.signal import Signal, Wait, wait_any
from control_plane.core.signing import Signer
from control_plane.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
    quote,
)
from control_plane.models import (
    AckMode,
    AppendResult,
    ConsumerConfig,
    OutgoingMessage,
    Position,
    RetentionPolicy,
    StartPosition,
    StoredConsumer,
    StoredMessage,
    SubjectStats,
    message_bytes,
)
from control_plane.models.bus import (
    OUTGOING_CONTENT_TYPE,
    OUTGOING_DATA,
    OUTGOING_HEADERS,
    OUTGOING_MESSAGE_ID,
    OUTGOING_SUBJECT,
)
from control_plane.settings import BusSettings
from control_plane.storage.base import Store

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
DLQ_PREFIX = "$DLQ"
# Headers a dead letter gets (its original subject, sequence, consumer, attempts, reason), and the one a
# replayed copy gets instead.
_DLQ_HEADERS = "hms-dlq-"
_DLQ_ORIGINAL = "hms-dlq-subject"
_REPLAYED_FROM = "hms-replayed-from"
# Replicas follow each other's publishes by notification; this bounds the delay if one is lost.
_FOLLOW_FALLBACK_S = 5.0


@dataclass(frozen=True, slots=True)
class Subscription:
    """What a subscriber asks for; zero values mean the consumer's stored value or the default."""

    pattern: str
    durable: str = ""
    queue_group: str = ""
    start: StartPosition = StartPosition.NEW_ONLY
    start_sequence: int = 0
    start_time: float | None = None
    ack_mode: AckMode = AckMode.NONE
    ack_wait_s: float = 0.0
    max_deliveries: int = 0
    dead_letter_subject: str = ""
    max_in_flight: int = 0
    backoff_s: tuple[float, ...] | None = None
    max_batch: int = 0


@dataclass(frozen=True, slots=True)
class Subscribed:
    """A subscriber attached to its consumer, ready to `take` batches."""

    consumer: Consumer
    member: Member
    created: bool
    start_sequence: int


@dataclass(frozen=True, slots=True)
class AckRequestItem:
    """One delivery to settle."""

    delivery_id: str
    action: AckAction = AckAction.ACK
    delay_s: float | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ConsumerView:
    """A consumer's configuration and state, for debugging."""

    config: ConsumerConfig
    delivered_sequence: int
    ack_floor_sequence: int
    num_pending: int
    num_ack_pending: int
    num_redelivered: int
    dead_lettered: int
    active_subscribers: int
    last_active_at: float


class Bus:
    """Durable publish/subscribe: one log, consumers with cursors, acks and redelivery."""

    def __init__(
        self,
        store: Store,
        settings: BusSettings,
        *,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        wait: Wait = wait_any,
    ) -> None:
        self._store = store
        self._settings = settings
        self._wall = wall_clock
        self._now = monotonic
        self._wait = wait  # handed to consumers: times their ack deadlines and redeliveries
        self.stats = BusStats()
        self.log = MessageLog(store, settings.tail_size, settings.tail_bytes, self.stats)
        self._consumers: dict[str, Consumer] = {}
        self._signer: Signer | None = None
        self._tags: dict[str, str] = {}
        self._create_lock = asyncio.Lock()
        self._closed = False
        self._cluster = store.cluster
        self._follow_wakeup = Signal()
        self._cluster.subscribe("bus", lambda _: self._follow_wakeup.notify())

    async def load(self) -> None:
        """Reload the log position and every durable consumer."""
        self._signer = Signer(await self._store.secret("delivery_ids"))
        await self.log.load()
        for stored in await self._store.bus_load_consumers():
            self._consumers[stored.config.name] = self._consumer(
                stored.config, stored.delivered_sequence, stored.dead_lettered, stored.pending
            )

    async def run(self, stop: asyncio.Event) -> None:
        """Enforce retention and the dedup window (on the leader), follow other replicas, until `stop`."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._housekeep(stop))
            if self._cluster.shared:
                # Woken by other replicas' notifications, or by a gap in the log.
                signals = (self._follow_wakeup, self.log.gap)
                follow = on_signal(
                    stop, self.log.catch_up, signals, _FOLLOW_FALLBACK_S, "following the bus log"
                )
                tasks.create_task(follow)

    async def _housekeep(self, stop: asyncio.Event) -> None:
        guard = Guard("bus housekeeping", stop)
        while not stop.is_set():
            if not guard.failures:  # after a failure the backoff has waited
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._settings.housekeeping_interval_s)
            if not stop.is_set():
                # The leader trims the store; the others keep their memory in step with it.
                await guard.run(self.housekeeping if self._cluster.leader else self._forget_expired_now)

    async def housekeeping(self) -> int:
        """Trim stored messages to their retention policies and forget expired message ids; returns removals."""
        now = self._wall()
        policies = await self.retention()
        removed = await self._store.bus_apply_retention(policies, now=now)
        await self._store.bus_prune_dedup(now - self._settings.dedup_window_s)
        if removed:
            logger.info("retention removed %d messages", removed)
        self.forget_expired(policies, now)
        return removed

    async def _forget_expired_now(self) -> None:
        self.forget_expired(await self.retention(), self._wall())

    def forget_expired(self, policies: list[RetentionPolicy], now: float) -> None:
        """Drop from the in-memory tail what the policies remove from the store (by the same rules), so
        that a replay from the tail gives only what the store retains."""

        def removed(message: StoredMessage, last_subject_sequence: int) -> bool:
            policy = _policy_for(policies, message.subject)
            if policy.max_age_s and message.published_at < now - policy.max_age_s:
                return True
            return bool(policy.max_messages) and (
                message.subject_sequence <= last_subject_sequence - policy.max_messages
            )

        self.log.forget(removed)

    def close(self) -> None:
        """End every subscriber stream (shutdown)."""
        self._closed = True
        for consumer in self._consumers.values():
            consumer.close(Unavailable("the control plane is shutting down; resubscribe to resume"))

    # -- publishing -----------------------------------------------------------------------------

    async def publish(self, batch: list[OutgoingMessage], field: str = "messages") -> AppendResult:
        """Validate and store a batch atomically; acknowledged once on disk."""
        violations = self.check_batch(batch, field)
        if violations:
            raise InvalidArgument(violations)
        return await self.append_checked(batch)

    async def append_checked(self, batch: list[OutgoingMessage]) -> AppendResult:
        """Store a batch that `check_batch` found valid (spares the hot path a second check)."""
        if self._closed:
            raise Unavailable("the control plane is shutting down")
        return await self.log.append(batch, now=self._wall(), dedup_window_s=self._settings.dedup_window_s)

    def check_batch(self, batch: list[OutgoingMessage], field: str) -> list[FieldViolation]:
        """Every problem of a batch to publish, with paths under `field` ("message" for a single one)."""
        if not batch:
            return [FieldViolation(field, "at least one message is required")]
        if _plainly_valid(batch):
            return []
        violations = []
        if len(batch) > MAX_BATCH_MESSAGES:
            violations.append(FieldViolation(field, f"at most {MAX_BATCH_MESSAGES} messages per batch"))
        size = 0
        # The hot path of every publish: a message with a subject already found clean in this batch, no
        # headers and fields within their limits has nothing check_message could find, so it is counted
        # without building its field path or calling it.
        clean: set[str] = set()
        for index, message in enumerate(batch):
            subject, data, headers, content_type, message_id = message[:5]
            if (
                subject in clean
                and not headers
                and len(data) <= MAX_DATA
                and len(content_type) <= MAX_CONTENT_TYPE
                and len(message_id) <= MAX_MESSAGE_ID
            ):
                size += len(data) + len(subject) + len(content_type) + len(message_id)
                continue
            found = check_message(field if field == "message" else f"{field}[{index}]", message)
            if found:
                violations += found
            else:
                clean.add(subject)
            size += message_bytes(message)
        if size > MAX_BATCH_BYTES:
            violations.append(
                FieldViolation(
                    field,
                    f"a batch carries at most {MAX_BATCH_BYTES} bytes of data, subjects, headers, content "
                    f"types and ids (got {size})",
                )
            )
        return violations

    # -- subscribing ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def subscribe(self, request: Subscription) -> AsyncIterator[Subscribed]:
        """Attach a subscriber to its consumer (creating it if needed) for the duration of the block."""
        self._check_subscription(request)
        if self._closed:
            raise Unavailable("the control plane is shutting down")
        async with self._create_lock:
            consumer, created = await self._consumer_for(request)
            explicit = consumer.explicit
            default_in_flight = (
                self._settings.max_in_flight_explicit if explicit else self._settings.max_in_flight_none
            )
            member = consumer.attach(
                request.max_in_flight or default_in_flight, request.max_batch or self._settings.max_batch
            )
        try:
            yield Subscribed(consumer, member, created, consumer.cursor + 1)
        finally:
            consumer.detach(member)
            if not consumer.config.durable and not consumer.members:
                self._consumers.pop(consumer.name, None)

    async def _consumer_for(self, request: Subscription) -> tuple[Consumer, bool]:
        name = request.durable or self._ephemeral_name(request)
        existing = self._consumers.get(name)
        if request.durable and self._cluster.shared and (existing is None or not existing.members):
            # Another replica may have served this consumer since: take its position from the store.
            existing = await self._reload_durable(name)
        if existing is not None:
            if request.durable:
                await self._update_durable(existing, request)
            return existing, False
        s = self._settings
        config = ConsumerConfig(
            name=name,
            durable=bool(request.durable),
            pattern=request.pattern,
            queue_group=request.queue_group,
            ack_mode=request.ack_mode,
            ack_wait_s=request.ack_wait_s or s.ack_wait_s,
            max_deliveries=request.max_deliveries or s.max_deliveries,
            backoff_s=request.backoff_s if request.backoff_s is not None else s.backoff_s,
            dead_letter_subject=request.dead_letter_subject or f"{DLQ_PREFIX}.{name}",
            created_at=self._wall(),
        )
        cursor = await self._start_cursor(request)
        if config.durable:
            await self._store.bus_save_consumer(config, cursor)
        consumer = self._consumer(config, cursor, 0, {})
        self._consumers[name] = consumer
        return consumer, True

    async def _reload_durable(self, name: str) -> Consumer | None:
        stored = await self._store.bus_load_consumer(name)
        if stored is None:
            self._consumers.pop(name, None)
            return None
        local = self._consumers.get(name)
        if local is not None and not self._stale(local, stored):
            return local
        consumer = self._stored_consumer(stored)
        self._consumers[name] = consumer
        return consumer

    async def _update_durable(self, consumer: Consumer, request: Subscription) -> None:
        config = consumer.config
        for field, wanted, stored in (
            ("pattern", request.pattern, config.pattern),
            ("queue_group", request.queue_group, config.queue_group),
            ("ack_mode", request.ack_mode, config.ack_mode),
        ):
            if wanted != stored:
                raise FailedPrecondition(
                    f"durable consumer {config.name!r} has {field} {stored!r}, not {wanted!r}; "
                    "delete the consumer to change it"
                )
        updated = replace(
            config,
            ack_wait_s=request.ack_wait_s or config.ack_wait_s,
            max_deliveries=request.max_deliveries or config.max_deliveries,
            backoff_s=request.backoff_s if request.backoff_s is not None else config.backoff_s,
            dead_letter_subject=request.dead_letter_subject or config.dead_letter_subject,
        )
        if updated != config:
            await self._store.bus_save_consumer(updated, consumer.cursor)
            consumer.config = updated

    def _ephemeral_name(self, request: Subscription) -> str:
        if request.queue_group:
            # Members of one ephemeral queue group share a consumer: same pattern, same group.
            digest = hashlib.sha256(request.pattern.encode()).hexdigest()[:12]
            return f"_q-{request.queue_group}-{digest}"
        return f"_eph-{uuid.uuid4().hex[:12]}"

    async def _start_cursor(self, request: Subscription) -> int:
        match request.start:
            case StartPosition.ALL:
                return 0
            case StartPosition.FROM_SEQUENCE:
                return max(0, request.start_sequence - 1)
            case StartPosition.FROM_TIME:
                assert request.start_time is not None
                return await self._store.bus_first_sequence_at(request.start_time) - 1
            case _:
                return self.log.last_sequence

    def _consumer(
        self, config: ConsumerConfig, cursor: int, dead_lettered: int, pending: dict[int, int]
    ) -> Consumer:
        return Consumer(
            config,
            compile_pattern(config.pattern),
            self.log,
            self._store,
            cursor=cursor,
            dead_lettered=dead_lettered,
            pending=pending,
            tag=self.consumer_tag(config.name),
            monotonic=self._now,
            wall_clock=self._wall,
            wait=self._wait,
        )

    def consumer_tag(self, name: str) -> str:
        """The MAC that every delivery id of consumer `name` carries.

        Delivery ids name their consumer, sequence and attempt, which anyone can guess; the tag, made
        with a key only the control plane knows, proves the id was handed to a subscriber of that
        consumer, so nobody else can ack (or dead-letter) its messages. One MAC per consumer rather
        than per delivery keeps the hot path free of hashing; it is the same on every replica and
        after restarts, so an ack still counts wherever it lands.
        """
        tag = self._tags.get(name)
        if tag is None:
            if self._signer is None:
                raise RuntimeError("Bus.load() must run before consumers exist")
            tag = self._tags[name] = self._signer.sign(name).rpartition(".")[2]
        return tag

    def _check_subscription(self, r: Subscription) -> None:
        violations = check_pattern("pattern", r.pattern)
        for field, value in (("durable", r.durable), ("queue_group", r.queue_group)):
            if value and not _NAME.match(value):
                violations.append(
                    FieldViolation(field, "1 to 128 characters of letters, digits, '_' and '-'")
                )
        if r.start is StartPosition.FROM_SEQUENCE and r.start_sequence < 1:
            violations.append(
                FieldViolation("start_sequence", "must be at least 1 with START_POSITION_FROM_SEQUENCE")
            )
        if r.start is StartPosition.FROM_TIME and r.start_time is None:
            violations.append(FieldViolation("start_time", "is required with START_POSITION_FROM_TIME"))
        if r.ack_wait_s and not ACK_WAIT_S[0] <= r.ack_wait_s <= ACK_WAIT_S[1]:
            violations.append(FieldViolation("ack_wait", "must be between 1s and 12h"))
        if not 0 <= r.max_deliveries <= MAX_DELIVERIES:
            violations.append(FieldViolation("max_deliveries", f"must be between 1 and {MAX_DELIVERIES}"))
        limit = MAX_IN_FLIGHT_EXPLICIT if r.ack_mode is AckMode.EXPLICIT else MAX_IN_FLIGHT_NONE
        if not 0 <= r.max_in_flight <= limit:
            violations.append(
                FieldViolation("max_in_flight", f"must be between 1 and {limit} in this ack mode")
            )
        if not 0 <= r.max_batch <= MAX_BATCH:
            violations.append(FieldViolation("max_batch", f"must be between 1 and {MAX_BATCH}"))
        if r.backoff_s is not None:
            if len(r.backoff_s) > MAX_BACKOFF_ENTRIES:
                violations.append(FieldViolation("backoff", f"at most {MAX_BACKOFF_ENTRIES} entries"))
            for n, delay in enumerate(r.backoff_s):
                if not 0 <= delay <= MAX_BACKOFF_S:
                    violations.append(FieldViolation(f"backoff[{n}]", "must be between 0s and 1h"))
        if r.dead_letter_subject:
            violations += check_subject("dead_letter_subject", r.dead_letter_subject)
            if engine_owned(r.dead_letter_subject):
                violations.append(FieldViolation("dead_letter_subject", _ENGINE_OWNED))
            if not violations and compile_pattern(r.pattern).matches(r.dead_letter_subject):
                violations.append(
                    FieldViolation(
                        "dead_letter_subject", "must not match the pattern (dead letters would loop)"
                    )
                )
        if violations:
            raise InvalidArgument(violations)

    # -- acknowledging --------------------------------------------------------------------------

    async def nack(self, delivery_ids: list[str], delay_s: float | None) -> list[AckOutcome]:
        """Redeliver deliveries (after `delay_s`, or each consumer's backoff); checked as a Nack request."""
        if delay_s is not None and not 0 <= delay_s <= MAX_ACK_DELAY_S:
            raise InvalidArgument.field("delay", "must be between 0s and 12h")
        items = [AckRequestItem(d, AckAction.NACK, delay_s=delay_s) for d in delivery_ids]
        return await self.ack(items, field="delivery_ids", id_path="")

    async def ack(
        self, items: list[AckRequestItem], *, field: str = "items", id_path: str = ".delivery_id"
    ) -> list[AckOutcome]:
        """Settle many deliveries; a malformed id rejects the whole request before anything changes.

        `field` and `id_path` name the list and each id in violations ("items[3].delivery_id").
        """
        if not items:
            raise InvalidArgument.field(field, "at least one is required")
        if len(items) > MAX_ACK_ITEMS:
            raise InvalidArgument.field(field, f"at most {MAX_ACK_ITEMS} per request")
        parsed = []
        violations = []
        for index, item in enumerate(items):
            ref = parse_delivery_id(item.delivery_id)
            if ref is None or not hmac.compare_digest(ref[3].encode(), self.consumer_tag(ref[0]).encode()):
                ref = None
                violations.append(
                    FieldViolation(
                        f"{field}[{index}]{id_path}", "not a delivery id issued by this control plane"
                    )
                )
            if item.delay_s is not None and not 0 <= item.delay_s <= MAX_ACK_DELAY_S:
                violations.append(FieldViolation(f"items[{index}].delay", "must be between 0s and 12h"))
            if len(item.reason) > MAX_ACK_REASON:
                violations.append(
                    FieldViolation(f"items[{index}].reason", f"at most {MAX_ACK_REASON} characters")
                )
            parsed.append(ref)
        if violations:
            raise InvalidArgument(violations)
        refs = [ref for ref in parsed if ref is not None]
        outcomes: list[AckOutcome | None] = [None] * len(items)
        # Plain acks of one consumer settle together, in one store write.
        plain: dict[str, list[int]] = {}
        for index, (item, ref) in enumerate(zip(items, refs, strict=True)):
            consumer = self._consumers.get(ref[0])
            if consumer is None:
                outcomes[index] = AckOutcome.NOT_FOUND
            elif item.action is AckAction.ACK:
                plain.setdefault(ref[0], []).append(index)
            else:
                outcomes[index] = await consumer.settle(
                    ref[1], ref[2], item.action, delay_s=item.delay_s, reason=item.reason
                )
        for name, indexes in plain.items():
            results = await self._consumers[name].ack_many([(refs[i][1], refs[i][2]) for i in indexes])
            for index, outcome in zip(indexes, results, strict=True):
                outcomes[index] = outcome
        return [o if o is not None else AckOutcome.NOT_FOUND for o in outcomes]

    # -- inspecting -----------------------------------------------------------------------------

    async def consumers(self, include_ephemeral: bool) -> list[ConsumerView]:
        """Every durable consumer (and ephemeral ones when asked), by name."""
        consumers = dict(self._consumers)
        if self._cluster.shared:
            # Durable consumers as stored: others may have created, served or deleted them.
            stored = {s.config.name: s for s in await self._store.bus_load_consumers()}
            for name, consumer in list(consumers.items()):
                if consumer.config.durable and name not in stored and not consumer.members:
                    del consumers[name]
            for name, state in stored.items():
                if self._stale(consumers.get(name), state):
                    consumers[name] = self._stored_consumer(state)
        return [
            await self._view(c)
            for name, c in sorted(consumers.items())
            if include_ephemeral or c.config.durable
        ]

    async def consumer(self, name: str) -> ConsumerView:
        """One consumer; NotFound when there is none of that name."""
        consumer = self._consumers.get(name)
        if self._cluster.shared and (consumer is None or not consumer.members):
            stored = await self._store.bus_load_consumer(name)
            if stored is not None and self._stale(consumer, stored):
                consumer = self._stored_consumer(stored)
        if consumer is None:
            raise NotFound("consumer", name)
        return await self._view(consumer)

    @staticmethod
    def _stale(local: Consumer | None, stored: StoredConsumer) -> bool:
        """Whether another replica served a consumer since this one did (its stored position is ahead).

        Otherwise what this replica holds is newer: its last settles may still be on their way to the store.
        """
        return local is None or (not local.members and stored.delivered_sequence > local.cursor)

    def _stored_consumer(self, stored: StoredConsumer) -> Consumer:
        """A view-only consumer built from its stored state (not attached here)."""
        return self._consumer(stored.config, stored.delivered_sequence, stored.dead_lettered, stored.pending)

    async def delete_consumer(self, name: str) -> None:
        """Remove a durable consumer; its subscribers' streams end with NOT_FOUND."""
        consumer = self._consumers.get(name)
        if consumer is not None and not consumer.config.durable:
            raise NotFound("durable consumer", name)
        deleted = await self._store.bus_delete_consumer(name)
        if consumer is None and not (self._cluster.shared and deleted):
            raise NotFound("durable consumer", name)
        if consumer is not None:
            del self._consumers[name]
            consumer.close(NotFound("consumer", name))
        self.stats.forget_consumer(name)

    def subscribers(self) -> tuple[int, int]:
        """Subscriber streams attached here: (to durable consumers, to ephemeral ones)."""
        durable = ephemeral = 0
        for consumer in self._consumers.values():
            if consumer.config.durable:
                durable += len(consumer.members)
            else:
                ephemeral += len(consumer.members)
        return durable, ephemeral

    async def _view(self, c: Consumer) -> ConsumerView:
        pending = self.log.count_after(c.cursor, c.pattern)
        if pending is None:
            pending = await self._count_after(c)
        return ConsumerView(
            config=c.config,
            delivered_sequence=c.cursor,
            ack_floor_sequence=c.ack_floor,
            num_pending=pending,
            num_ack_pending=c.num_ack_pending,
            num_redelivered=c.num_redelivered,
            dead_lettered=c.dead_lettered,
            active_subscribers=len(c.members),
            last_active_at=c.last_active,
        )

    async def _count_after(self, c: Consumer) -> int:
        count, after = 0, c.cursor
        while after < self.log.last_sequence:
            found, scanned = await self.log.read(after, 10_000, c.pattern)
            count += len(found)
            if scanned == after:
                break
            after = scanned
        return count

    async def subjects(self, pattern: str) -> list[tuple[SubjectStats, RetentionPolicy]]:
        """Stored subjects (matching `pattern` if given) with the retention that applies to each."""
        if pattern:
            violations = check_pattern("pattern", pattern)
            if violations:
                raise InvalidArgument(violations)
        compiled = compile_pattern(pattern) if pattern else None
        policies = await self.retention()
        return [
            (stats, _policy_for(policies, stats.subject))
            for stats in await self._store.bus_subject_stats()
            if compiled is None or compiled.matches(stats.subject)
        ]

    async def dead_letters(self, subject: str, after: int, limit: int) -> list[StoredMessage]:
        """Up to `limit` messages of a dead-letter subject after a log sequence, oldest first."""
        if not subject.startswith(DLQ_PREFIX + "."):
            raise InvalidArgument.field("subject", f"not a dead-letter subject ({DLQ_PREFIX}.<consumer>)")
        violations = check_subject("subject", subject)
        if violations:
            raise InvalidArgument(violations)
        found: list[StoredMessage] = []
        while len(found) < limit:
            page, scanned = await self.log.read(after, limit - len(found), compile_pattern(subject))
            found += page
            if scanned == after or scanned >= self.log.last_sequence:
                break
            after = scanned
        return found

    async def replay_dead_letter(self, sequence: int) -> tuple[StoredMessage, Position]:
        """Publish a dead letter again on the subject it was first published on, with its data and headers.

        The copy carries `hms-replayed-from: <dead-letter subject>#<sequence>` and a message id derived from
        it, so a replay repeated within the dedup window publishes nothing more. Returns the dead letter
        and where its copy sits in the log.
        """
        letter = (await self.log.fetch([sequence])).get(sequence)
        if letter is None or not letter.subject.startswith(DLQ_PREFIX + "."):
            raise NotFound("dead letter", str(sequence))
        original = letter.headers.get(_DLQ_ORIGINAL)
        if not original:
            raise FailedPrecondition(
                f"message {sequence} on {letter.subject} does not name its original subject"
            )
        headers = {k: v for k, v in letter.headers.items() if not k.startswith(_DLQ_HEADERS)}
        copy = OutgoingMessage(
            subject=original,
            data=letter.data,
            headers=headers,
            content_type=letter.content_type,
            message_id=f"replay:{letter.subject}:{sequence}",
        )
        violations = self.check_batch([copy], "message")
        if violations:
            raise InvalidArgument(violations)
        # Added after the check: `hms-` headers are the control plane's own, refused from publishers.
        marked = copy._replace(headers={**headers, _REPLAYED_FROM: f"{letter.subject}#{sequence}"})
        result = await self.append_checked([marked])
        return letter, result.positions[0]

    async def retention(self) -> list[RetentionPolicy]:
        """Every policy in force, the default (prefix "") first."""
        stored = {p.subject_prefix: p for p in await self._store.bus_retention()}
        default = stored.pop(
            "",
            RetentionPolicy("", self._settings.retention_max_age_s, self._settings.retention_max_messages),
        )
        return [default, *sorted(stored.values(), key=lambda p: p.subject_prefix)]

    async def set_retention(self, policy: RetentionPolicy, *, remove: bool) -> RetentionPolicy:
        """Store or remove a prefix's policy; returns the policy now in force for that prefix."""
        violations = (
            check_subject("policy.subject_prefix", policy.subject_prefix) if policy.subject_prefix else []
        )
        if not 0 <= policy.max_age_s <= MAX_RETENTION_AGE_S:
            violations.append(
                FieldViolation("policy.max_age", "must be between 0 (no age limit) and 100 years")
            )
        if policy.max_messages < 0:
            violations.append(FieldViolation("policy.max_messages", "must not be negative"))
        if violations:
            raise InvalidArgument(violations)
        await self._store.bus_set_retention(policy.subject_prefix, None if remove else policy)
        return _policy_for(await self.retention(), policy.subject_prefix)


_ENGINE_OWNED = (
    "subjects workflow.<definition>.<process id>.<event> are the workflow engine's own: it alone "
    "publishes (and numbers) a process's events"
)


def check_message(field: str, message: OutgoingMessage) -> list[FieldViolation]:
    """Every problem of one message to publish, with paths under `field`."""
    violations = check_subject(f"{field}.subject", message.subject)
    if engine_owned(message.subject):
        violations.append(FieldViolation(f"{field}.subject", _ENGINE_OWNED))
    if len(message.data) > MAX_DATA:
        violations.append(
            FieldViolation(f"{field}.data", f"at most {MAX_DATA} bytes (got {len(message.data)})")
        )
    if len(message.headers) > MAX_HEADERS:
        violations.append(FieldViolation(f"{field}.headers", f"at most {MAX_HEADERS} entries"))
    for key, value in message.headers.items():
        if not key or len(key) > MAX_HEADER_KEY:
            violations.append(
                FieldViolation(f"{field}.headers", f"keys must be 1 to {MAX_HEADER_KEY} characters")
            )
        elif key.startswith("hms-"):
            violations.append(
                FieldViolation(f"{field}.headers[{quote(key, 32)}]", "keys starting with 'hms-' are reserved")
            )
        if len(value) > MAX_HEADER_VALUE:
            violations.append(
                FieldViolation(f"{field}.headers[{quote(key, 32)}]", f"at most {MAX_HEADER_VALUE} characters")
            )
    if len(message.content_type) > MAX_CONTENT_TYPE:
        violations.append(FieldViolation(f"{field}.content_type", f"at most {MAX_CONTENT_TYPE} characters"))
    if len(message.message_id) > MAX_MESSAGE_ID:
        violations.append(FieldViolation(f"{field}.message_id", f"at most {MAX_MESSAGE_ID} characters"))
    return violations


def _plainly_valid(batch: list[OutgoingMessage]) -> bool:
    """Whether a batch has nothing `check_batch` could find, tried by passes that run in C (the hot path of
    every publish): no headers, every field within its limit, each distinct subject checked once, the whole
    within the byte limit. False sends the batch through the check message by message, which names what
    is wrong where.
    """
    if len(batch) > MAX_BATCH_MESSAGES or any(map(OUTGOING_HEADERS, batch)):
        return False
    sizes = [
        list(map(len, map(get, batch)))
        for get in (OUTGOING_SUBJECT, OUTGOING_DATA, OUTGOING_CONTENT_TYPE, OUTGOING_MESSAGE_ID)
    ]
    _, data, content_types, message_ids = sizes
    if max(data) > MAX_DATA or max(content_types) > MAX_CONTENT_TYPE or max(message_ids) > MAX_MESSAGE_ID:
        return False
    if sum(map(sum, sizes)) > MAX_BATCH_BYTES:
        return False
    return not any(
        check_message("", OutgoingMessage(subject, b"")) for subject in set(map(OUTGOING_SUBJECT, batch))
    )


def _policy_for(policies: list[RetentionPolicy], subject: str) -> RetentionPolicy:
    """The policy with the longest prefix covering `subject` (the default covers everything)."""
    best = policies[0]
    for policy in policies[1:]:
        if prefix_covers(policy.subject_prefix, subject) and len(policy.subject_prefix) > len(
            best.subject_prefix
        ):
            best = policy
    return best
