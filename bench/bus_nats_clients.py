"""NATS clients of the nats group, one per child process, with nats-py on core NATS (nothing persisted).

- `publish URL SUBJECT`: 128 B messages flat out, `await flush()` (a PING/PONG round trip) every
  `--flush-every` messages, so the client's buffer is written out and the server keeps pace; counts
  messages as each flush returns.
- `subscribe URL SUBJECT`: one subscription with a message callback; counts deliveries, and
  messages nats-py dropped because its pending queue was full (slow consumer).

The reporting protocol (readiness line, buckets, SIGUSR1) is `bench.bus_flow`'s.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time

import nats
from nats.aio.msg import Msg
from nats.errors import SlowConsumerError

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
    return parser.parse_args()


async def main_async(args: argparse.Namespace) -> Report:
    """Run the chosen client until it is told to finish; its report."""
    tally, report = Tally(), Report()
    if args.command == "publish":
        await until_finished(publish(args.url, args.subject, args.flush_every, tally))
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
