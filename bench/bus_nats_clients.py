"""NATS clients of the nats group, one per child process, with nats-py on core NATS (nothing persisted).

- `publish URL SUBJECT`: 128 B messages flat out, `await flush()` (a PING/PONG round trip) every
  `--flush-every` messages, so the client's buffer is written out and the server keeps pace; counts
  messages as each flush returns.
- `subscribe URL SUBJECT`: one subscription with a message callback; counts deliveries, and
  messages nats-py dropped because its pending queue was full (slow consumer).
- `js-publish URL SUBJECT`: JetStream: 128 B messages flat out with `publish_async`, in batches of
  `--batch` with at most `--ahead` batches unacknowledged (the shape of the Bus's publisher); counts
  messages as the stream's acks of a batch arrive (each ack follows the message's fsync when the
  server runs with `sync_interval: always`).
- `js-consume URL SUBJECT`: JetStream: a durable pull consumer with explicit acks
  (max_ack_pending `--max-ack-pending`) fetching up to `--batch` at a time and acking every message
  (`Msg.ack`, as nats-py users do); counts acked messages.
Both JetStream clients create the file-stored stream `BENCH` of SUBJECT (idempotent), so either may start first.

The reporting protocol (readiness line, buckets, SIGUSR1) is `bench.bus_flow`'s.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import time

import nats
import nats.errors
from nats.aio.msg import Msg
from nats.errors import SlowConsumerError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, PubAck, StorageType, StreamConfig

from bench.bus_flow import Report, Tally, configure_child_logging, until_finished, write_report

logger = logging.getLogger("bench.bus_nats_clients")

PAYLOAD_BYTES = 128
# The subscriber's pending queue (nats-py's default is 512 Ki messages; this keeps memory modest).
PENDING_MSGS = 100_000


async def publish(url: str, subject: str, flush_every: int, tally: Tally) -> None:
    """Publish until cancelled, flushing every `flush_every` messages."""
    client = await nats.connect(url, allow_reconnect=False)
    try:
        payload = b"m" * PAYLOAD_BYTES
        logger.info("publisher ready: %d B messages, flush every %d", PAYLOAD_BYTES, flush_every)
        task = asyncio.current_task()
        assert task is not None
        # nats-py swallows a CancelledError that lands in a flush of its buffer, so look for the
        # pending cancellation rather than rely on it being raised.
        while not task.cancelling():
            for _ in range(flush_every):
                await client.publish(subject, payload)
            await client.flush()
            tally.add(flush_every, time.monotonic())
        raise asyncio.CancelledError
    finally:
        await client.close()


async def subscribe(url: str, subject: str, tally: Tally, report: Report) -> None:
    """Count deliveries (and drops) until cancelled."""

    async def on_error(error: Exception) -> None:
        if isinstance(error, SlowConsumerError):
            report.dropped += 1
        else:
            logger.warning("nats error: %r", error)

    async def on_message(_: Msg) -> None:
        tally.add(1, time.monotonic())

    client = await nats.connect(url, allow_reconnect=False, error_cb=on_error)
    try:
        await client.subscribe(subject, cb=on_message, pending_msgs_limit=PENDING_MSGS)
        # The round trip proves the server has the subscription before we say we are ready.
        await client.flush()
        logger.info("subscriber ready: %s", subject)
        await asyncio.Event().wait()
    finally:
        await client.close()


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.bus_nats_clients")
    commands = parser.add_subparsers(dest="command", required=True)
    pub = commands.add_parser("publish")
    pub.add_argument("url")
    pub.add_argument("subject")
    pub.add_argument("--flush-every", type=int, default=1000)
    sub = commands.add_parser("subscribe")
    sub.add_argument("url")
    sub.add_argument("subject")
    js_pub = commands.add_parser("js-publish")
    js_pub.add_argument("url")
    js_pub.add_argument("subject")
    js_pub.add_argument("--batch", type=int, default=500)
    js_pub.add_argument("--ahead", type=int, default=4)
    js_con = commands.add_parser("js-consume")
    js_con.add_argument("url")
    js_con.add_argument("subject")
    js_con.add_argument("--batch", type=int, default=1000)
    js_con.add_argument("--max-ack-pending", type=int, default=10_000)
    return parser.parse_args()


STREAM = "BENCH"


async def ensure_stream(js: JetStreamContext, subject: str) -> None:
    """The file-stored stream of `subject` (adding it again with the same config is accepted)."""
    await js.add_stream(StreamConfig(name=STREAM, subjects=[subject], storage=StorageType.FILE))


async def js_publish(url: str, subject: str, batch: int, ahead: int, tally: Tally) -> None:
    """Publish to JetStream until cancelled, `ahead` batches of `batch` messages unacknowledged."""
    client = await nats.connect(url, allow_reconnect=False)
    try:
        js = client.jetstream(publish_async_max_pending=batch * (ahead + 1))
        await ensure_stream(js, subject)
        payload = b"m" * PAYLOAD_BYTES
        logger.info("publisher ready: JetStream, batches of %d, %d ahead", batch, ahead)
        pending: collections.deque[list[asyncio.Future[PubAck]]] = collections.deque()
        task = asyncio.current_task()
        assert task is not None
        while not task.cancelling():  # as in `publish`
            pending.append([await js.publish_async(subject, payload) for _ in range(batch)])
            while len(pending) > ahead:
                acks = pending.popleft()
                await asyncio.gather(*acks)
                tally.add(len(acks), time.monotonic())
        raise asyncio.CancelledError
    finally:
        await client.close()


async def js_consume(url: str, subject: str, batch: int, max_ack_pending: int, tally: Tally) -> None:
    """Fetch from a durable pull consumer and ack every message, until cancelled."""
    client = await nats.connect(url, allow_reconnect=False)
    try:
        js = client.jetstream()
        await ensure_stream(js, subject)
        config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=max_ack_pending)
        consumer = await js.pull_subscribe(subject, durable="bench-js", stream=STREAM, config=config)
        logger.info("subscriber ready: JetStream durable pull consumer of %s", subject)
        task = asyncio.current_task()
        assert task is not None
        # As in `publish`: nats-py may swallow a CancelledError that lands in a fetch or an ack (a run of
        # `make bench` waited 15 s for this child to finish, then failed), so look for it.
        while not task.cancelling():
            try:
                messages = await consumer.fetch(batch, timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):
                # Nothing to fetch within the second (nats-py raises either, by where it waited).
                continue
            for message in messages:
                await message.ack()
            tally.add(len(messages), time.monotonic())
        raise asyncio.CancelledError
    finally:
        await client.close()


async def main_async(args: argparse.Namespace) -> Report:
    """Run the chosen client until it is told to finish; its report."""
    tally, report = Tally(), Report()
    if args.command == "publish":
        await until_finished(publish(args.url, args.subject, args.flush_every, tally))
    elif args.command == "js-publish":
        await until_finished(js_publish(args.url, args.subject, args.batch, args.ahead, tally))
    elif args.command == "js-consume":
        await until_finished(js_consume(args.url, args.subject, args.batch, args.max_ack_pending, tally))
    else:
        await until_finished(subscribe(args.url, args.subject, tally, report))
    report.buckets = tally.rows()
    return report


def main() -> None:
    """Entry point of the child process."""
    args = parse_args()
    configure_child_logging(f"nats {args.command}")
    write_report(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
