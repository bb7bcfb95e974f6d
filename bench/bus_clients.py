"""Bus clients of the bus group, one per child process, on the raw generated stubs (no SDK).

- `publish ADDRESS SUBJECT`: 128 B messages flat out over one PublishStream, `--batch` per request
  and `--ahead` requests unanswered; counts stored messages as their answers arrive.
- `paced ADDRESS SUBJECT --rate R --count N`: N messages at R/s on an absolute schedule, each sent
  the moment it is due as its own PublishStream request (a batch of 1), carrying its sequence
  number and send time; exits once all are answered, reporting publish round trips.
- `subscribe ADDRESS PATTERN`: an at-most-once subscription (ack mode NONE, NEW_ONLY); counts
  deliveries and gap markers; with `--last-seq` it reads the stamps and reports latencies.
- `consume ADDRESS PATTERN --durable NAME`: an at-least-once durable consumer (ack mode EXPLICIT)
  that acks every delivery, many per Ack request, `--ack-ahead` requests in flight; counts accepted acks.

The reporting protocol (readiness line, buckets, SIGUSR1) is `bench.bus_flow`'s.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import struct
import time
from collections.abc import AsyncIterator

import grpc

from bench.bus_flow import Report, Tally, configure_child_logging, until_finished, write_report
from hms.mgmt.v1 import bus_pb2, bus_pb2_grpc

logger = logging.getLogger("bench.bus_clients")

PAYLOAD_BYTES = 128
MAX_ACK_ITEMS = 10_000
# Sequence number and CLOCK_MONOTONIC send time, at the start of a stamped payload.
STAMP = struct.Struct("<qd")

SubscribeCall = grpc.aio.UnaryStreamCall[bus_pb2.SubscribeRequest, bus_pb2.SubscribeResponse]


def stamped(seq: int, sent: float, size: int = PAYLOAD_BYTES) -> bytes:
    """A payload of `size` bytes starting with `seq` and `sent`."""
    return STAMP.pack(seq, sent).ljust(size, b".")


async def publish(address: str, subject: str, batch: int, ahead: int, tally: Tally) -> None:
    """Publish batches of `batch` messages until cancelled, `ahead` unanswered at a time."""
    async with grpc.aio.insecure_channel(address) as channel:
        await channel.channel_ready()
        call = bus_pb2_grpc.BusStub(channel).PublishStream()
        message = bus_pb2.BusMessage(subject=subject, data=b"m" * PAYLOAD_BYTES)
        request = bus_pb2.PublishStreamRequest(messages=[message] * batch)
        credit = asyncio.Semaphore(ahead)
        logger.info("publisher ready: %d messages of %d B per batch, %d ahead", batch, PAYLOAD_BYTES, ahead)

        async def answers() -> None:
            async for response in call:
                if response.violations:
                    raise RuntimeError(f"batch {response.batch_id} rejected: {response.violations}")
                tally.add(len(response.sequences), time.monotonic())
                credit.release()
            raise RuntimeError("PublishStream ended while publishing")

        async def requests() -> None:
            for batch_id in itertools.count(1):
                await credit.acquire()
                # write() serializes before it suspends, so reusing the request is safe.
                request.batch_id = batch_id
                await call.write(request)

        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(answers())
                tasks.create_task(requests())
        finally:
            call.cancel()


async def paced(
    address: str, subject: str, rate: float, count: int, measure_after: int, report: Report
) -> None:
    """Publish `count` stamped messages at `rate`/s, each as its own batch; record round trips after warm-up."""
    sent: dict[int, float] = {}
    async with grpc.aio.insecure_channel(address) as channel:
        await channel.channel_ready()
        call = bus_pb2_grpc.BusStub(channel).PublishStream()
        logger.info("publisher ready: %d stamped messages at %g/s", count, rate)

        async def answers() -> None:
            answered = 0
            async for response in call:
                arrived = time.monotonic()
                if response.violations:
                    raise RuntimeError(f"batch {response.batch_id} rejected: {response.violations}")
                if response.batch_id > measure_after:
                    report.round_trips_ms.append((arrived - sent[response.batch_id]) * 1000)
                answered += 1
                if answered == count:
                    return
            raise RuntimeError(f"PublishStream ended after {answered} of {count} answers")

        async def requests() -> None:
            start = time.monotonic()
            for seq in range(1, count + 1):
                # An absolute schedule, so one late send does not shift every later one.
                delay = start + seq / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                now = time.monotonic()
                sent[seq] = now
                message = bus_pb2.BusMessage(subject=subject, data=stamped(seq, now))
                await call.write(bus_pb2.PublishStreamRequest(batch_id=seq, messages=[message]))
            await call.done_writing()

        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(answers())
                tasks.create_task(requests())
        finally:
            call.cancel()


async def open_subscription(
    channel: grpc.aio.Channel, request: bus_pb2.SubscribeRequest
) -> tuple[SubscribeCall, AsyncIterator[bus_pb2.SubscribeResponse]]:
    """Subscribe and return the call and its responses once the `ready` response has arrived."""
    call = bus_pb2_grpc.BusStub(channel).Subscribe(request)
    responses = aiter(call)
    first = await anext(responses)
    if not first.HasField("ready"):
        raise RuntimeError(f"expected the ready response first, got {first!r}")
    logger.info(
        "subscriber ready: consumer %s from sequence %d",
        first.ready.consumer.name,
        first.ready.start_sequence,
    )
    return call, responses


async def subscribe(
    address: str,
    pattern: str,
    *,
    max_batch: int,
    max_in_flight: int,
    measure_after: int,
    last_seq: int,
    tally: Tally,
    report: Report,
) -> None:
    """Count deliveries and gaps of an at-most-once subscription; with `last_seq`, stop there and time stamps."""
    request = bus_pb2.SubscribeRequest(
        pattern=pattern,
        start=bus_pb2.START_POSITION_NEW_ONLY,
        ack_mode=bus_pb2.ACK_MODE_NONE,
        max_batch=max_batch,
        max_in_flight=max_in_flight,
    )
    async with grpc.aio.insecure_channel(address) as channel:
        call, responses = await open_subscription(channel, request)
        try:
            async for response in responses:
                now = time.monotonic()
                if response.HasField("gap"):
                    tally.add_gap(response.gap.skipped, now)
                tally.add(len(response.deliveries), now)
                if last_seq:
                    for delivery in response.deliveries:
                        seq, sent = STAMP.unpack_from(delivery.message.data)
                        if seq > measure_after:
                            report.latencies_ms.append((now - sent) * 1000)
                        if seq >= last_seq:
                            return
            raise RuntimeError("Subscribe ended")
        finally:
            call.cancel()


async def consume(
    address: str,
    pattern: str,
    *,
    durable: str,
    max_batch: int,
    max_in_flight: int,
    ack_ahead: int,
    tally: Tally,
    report: Report,
) -> None:
    """Ack every delivery of a durable explicit-ack consumer, batching the ids that arrive meanwhile."""
    request = bus_pb2.SubscribeRequest(
        pattern=pattern,
        durable=durable,
        start=bus_pb2.START_POSITION_NEW_ONLY,
        ack_mode=bus_pb2.ACK_MODE_EXPLICIT,
        max_batch=max_batch,
        max_in_flight=max_in_flight,
    )
    unacked: list[str] = []
    arrived = asyncio.Event()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = bus_pb2_grpc.BusStub(channel)
        call, responses = await open_subscription(channel, request)

        async def receive() -> None:
            async for response in responses:
                unacked.extend(delivery.delivery_id for delivery in response.deliveries)
                arrived.set()
            raise RuntimeError("Subscribe ended")

        async def acker() -> None:
            while True:
                await arrived.wait()
                if not unacked:  # another acker took them
                    arrived.clear()
                    continue
                ids = unacked[:MAX_ACK_ITEMS]
                del unacked[:MAX_ACK_ITEMS]
                if not unacked:
                    arrived.clear()
                answer = await stub.Ack(
                    bus_pb2.AckRequest(items=[bus_pb2.AckItem(delivery_id=i) for i in ids])
                )
                accepted = sum(1 for result in answer.results if result == bus_pb2.ACK_RESULT_ACCEPTED)
                tally.add(accepted, time.monotonic())
                report.refused += len(ids) - accepted

        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(receive())
                for _ in range(ack_ahead):
                    tasks.create_task(acker())
        finally:
            call.cancel()


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.bus_clients")
    commands = parser.add_subparsers(dest="command", required=True)
    pub = commands.add_parser("publish")
    pub.add_argument("address")
    pub.add_argument("subject")
    pub.add_argument("--batch", type=int, default=500)
    pub.add_argument("--ahead", type=int, default=4)
    pace = commands.add_parser("paced")
    pace.add_argument("address")
    pace.add_argument("subject")
    pace.add_argument("--rate", type=float, required=True)
    pace.add_argument("--count", type=int, required=True)
    pace.add_argument("--measure-after", type=int, default=0)
    sub = commands.add_parser("subscribe")
    sub.add_argument("address")
    sub.add_argument("pattern")
    sub.add_argument("--max-batch", type=int, default=1000)
    sub.add_argument("--max-in-flight", type=int, default=100_000)
    sub.add_argument("--measure-after", type=int, default=0)
    sub.add_argument("--last-seq", type=int, default=0, help="read stamps and stop at this sequence number")
    con = commands.add_parser("consume")
    con.add_argument("address")
    con.add_argument("pattern")
    con.add_argument("--durable", required=True)
    con.add_argument("--max-batch", type=int, default=1000)
    con.add_argument("--max-in-flight", type=int, default=10_000)
    con.add_argument("--ack-ahead", type=int, default=4)
    return parser.parse_args()


async def main_async(args: argparse.Namespace) -> Report:
    """Run the chosen client until it is done or told to finish; its report."""
    tally, report = Tally(), Report()
    match args.command:
        case "publish":
            await until_finished(publish(args.address, args.subject, args.batch, args.ahead, tally))
        case "paced":
            await until_finished(
                paced(args.address, args.subject, args.rate, args.count, args.measure_after, report)
            )
        case "subscribe":
            await until_finished(
                subscribe(
                    args.address,
                    args.pattern,
                    max_batch=args.max_batch,
                    max_in_flight=args.max_in_flight,
                    measure_after=args.measure_after,
                    last_seq=args.last_seq,
                    tally=tally,
                    report=report,
                )
            )
        case "consume":
            await until_finished(
                consume(
                    args.address,
                    args.pattern,
                    durable=args.durable,
                    max_batch=args.max_batch,
                    max_in_flight=args.max_in_flight,
                    ack_ahead=args.ack_ahead,
                    tally=tally,
                    report=report,
                )
            )
    report.buckets = tally.rows()
    return report


def main() -> None:
    """Entry point of the child process."""
    args = parse_args()
    configure_child_logging(f"bus {args.command}")
    write_report(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
