"""Bus group: delivered messages/s and publish-to-delivery latency of a real control plane.

Setup, per case: `python -m control_plane serve --listen 127.0.0.1:0` as a child process with a
fresh temporary data directory (SQLite WAL, synchronous=FULL: a publish is answered once fsynced,
concurrent batches share a commit), and the publisher and every subscriber each in a child process
of its own (`python -m bench.bus_clients`, raw stubs), on loopback. Rates are what subscribers
received over 5 s after 1 s of warm-up, cut from their per-10 ms counts on the shared
CLOCK_MONOTONIC (see `bench.bus_flow`).

- `bus.amo_1sub_msgs_per_s`: one publisher, flat out: PublishStream requests of 500 messages of
  128 B, at most 4 unanswered; one at-most-once subscriber (ack mode NONE, NEW_ONLY, max_batch
  1,000, max_in_flight 100,000). Target >= 100,000. `bus.amo_1sub_skipped`: messages its gap
  markers said it skipped in the window. `bus.amo_1sub_vs_stream` (target >= 4) and
  `bus.amo_1sub_vs_nats` (target >= 0.5) divide by `baseline.stream_msgs_per_s` and `nats.1sub_msgs_per_s`.
- `bus.amo_4sub_msgs_per_s`: the same with 4 subscribers, each its own process and connection;
  the sum of what they received.
- `bus.alo_1sub_msgs_per_s`: at least once: a durable consumer (ack mode EXPLICIT, max_in_flight
  10,000, max_batch 1,000) whose subscriber acks every delivery, the ids that arrived since its
  last Ack in one request (up to 10,000), 4 Ack calls in flight; accepted acks/s. Target >= 20,000.
- `bus.p50_ms_at_1000`, `bus.p99_ms_at_1000`: 1,000 msgs/s on an absolute schedule for 1 s of
  warm-up then 5 s, each message sent the moment it is due as its own PublishStream request
  (what a latency-sensitive publisher does: no batching delay, and no per-call setup as a unary
  Publish would cost), carrying its send time; latency = arrival at an at-most-once subscriber
  minus send time, so it includes the fsynced commit. Target p99 <= 2 ms.
- `bus.alo_vs_js_fsync`: `bus.alo_1sub_msgs_per_s` / `nats.js_fsync_msgs_per_s` (JetStream with every
  message fsynced, the same shape). Target >= 3.
- `bus.p99_at_1000_vs_unary`: `bus.p99_ms_at_1000` / `baseline.unary_p99_ms_at_1000` (a raw unary
  echo at the same open-loop rate). Target <= 3.
- `bus.p99_at_1000_vs_fsync`: `bus.p99_ms_at_1000` / `baseline.fsync_p99_ms` (the disk's own write +
  fdatasync at 1,000/s, in the same run): how far above its disk's floor a durable publish's tail is.
"""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from bench import bus_nats
from bench.baseline import FSYNC_P99, STREAM_MSGS, UNARY_P99_AT_RATE
from bench.bus_flow import Flow, Report, children, measure_flow
from bench.figures import Figure, GroupResult, Load, RunContext, Target
from bench.harness import PLANE_READY, child, percentile, plane_argv, python_module

logger = logging.getLogger(__name__)

GROUP = "bus"
PUBLISH_BATCH = 500
PUBLISH_AHEAD = 4
MAX_BATCH = 1000
AMO_MAX_IN_FLIGHT = 100_000
ALO_MAX_IN_FLIGHT = 10_000
ACK_AHEAD = 4
FAN_OUT = 4
LATENCY_RATE = 1000
AMO_TARGET = Target(100_000, at_least=True)
AMO_VS_STREAM_TARGET = Target(4.0, at_least=True)
AMO_VS_NATS_TARGET = Target(0.5, at_least=True)  # issue 18
ALO_TARGET = Target(20_000, at_least=True)
P99_TARGET_MS = Target(2.0, at_least=False)
ALO_VS_JS_TARGET = Target(3.0, at_least=True)
P99_VS_UNARY_TARGET = Target(3.0, at_least=False)
_CLIENT_READY = re.compile(r"(publisher|subscriber) ready")


def clients(*args: str) -> list[str]:
    """argv of a `bench.bus_clients` child."""
    return python_module("bench.bus_clients", *args)


@dataclass(frozen=True, slots=True)
class Plane:
    """A running control plane child: where it listens, and its pid (for CPU accounting)."""

    address: str
    pid: int


@contextlib.asynccontextmanager
async def control_plane() -> AsyncIterator[Plane]:
    """A control plane child with a fresh data directory, on a port of its choosing."""
    with tempfile.TemporaryDirectory(prefix="hms-bench-bus-") as data_dir:
        argv = plane_argv(data_dir)
        async with child("control plane", argv, PLANE_READY) as (process, ready):
            yield Plane(ready.group(1), process.pid)


def flags(**options: object) -> list[str]:
    """`--name value` arguments, underscores in names becoming dashes."""
    return [arg for name, value in options.items() for arg in (f"--{name.replace('_', '-')}", str(value))]


def amo_subscriber(address: str, subject: str) -> list[str]:
    """argv of an at-most-once subscriber of `subject`."""
    return clients(
        "subscribe", address, subject, *flags(max_batch=MAX_BATCH, max_in_flight=AMO_MAX_IN_FLIGHT)
    )


def alo_subscriber(address: str, subject: str) -> list[str]:
    """argv of a subscriber that acks every delivery of durable consumer `bench-alo` of `subject`."""
    options = flags(
        durable="bench-alo", max_batch=MAX_BATCH, max_in_flight=ALO_MAX_IN_FLIGHT, ack_ahead=ACK_AHEAD
    )
    return clients("consume", address, subject, *options)


async def publish_flow(
    subject: str, subscriber: Callable[[str, str], list[str]], subscribers: int, load: Load
) -> Flow:
    """The flat-out publisher on `subject` to `subscribers` children of argv `subscriber`, on a fresh plane."""
    async with control_plane() as plane:
        publisher = clients(
            "publish", plane.address, subject, *flags(batch=PUBLISH_BATCH, ahead=PUBLISH_AHEAD)
        )
        argvs = [subscriber(plane.address, subject)] * subscribers
        return await measure_flow(publisher, argvs, load, {"control plane": plane.pid}, _CLIENT_READY)


async def latencies(load: Load) -> tuple[list[float], list[float]]:
    """Publish-to-delivery latencies (ms) at `LATENCY_RATE` after warm-up, and publish round trips (ms)."""
    warmup = round(load.warmup_s * LATENCY_RATE)
    count = warmup + round(load.duration_s * LATENCY_RATE)
    subject = "bench.latency"
    async with control_plane() as plane:
        subscriber = clients(
            "subscribe",
            plane.address,
            subject,
            *flags(max_batch=MAX_BATCH, measure_after=warmup, last_seq=count),
        )
        publisher = clients(
            "paced", plane.address, subject, *flags(rate=LATENCY_RATE, count=count, measure_after=warmup)
        )
        async with (
            children("subscriber", [subscriber], _CLIENT_READY) as subscribers,
            children("publisher", [publisher], _CLIENT_READY) as publishers,
        ):
            # Both finish by themselves once the last message is answered and delivered.
            timeout_s = count / LATENCY_RATE + 15
            published = await publishers[0].output(timeout_s)
            received = await subscribers[0].output(timeout_s)
    samples = Report.parse(received).latencies_ms
    if len(samples) != count - warmup:
        raise RuntimeError(f"latency subscriber timed {len(samples)} messages, expected {count - warmup}")
    return samples, Report.parse(published).round_trips_ms


async def run(context: RunContext) -> GroupResult:
    """Measure the four cases, each on a fresh control plane."""
    stream = context.figure(STREAM_MSGS)
    nats = context.figure(bus_nats.ONE_SUB_MSGS)
    js_fsync = context.figure(bus_nats.JS_FSYNC_MSGS)
    unary_p99 = context.figure(UNARY_P99_AT_RATE)
    fsync_p99 = context.figure(FSYNC_P99)
    load = context.load
    figures: list[Figure] = []

    logger.info("amo 1 sub: %g s after %g s warm-up", load.duration_s, load.warmup_s)
    one = await publish_flow("bench.amo1", amo_subscriber, 1, load)
    logger.info("amo 1 sub: %.0f msgs/s; %s", one.delivered.per_s, one.note())
    figures += [
        Figure("bus.amo_1sub_msgs_per_s", one.delivered.per_s, "msgs/s", AMO_TARGET),
        Figure("bus.amo_1sub_skipped", one.skipped, "msgs"),
        Figure("bus.amo_1sub_vs_stream", one.delivered.per_s / stream.value, "ratio", AMO_VS_STREAM_TARGET),
        Figure("bus.amo_1sub_vs_nats", one.delivered.per_s / nats.value, "ratio", AMO_VS_NATS_TARGET),
    ]

    logger.info("amo %d subs: %d subscriber processes", FAN_OUT, FAN_OUT)
    fan = await publish_flow("bench.amo4", amo_subscriber, FAN_OUT, load)
    logger.info("amo %d subs: %.0f msgs/s in all; %s", FAN_OUT, fan.delivered.per_s, fan.note())
    figures.append(Figure(f"bus.amo_{FAN_OUT}sub_msgs_per_s", fan.delivered.per_s, "msgs/s"))

    logger.info("alo 1 sub: durable consumer, explicit acks")
    alo = await publish_flow("bench.alo", alo_subscriber, 1, load)
    logger.info("alo 1 sub: %.0f msgs/s acked; %s", alo.delivered.per_s, alo.note())
    if alo.refused:
        raise RuntimeError(f"{alo.refused} acks were not accepted")
    figures.append(Figure("bus.alo_1sub_msgs_per_s", alo.delivered.per_s, "msgs/s", ALO_TARGET))
    if js_fsync.value:
        ratio = alo.delivered.per_s / js_fsync.value
        figures.append(Figure("bus.alo_vs_js_fsync", ratio, "ratio", ALO_VS_JS_TARGET))
    else:
        # Each message waits for its own fsync: a window shorter than the first acks counts none.
        logger.warning("bus.alo_vs_js_fsync not computed: JetStream acked no message in its window")

    logger.info("latency: %d msgs/s, one per PublishStream request", LATENCY_RATE)
    samples, round_trips = await latencies(load)
    logger.info(
        "latency: %d samples, p50 %.2f ms, p99 %.2f ms, max %.2f ms; publish round trip p50 %.2f, p99 %.2f ms",
        len(samples),
        percentile(samples, 50),
        percentile(samples, 99),
        max(samples),
        percentile(round_trips, 50),
        percentile(round_trips, 99),
    )
    figures += [
        Figure("bus.p50_ms_at_1000", percentile(samples, 50), "ms"),
        Figure("bus.p99_ms_at_1000", percentile(samples, 99), "ms", P99_TARGET_MS),
        Figure(
            "bus.p99_at_1000_vs_unary",
            percentile(samples, 99) / unary_p99.value,
            "ratio",
            P99_VS_UNARY_TARGET,
        ),
        Figure("bus.p99_at_1000_vs_fsync", percentile(samples, 99) / fsync_p99.value, "ratio"),
    ]
    setup = (
        f"control plane child per case (SQLite, synchronous=FULL, fresh dir); publisher and each "
        f"subscriber a child process; PublishStream of {PUBLISH_BATCH} x 128 B, {PUBLISH_AHEAD} unanswered; "
        f"subscribers max_batch {MAX_BATCH}, at-most-once max_in_flight {AMO_MAX_IN_FLIGHT:,}, "
        f"at-least-once durable max_in_flight {ALO_MAX_IN_FLIGHT:,} with batched Acks ({ACK_AHEAD} in flight); "
        f"{load.duration_s:g} s after {load.warmup_s:g} s warm-up; latency: {LATENCY_RATE:,} msgs/s, "
        f"one message per PublishStream request"
    )
    return GroupResult(GROUP, setup, figures)
