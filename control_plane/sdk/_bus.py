"""The SDK's Bus facade: `client.bus.publish / subscribe / ack`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime

import grpc
from google.protobuf import timestamp_pb2

from control_plane.sdk._errors import call, from_rpc_error
from control_plane.sdk._wire import duration
from hms.mgmt.v1 import bus_pb2 as pb
from hms.mgmt.v1 import bus_pb2_grpc


class BusSubscription:
    """An open Subscribe stream: `ready` first, then iterate deliveries; gaps are collected in `gaps`."""

    def __init__(
        self,
        stream: grpc.aio.UnaryStreamCall[pb.SubscribeRequest, pb.SubscribeResponse],
        ready: pb.SubscriptionReady,
    ) -> None:
        self._stream = stream
        self.ready = ready
        self.gaps: list[pb.Gap] = []
        self._buffer: list[pb.Delivery] = []

    @property
    def consumer(self) -> str:
        """The consumer's name (for ack and consumer info)."""
        return self.ready.consumer.name

    def __aiter__(self) -> BusSubscription:
        return self

    async def __anext__(self) -> pb.Delivery:
        while not self._buffer:
            response = await self.next_frame()
            self._buffer.extend(reversed(response.deliveries))
        return self._buffer.pop()

    async def next_frame(self) -> pb.SubscribeResponse:
        """The next whole frame (a batch of deliveries and/or a gap marker)."""
        try:
            response = await self._stream.read()
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None
        if not isinstance(response, pb.SubscribeResponse):
            raise StopAsyncIteration
        if response.HasField("gap"):
            self.gaps.append(response.gap)
        return response


class BusClient:
    """Bus calls; answers are the wire messages of `hms.mgmt.v1`."""

    def __init__(self, channel: grpc.aio.Channel, metadata: Sequence[tuple[str, str]]) -> None:
        self._stub = bus_pb2_grpc.BusStub(channel)
        self._metadata = tuple(metadata)

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        content_type: str = "",
        message_id: str = "",
    ) -> pb.PublishResponse:
        """Store one message; returns once it is on disk."""
        message = pb.BusMessage(
            subject=subject,
            data=data,
            headers=dict(headers or {}),
            content_type=content_type,
            message_id=message_id,
        )
        return await call(self._stub.Publish(pb.PublishRequest(message=message), metadata=self._metadata))

    async def publish_many(self, messages: Sequence[pb.BusMessage], *, batch_size: int = 500) -> list[int]:
        """Store many messages over one PublishStream, in batches; returns their log sequences."""
        stream = self._stub.PublishStream(metadata=self._metadata)
        sequences: list[int] = []
        try:
            for start in range(0, len(messages), batch_size):
                await stream.write(
                    pb.PublishStreamRequest(batch_id=start, messages=messages[start : start + batch_size])
                )
                response = await stream.read()
                if not isinstance(response, pb.PublishStreamResponse):
                    raise ConnectionError("publish stream ended early")
                if response.violations:
                    raise ValueError("; ".join(f"{v.field}: {v.description}" for v in response.violations))
                sequences.extend(response.sequences)
            await stream.done_writing()
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None
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
        stream = self._stub.Subscribe(request, metadata=self._metadata)
        try:
            first = await call(stream.read())
            if not isinstance(first, pb.SubscribeResponse):
                raise ConnectionError("subscribe stream closed before it was ready")
            yield BusSubscription(stream, first.ready)
        finally:
            stream.cancel()

    async def ack(self, *delivery_ids: str) -> list[pb.AckResult.ValueType]:
        """Acknowledge deliveries; one result per id."""
        items = [pb.AckItem(delivery_id=d) for d in delivery_ids]
        return list((await self.settle(items)).results)

    async def settle(self, items: Sequence[pb.AckItem]) -> pb.AckResponse:
        """Ack, nack, mark in progress or terminate deliveries (per item action)."""
        return await call(self._stub.Ack(pb.AckRequest(items=items), metadata=self._metadata))

    async def nack(self, *delivery_ids: str, delay_s: float | None = None) -> list[pb.AckResult.ValueType]:
        """Ask for redelivery, after `delay_s` or the consumer's backoff."""
        request = pb.NackRequest(delivery_ids=delivery_ids)
        if delay_s is not None:
            request.delay.CopyFrom(duration(delay_s))
        return list((await call(self._stub.Nack(request, metadata=self._metadata))).results)

    async def subjects(self, pattern: str = "") -> list[pb.SubjectInfo]:
        """Every stored subject (matching `pattern`), following pages."""
        found: list[pb.SubjectInfo] = []
        token = ""
        while True:
            response = await call(
                self._stub.ListSubjects(
                    pb.ListSubjectsRequest(pattern=pattern, page_size=1000, page_token=token),
                    metadata=self._metadata,
                )
            )
            found.extend(response.subjects)
            token = response.next_page_token
            if not token:
                return found

    async def consumers(self, include_ephemeral: bool = False) -> list[pb.ConsumerInfo]:
        """Every consumer, following pages."""
        found: list[pb.ConsumerInfo] = []
        token = ""
        while True:
            response = await call(
                self._stub.ListConsumers(
                    pb.ListConsumersRequest(
                        include_ephemeral=include_ephemeral, page_size=1000, page_token=token
                    ),
                    metadata=self._metadata,
                )
            )
            found.extend(response.consumers)
            token = response.next_page_token
            if not token:
                return found

    async def consumer_info(self, name: str) -> pb.ConsumerInfo:
        """One consumer's configuration and state."""
        response = await call(
            self._stub.GetConsumerInfo(pb.GetConsumerInfoRequest(name=name), metadata=self._metadata)
        )
        return response.consumer

    async def set_retention(
        self, subject_prefix: str, *, max_age_s: float = 0.0, max_messages: int = 0, remove: bool = False
    ) -> pb.RetentionPolicy:
        """Set (or remove) the retention of a subject prefix; returns the policy now in force."""
        policy = pb.RetentionPolicy(subject_prefix=subject_prefix, max_messages=max_messages)
        if max_age_s:
            policy.max_age.CopyFrom(duration(max_age_s))
        request = pb.SetRetentionRequest(policy=policy, remove=remove)
        return (await call(self._stub.SetRetention(request, metadata=self._metadata))).policy

    async def delete_consumer(self, name: str) -> None:
        """Remove a durable consumer."""
        await call(self._stub.DeleteConsumer(pb.DeleteConsumerRequest(name=name), metadata=self._metadata))
