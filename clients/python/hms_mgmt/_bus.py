"""The SDK's Bus facade: `client.bus.publish / subscribe / ack`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import TypeVar

import grpc
from google.protobuf import timestamp_pb2

from hms.mgmt.v1 import bus_pb2 as pb
from hms_mgmt._endpoints import Endpoint, Endpoints, ResumableCall, read
from hms_mgmt._errors import call
from hms_mgmt._wire import duration
from hms_mgmt.limits import MAX_BATCH_BYTES
from hms_mgmt.types import Delivery, Published

SubscribeCall = grpc.aio.UnaryStreamCall[pb.SubscribeRequest, pb.SubscribeResponse]
T = TypeVar("T")


class BusSubscription:
    """An open Subscribe stream: `ready` first, then iterate deliveries; gaps are collected in `gaps`.

    With several addresses, a durable subscription whose replica goes away subscribes again on the
    next one under the same durable name: the consumer's position and unacked deliveries are kept
    by the control plane, so nothing is lost (unacked deliveries come again). An ephemeral one ends
    with `Unavailable`, as its consumer went with the replica.
    """

    def __init__(
        self, endpoints: Endpoints, request: pb.SubscribeRequest, metadata: tuple[tuple[str, str], ...]
    ) -> None:
        self._request = request
        self._metadata = metadata
        self.ready = pb.SubscriptionReady()
        self.gaps: list[pb.Gap] = []
        self._buffer: list[Delivery] = []
        self._stream: ResumableCall[SubscribeCall] = ResumableCall(endpoints, self._open)

    @property
    def consumer(self) -> str:
        """The consumer's name (for ack and consumer info)."""
        return self.ready.consumer.name

    @property
    def endpoint(self) -> Endpoint:
        """The replica this subscription's stream is on: its acks go there."""
        return self._stream.endpoint

    def _open(self, endpoint: Endpoint) -> SubscribeCall:
        return endpoint.bus.Subscribe(self._resume_request(), metadata=self._metadata)

    def _resume_request(self) -> pb.SubscribeRequest:
        """The request, once subscribed starting no earlier than the first subscription did.

        The control plane ignores start options when a durable consumer resumes; should a replica not
        know the consumer, this starts it where this subscription started, never from the user's
        (possibly much older) start position.
        """
        if not self.ready.start_sequence:
            return self._request
        request = pb.SubscribeRequest()
        request.CopyFrom(self._request)
        request.start = pb.START_POSITION_FROM_SEQUENCE
        request.start_sequence = self.ready.start_sequence
        request.ClearField("start_time")
        return request

    async def start(self) -> None:
        """Wait for the `ready` frame: from then on the subscription is in place."""
        first = await self._stream.step(read)
        if not isinstance(first, pb.SubscribeResponse):
            raise ConnectionError("subscribe stream closed before it was ready")
        self.ready = first.ready
        self._stream.resumable = bool(self._request.durable)

    def cancel(self) -> None:
        """End the subscription's stream."""
        self._stream.cancel()

    def __aiter__(self) -> BusSubscription:
        return self

    async def __anext__(self) -> Delivery:
        while not self._buffer:
            response = await self.next_frame()
            self._buffer.extend(Delivery.from_proto(d) for d in reversed(response.deliveries))
        return self._buffer.pop()

    async def next_frame(self) -> pb.SubscribeResponse:
        """The next whole frame (a batch of deliveries and/or a gap marker)."""
        while True:
            response = await self._stream.step(read)
            if not isinstance(response, pb.SubscribeResponse):
                raise StopAsyncIteration
            if not response.HasField("ready"):
                break
            # Subscribed again on another replica; keep the first `ready` (and its start_sequence).
        if response.HasField("gap"):
            self.gaps.append(response.gap)
        return response


class BusClient:
    """Bus calls: publish answers `Published`, subscriptions yield `Delivery` values (types.py); the
    listings (subjects, consumers, retention) and `next_frame` are still the wire messages of `hms.mgmt.v1`.
    """

    def __init__(self, endpoints: Endpoints, metadata: Sequence[tuple[str, str]]) -> None:
        self._endpoints = endpoints
        self._metadata = tuple(metadata)
        self._subscriptions: dict[str, BusSubscription] = {}  # open ones, by consumer: where acks go

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        content_type: str = "",
        message_id: str = "",
    ) -> Published:
        """Store one message; returns once it is on disk.

        Retried on the next replica only with a `message_id`, which the control plane deduplicates.
        """
        message = pb.BusMessage(
            subject=subject,
            data=data,
            headers=dict(headers or {}),
            content_type=content_type,
            message_id=message_id,
        )
        request = pb.PublishRequest(message=message)
        response = await self._endpoints.unary(
            lambda e: e.bus.Publish(request, metadata=self._metadata), retry=bool(message_id)
        )
        return Published.from_proto(response)

    async def publish_many(self, messages: Sequence[pb.BusMessage], *, batch_size: int = 500) -> list[int]:
        """Store many messages over one PublishStream, in batches; returns their log sequences.

        A batch holds at most `batch_size` messages and 4 MiB of them encoded (the contract's limit),
        so 1 MiB messages go three to a batch. Sent again whole on the next replica only when every
        message has a `message_id`.
        """
        return await self._endpoints.unary(
            lambda e: self._publish_stream(e, messages, batch_size),
            retry=all(m.message_id for m in messages),
        )

    async def _publish_stream(
        self, endpoint: Endpoint, messages: Sequence[pb.BusMessage], batch_size: int
    ) -> list[int]:
        stream = endpoint.bus.PublishStream(metadata=self._metadata)
        sequences: list[int] = []
        try:
            for start, batch in _batches(messages, batch_size):
                await stream.write(pb.PublishStreamRequest(batch_id=start, messages=batch))
                response = await stream.read()
                if not isinstance(response, pb.PublishStreamResponse):
                    raise ConnectionError("publish stream ended early")
                if response.violations:
                    raise ValueError("; ".join(f"{v.field}: {v.description}" for v in response.violations))
                sequences.extend(response.sequences)
            await stream.done_writing()
        except BaseException:
            stream.cancel()
            raise
        return sequences

    @contextlib.asynccontextmanager
    async def subscribe(
        self,
        pattern: str,
        *,
        durable: str = "",
        queue_group: str = "",
        explicit_ack: bool = False,
        start: pb.StartPosition.ValueType = pb.START_POSITION_NEW_ONLY,
        start_sequence: int = 0,
        start_time: datetime | None = None,
        ack_wait_s: float | None = None,
        max_deliveries: int = 0,
        backoff_s: Sequence[float] = (),
        dead_letter_subject: str = "",
        max_in_flight: int = 0,
        max_batch: int = 0,
    ) -> AsyncIterator[BusSubscription]:
        """A subscription that is in place when the block starts (its `ready` frame was read)."""
        request = pb.SubscribeRequest(
            pattern=pattern,
            durable=durable,
            queue_group=queue_group,
            start=start,
            start_sequence=start_sequence,
            ack_mode=pb.ACK_MODE_EXPLICIT if explicit_ack else pb.ACK_MODE_NONE,
            max_deliveries=max_deliveries,
            backoff=[duration(b) for b in backoff_s],
            dead_letter_subject=dead_letter_subject,
            max_in_flight=max_in_flight,
            max_batch=max_batch,
        )
        if ack_wait_s is not None:
            request.ack_wait.CopyFrom(duration(ack_wait_s))
        if start_time is not None:
            stamp = timestamp_pb2.Timestamp()
            stamp.FromDatetime(start_time)
            request.start_time.CopyFrom(stamp)
        subscription = BusSubscription(self._endpoints, request, self._metadata)
        try:
            await subscription.start()
            self._subscriptions[subscription.consumer] = subscription
            yield subscription
        finally:
            subscription.cancel()
            if self._subscriptions.get(subscription.consumer) is subscription:
                del self._subscriptions[subscription.consumer]

    def _endpoint_for(self, delivery_id: str) -> Endpoint:
        """Where to settle a delivery: the replica of its consumer's open stream here, else the current one."""
        # The control plane names a delivery "<consumer>/<sequence>/<attempt>" (core/bus/consumer.py).
        subscription = self._subscriptions.get(delivery_id.rsplit("/", 2)[0])
        return subscription.endpoint if subscription is not None else self._endpoints.current

    async def _per_endpoint(
        self,
        delivery_ids: Sequence[str],
        send: Callable[[Endpoint, list[int]], Awaitable[Sequence[pb.AckResult.ValueType]]],
    ) -> list[pb.AckResult.ValueType]:
        """Send the deliveries of each replica to it (`send` gets the positions); results in request order."""
        groups: dict[Endpoint, list[int]] = {}
        for position, delivery_id in enumerate(delivery_ids):
            groups.setdefault(self._endpoint_for(delivery_id), []).append(position)
        if not groups:
            groups[self._endpoints.current] = []
        results: list[pb.AckResult.ValueType] = [pb.ACK_RESULT_UNSPECIFIED] * len(delivery_ids)
        for endpoint, positions in groups.items():
            for position, result in zip(positions, await send(endpoint, positions), strict=True):
                results[position] = result
        return results

    async def ack(self, *delivery_ids: str) -> list[pb.AckResult.ValueType]:
        """Acknowledge deliveries; one result per id."""
        items = [pb.AckItem(delivery_id=d) for d in delivery_ids]
        return list((await self.settle(items)).results)

    async def settle(self, items: Sequence[pb.AckItem]) -> pb.AckResponse:
        """Ack, nack, mark in progress or terminate deliveries (per item action).

        Each goes to the replica its subscription's stream is on, and is not retried elsewhere: if that
        replica is gone, the delivery comes again on the resumed stream.
        """

        async def send(endpoint: Endpoint, positions: list[int]) -> Sequence[pb.AckResult.ValueType]:
            request = pb.AckRequest(items=[items[p] for p in positions])
            return (await call(endpoint.bus.Ack(request, metadata=self._metadata))).results

        return pb.AckResponse(results=await self._per_endpoint([i.delivery_id for i in items], send))

    async def nack(self, *delivery_ids: str, delay_s: float | None = None) -> list[pb.AckResult.ValueType]:
        """Ask for redelivery, after `delay_s` or the consumer's backoff."""

        async def send(endpoint: Endpoint, positions: list[int]) -> Sequence[pb.AckResult.ValueType]:
            request = pb.NackRequest(delivery_ids=[delivery_ids[p] for p in positions])
            if delay_s is not None:
                request.delay.CopyFrom(duration(delay_s))
            return (await call(endpoint.bus.Nack(request, metadata=self._metadata))).results

        return await self._per_endpoint(delivery_ids, send)

    async def subjects(self, pattern: str = "") -> list[pb.SubjectInfo]:
        """Every stored subject (matching `pattern`), following pages."""
        found: list[pb.SubjectInfo] = []
        token = ""
        while True:
            request = pb.ListSubjectsRequest(pattern=pattern, page_size=1000, page_token=token)
            response = await self._subjects_page(request)
            found.extend(response.subjects)
            token = response.next_page_token
            if not token:
                return found

    async def consumers(self, include_ephemeral: bool = False) -> list[pb.ConsumerInfo]:
        """Every consumer, following pages."""
        found: list[pb.ConsumerInfo] = []
        token = ""
        while True:
            request = pb.ListConsumersRequest(
                include_ephemeral=include_ephemeral, page_size=1000, page_token=token
            )
            response = await self._consumers_page(request)
            found.extend(response.consumers)
            token = response.next_page_token
            if not token:
                return found

    async def _subjects_page(self, request: pb.ListSubjectsRequest) -> pb.ListSubjectsResponse:
        return await self._read(lambda e: e.bus.ListSubjects(request, metadata=self._metadata))

    async def _consumers_page(self, request: pb.ListConsumersRequest) -> pb.ListConsumersResponse:
        return await self._read(lambda e: e.bus.ListConsumers(request, metadata=self._metadata))

    async def consumer_info(self, name: str) -> pb.ConsumerInfo:
        """One consumer's configuration and state."""
        request = pb.GetConsumerInfoRequest(name=name)
        response = await self._read(lambda e: e.bus.GetConsumerInfo(request, metadata=self._metadata))
        return response.consumer

    async def set_retention(
        self, subject_prefix: str, *, max_age_s: float = 0.0, max_messages: int = 0, remove: bool = False
    ) -> pb.RetentionPolicy:
        """Set (or remove) the retention of a subject prefix; returns the policy now in force."""
        policy = pb.RetentionPolicy(subject_prefix=subject_prefix, max_messages=max_messages)
        if max_age_s:
            policy.max_age.CopyFrom(duration(max_age_s))
        request = pb.SetRetentionRequest(policy=policy, remove=remove)
        # Setting the same policy twice is harmless, so it is retried like a read.
        response = await self._read(lambda e: e.bus.SetRetention(request, metadata=self._metadata))
        return response.policy

    async def retention(self) -> list[pb.RetentionPolicy]:
        """Every retention policy in force, the default ("") included."""
        request = pb.ListRetentionRequest()
        response = await self._read(lambda e: e.bus.ListRetention(request, metadata=self._metadata))
        return list(response.policies)

    async def delete_consumer(self, name: str) -> None:
        """Remove a durable consumer."""
        request = pb.DeleteConsumerRequest(name=name)
        await self._endpoints.unary(lambda e: e.bus.DeleteConsumer(request, metadata=self._metadata))

    async def _read(self, send: Callable[[Endpoint], Awaitable[T]]) -> T:
        """A call that changes nothing (or nothing more when repeated): retried on the next replica."""
        return await self._endpoints.unary(send, retry=True)


def _batches(messages: Sequence[pb.BusMessage], batch_size: int) -> list[tuple[int, Sequence[pb.BusMessage]]]:
    """(index of the first, messages) of each batch: at most `batch_size` and MAX_BATCH_BYTES encoded.

    The server counts a batch's bytes without field tags (`message_bytes`), never more than this.
    """
    batches: list[tuple[int, Sequence[pb.BusMessage]]] = []
    start, size = 0, 0
    for index, message in enumerate(messages):
        weight = message.ByteSize()
        if index > start and (index - start == batch_size or size + weight > MAX_BATCH_BYTES):
            batches.append((start, messages[start:index]))
            start, size = index, 0
        size += weight
    if start < len(messages):
        batches.append((start, messages[start:]))
    return batches
