"""Bus servicer: translates the wire API to `core.bus.Bus`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from typing import Any

import grpc

from control_plane.core.bus.bus import Bus
from control_plane.core.paging import page
from control_plane.observability import tracing
from control_plane.observability.bus_tracing import carry_trace, delivered
from control_plane.servicers import bus_convert as convert
from control_plane.servicers import bus_frames as frames
from control_plane.servicers.convert import seconds, timestamp
from control_plane.servicers.errors import translate_errors
from control_plane.servicers.streams import until_stopped
from hms.mgmt.v1 import bus_pb2 as pb
from hms.mgmt.v1 import bus_pb2_grpc, common_pb2

Context = grpc.aio.ServicerContext[Any, Any]

# Batches of one PublishStream being stored at once. A publisher sending one message per request at
# 1,000/s has as many requests in flight as arrive during a commit: with 4 (as before) a commit slower
# than 4 ms (a slow disk's fsync) queued them without end. Bounded by count and by their requests'
# bytes, so one stream holds at most a few MiB however large its batches.
_PUBLISH_AHEAD = 256
_PUBLISH_AHEAD_BYTES = 8 * 1024 * 1024


class _Budget:
    """Bytes of a stream's requests being stored; the reader waits while they fill the budget.

    One request is always let in when none is held, even one larger than the whole budget.
    """

    def __init__(self, limit: int) -> None:
        self._free = self._limit = limit
        self._changed = asyncio.Event()

    async def take(self, size: int) -> None:
        while self._free < size and self._free < self._limit:
            self._changed.clear()
            await self._changed.wait()
        self._free -= size

    def given(self, size: int, _: object = None) -> None:
        """`size` bytes are free again (also a done callback of the task that held them)."""
        self._free += size
        self._changed.set()


class BusServicer(bus_pb2_grpc.BusServicer):
    """Thin: each method converts, calls the bus and converts back."""

    def __init__(self, bus: Bus, stopping: asyncio.Event) -> None:
        self._bus = bus
        self._stopping = stopping

    @translate_errors
    async def Publish(self, request: pb.PublishRequest, context: Context) -> pb.PublishResponse:
        messages = [convert.outgoing(request.message)]
        if tracing.enabled():
            messages = carry_trace(messages)
        result = await self._bus.publish(messages, field="message")
        position = result.positions[0]
        return pb.PublishResponse(
            sequence=position.sequence,
            subject_sequence=position.subject_sequence,
            duplicate=bool(result.duplicates),
            published_at=timestamp(position.published_at),
        )

    @translate_errors
    async def PublishStream(
        self, request_iterator: AsyncIterator[pb.PublishStreamRequest], context: Context
    ) -> AsyncIterator[pb.PublishStreamResponse]:
        # A reader stores up to _PUBLISH_AHEAD batches concurrently (their commits overlap); answers go
        # back in request order. The reader hands over each batch's task, then None at the end of the
        # stream or its error: one queue, so answering costs no task and no asyncio.wait per batch.
        answers: asyncio.Queue[asyncio.Task[pb.PublishStreamResponse] | Exception | None] = asyncio.Queue()
        ahead = asyncio.Semaphore(_PUBLISH_AHEAD)
        budget = _Budget(_PUBLISH_AHEAD_BYTES)

        async def read() -> None:
            try:
                async for request in until_stopped(request_iterator, self._stopping):
                    size = request.ByteSize()
                    await ahead.acquire()
                    await budget.take(size)
                    task = asyncio.ensure_future(self._publish_batch(request))
                    task.add_done_callback(functools.partial(budget.given, size))
                    answers.put_nowait(task)
            except Exception as exc:  # the stream's end (shutdown, undecodable request) reaches the answers
                answers.put_nowait(exc)
            else:
                answers.put_nowait(None)

        reader = asyncio.ensure_future(read())
        try:
            while (answer := await answers.get()) is not None:
                if isinstance(answer, Exception):
                    raise answer
                ahead.release()
                yield await answer
        finally:
            reader.cancel()
            while not answers.empty():
                leftover = answers.get_nowait()
                if isinstance(leftover, asyncio.Task):
                    leftover.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _publish_batch(self, request: pb.PublishStreamRequest) -> pb.PublishStreamResponse:
        batch = convert.outgoing_batch(request.messages)
        if tracing.enabled():
            batch = carry_trace(batch)
        violations = self._bus.check_batch(batch, "messages")
        if violations:
            return pb.PublishStreamResponse(
                batch_id=request.batch_id,
                violations=[
                    common_pb2.FieldViolation(field=v.field, description=v.description) for v in violations
                ],
            )
        result = await self._bus.append_checked(batch)
        sequences, subject_sequences = result.numbers()
        response = pb.PublishStreamResponse(
            batch_id=request.batch_id,
            sequences=sequences,
            subject_sequences=subject_sequences,
            duplicates=result.duplicates,
        )
        # The batch's time: its new messages share it; a duplicate carries its first publish's, older.
        response.published_at.CopyFrom(timestamp(result.published_at))
        return response

    @translate_errors
    async def Subscribe(  # type: ignore[override]  # frames may come encoded: see bus_frames
        self, request: pb.SubscribeRequest, context: Context
    ) -> AsyncIterator[pb.SubscribeResponse | bytes]:
        async with self._bus.subscribe(convert.subscription(request)) as subscribed:
            info = convert.consumer_info(await self._bus.consumer(subscribed.consumer.name))
            yield pb.SubscribeResponse(
                ready=pb.SubscriptionReady(
                    consumer=info, created=subscribed.created, start_sequence=subscribed.start_sequence
                )
            )
            traced = tracing.enabled()
            while True:
                batch = await subscribed.consumer.take(subscribed.member)
                if traced:
                    delivered(batch, request.pattern)
                # Encoded here, straight to wire bytes, unless a delivery carries headers (decoding.clean
                # has the stream's serializer pass bytes through).
                yield (
                    frames.frame(batch)
                    if frames.encodable(batch.deliveries)
                    else convert.batch_response(batch)
                )

    @translate_errors
    async def Ack(self, request: pb.AckRequest, context: Context) -> pb.AckResponse:
        outcomes = await self._bus.ack(
            [convert.ack_item(i, f"items[{n}]") for n, i in enumerate(request.items)]
        )
        return pb.AckResponse(results=[convert.outcome(o) for o in outcomes])

    @translate_errors
    async def Nack(self, request: pb.NackRequest, context: Context) -> pb.NackResponse:
        delay = seconds(request.delay, "delay") if request.HasField("delay") else None
        outcomes = await self._bus.nack(list(request.delivery_ids), delay)
        return pb.NackResponse(results=[convert.outcome(o) for o in outcomes])

    @translate_errors
    async def ListSubjects(
        self, request: pb.ListSubjectsRequest, context: Context
    ) -> pb.ListSubjectsResponse:
        subjects = await self._bus.subjects(request.pattern)
        chunk, token = page(
            subjects, lambda s: s[0].subject, request.page_size, request.page_token, "subjects"
        )
        return pb.ListSubjectsResponse(
            subjects=[convert.subject_info(stats, policy) for stats, policy in chunk], next_page_token=token
        )

    @translate_errors
    async def ListConsumers(
        self, request: pb.ListConsumersRequest, context: Context
    ) -> pb.ListConsumersResponse:
        views = await self._bus.consumers(request.include_ephemeral)
        chunk, token = page(
            views, lambda v: v.config.name, request.page_size, request.page_token, "consumers"
        )
        return pb.ListConsumersResponse(
            consumers=[convert.consumer_info(v) for v in chunk], next_page_token=token
        )

    @translate_errors
    async def GetConsumerInfo(
        self, request: pb.GetConsumerInfoRequest, context: Context
    ) -> pb.GetConsumerInfoResponse:
        return pb.GetConsumerInfoResponse(
            consumer=convert.consumer_info(await self._bus.consumer(request.name))
        )

    @translate_errors
    async def DeleteConsumer(
        self, request: pb.DeleteConsumerRequest, context: Context
    ) -> pb.DeleteConsumerResponse:
        await self._bus.delete_consumer(request.name)
        return pb.DeleteConsumerResponse()

    @translate_errors
    async def SetRetention(
        self, request: pb.SetRetentionRequest, context: Context
    ) -> pb.SetRetentionResponse:
        policy = await self._bus.set_retention(convert.retention_from_proto(request), remove=request.remove)
        return pb.SetRetentionResponse(policy=convert.retention_policy(policy))

    @translate_errors
    async def ListRetention(
        self, request: pb.ListRetentionRequest, context: Context
    ) -> pb.ListRetentionResponse:
        policies = await self._bus.retention()
        return pb.ListRetentionResponse(policies=[convert.retention_policy(p) for p in policies])
