"""Registry group: Lookup throughput and Watch propagation latency of a real control plane.

Setup: `python -m control_plane serve --listen 127.0.0.1:0` as a child process with a fresh
temporary data directory (SQLite in WAL mode, synchronous=FULL), holding 1,000 instances spread
over 100 services (`svc-000` .. `svc-099`, 10 instances each, TTL 1 h so no lease lapses mid-run).

- `registry.lookup_per_s`: Lookup calls/s, each of a random service (an answer of 10 instances),
  50 calls in flight on one channel, counted for 5 s after 1 s of warm-up: the same client and
  load shape as `baseline.unary_echo_per_s`.
- `registry.lookup_vs_echo`: lookup_per_s / unary_echo_per_s of the same run. Target >= 0.6.
- `registry.watch_p50_ms`, `registry.watch_p99_ms`: 10 watchers of `svc-000`, in a second child
  process (`python -m bench.watchers`) with one connection each, so that their decoding does not
  share an event loop with the sender (as real watchers would not). This process re-registers one
  instance of `svc-000` every 10 ms (20 warm-up updates, then 300 measured), each carrying its
  sequence number in its metadata. Latency = arrival at a watcher minus the moment just before the
  Register call was made, both `time.monotonic()` (CLOCK_MONOTONIC, one clock for all processes
  on Linux); it includes the fsynced commit the control plane makes before publishing a change.
  300 updates x 10 watchers = 3,000 samples. Target p99 <= 5 ms.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import re
import tempfile
import time
from collections.abc import Iterator, Mapping

import grpc
from google.protobuf import duration_pb2

from bench.baseline import UNARY_ECHO
from bench.figures import Figure, GroupResult, Load, RunContext, Target
from bench.harness import PLANE_READY, Rate, child, closed_loop_rate, percentile, plane_argv, python_module
from hms.mgmt.v1 import registry_pb2, registry_pb2_grpc

logger = logging.getLogger(__name__)

GROUP = "registry"
SERVICES = 100
INSTANCES_PER_SERVICE = 10
REGISTER_IN_FLIGHT = 50
WATCHERS = 10
WATCH_WARMUP_UPDATES = 20
WATCH_UPDATES = 300
WATCH_INTERVAL_S = 0.010
LOOKUP_VS_ECHO_TARGET = Target(0.6, at_least=True)
WATCH_P99_TARGET_MS = Target(5.0, at_least=False)
_WATCHERS_READY = re.compile(r"watchers ready")
_TTL = duration_pb2.Duration(seconds=3600)


def service_name(index: int) -> str:
    """Name of the `index`-th benchmark service."""
    return f"svc-{index:03d}"


def registration(service: int, instance: int, seq: int | None = None) -> registry_pb2.RegisterRequest:
    """A RegisterRequest for one benchmark instance; `seq` goes into its metadata."""
    metadata = {"zone": f"zone-{instance % 3}"}
    if seq is not None:
        metadata["seq"] = str(seq)
    return registry_pb2.RegisterRequest(
        instance=registry_pb2.ServiceInstance(
            service=service_name(service),
            instance_id=f"i-{instance:02d}",
            address=f"10.1.{service}.{instance + 1}:{8000 + instance}",
            version="1.4.2",
            tags=["bench", f"shard-{instance % 2}"],
            metadata=metadata,
        ),
        ttl=_TTL,
    )


async def register_all(channel: grpc.aio.Channel) -> float:
    """Register every benchmark instance, `REGISTER_IN_FLIGHT` at a time; returns the seconds it took."""
    pending: Iterator[registry_pb2.RegisterRequest] = (
        registration(s, i) for s in range(SERVICES) for i in range(INSTANCES_PER_SERVICE)
    )
    stub = registry_pb2_grpc.RegistryStub(channel)
    started = time.perf_counter()

    async def registrar() -> None:
        for request in pending:
            await stub.Register(request)

    async with asyncio.TaskGroup() as tasks:
        for _ in range(REGISTER_IN_FLIGHT):
            tasks.create_task(registrar())
    return time.perf_counter() - started


async def lookup_rate(channel: grpc.aio.Channel, load: Load, plane: Mapping[str, int]) -> Rate:
    """Lookup calls/s of random services at the run's load shape."""
    stub = registry_pb2_grpc.RegistryStub(channel)
    rng = random.Random(2)
    requests = itertools.cycle(
        [registry_pb2.LookupRequest(service=service_name(rng.randrange(SERVICES))) for _ in range(10_000)]
    )
    sample = await stub.Lookup(next(requests))
    if len(sample.instances) != INSTANCES_PER_SERVICE:
        raise RuntimeError(
            f"Lookup answered {len(sample.instances)} instances, expected {INSTANCES_PER_SERVICE}"
        )

    async def call() -> object:
        return await stub.Lookup(next(requests))

    return await closed_loop_rate(call, load, plane)


async def send_updates(channel: grpc.aio.Channel, count: int) -> tuple[dict[int, float], list[float]]:
    """Re-register instance 0 of service 0 `count` times, every `WATCH_INTERVAL_S`.

    Returns when each sequence number was sent, and each Register round trip in seconds.
    """
    stub = registry_pb2_grpc.RegistryStub(channel)
    sent: dict[int, float] = {}
    round_trips: list[float] = []
    start = time.monotonic()
    for seq in range(1, count + 1):
        # Pacing on an absolute schedule, so a slow call does not shift every later one.
        delay = start + seq * WATCH_INTERVAL_S - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        request = registration(0, 0, seq)
        sent[seq] = time.monotonic()
        await stub.Register(request)
        round_trips.append(time.monotonic() - sent[seq])
    return sent, round_trips


def watch_latencies_ms(sent: dict[int, float], received: list[list[list[float]]]) -> list[float]:
    """Arrival minus send time of every measured update at every watcher; raises if one was missed."""
    measured = set(range(WATCH_WARMUP_UPDATES + 1, WATCH_WARMUP_UPDATES + WATCH_UPDATES + 1))
    latencies: list[float] = []
    for index, stamps in enumerate(received):
        seen = [int(seq) for seq, _ in stamps if int(seq) in measured]
        if sorted(seen) != sorted(measured):
            missing = len(measured - set(seen))
            raise RuntimeError(
                f"watcher {index} missed {missing} updates or saw duplicates ({len(seen)} seen)"
            )
        latencies += [(arrived - sent[int(seq)]) * 1000 for seq, arrived in stamps if int(seq) in measured]
    return latencies


async def watch_figures(address: str) -> list[Figure]:
    """Watch p50 and p99 with `WATCHERS` watchers in a child process."""
    total = WATCH_WARMUP_UPDATES + WATCH_UPDATES
    argv = python_module(
        "bench.watchers", address, service_name(0), "--watchers", str(WATCHERS), "--last-seq", str(total)
    )
    async with child("watchers", argv, _WATCHERS_READY, stdout=True) as (watchers, _):
        logger.info(
            "watch: %d watchers, %d + %d warm-up updates every %.0f ms",
            WATCHERS,
            WATCH_UPDATES,
            WATCH_WARMUP_UPDATES,
            WATCH_INTERVAL_S * 1000,
        )
        async with grpc.aio.insecure_channel(address) as channel:
            sent, round_trips = await send_updates(channel, total)
        received = json.loads(await watchers.output(timeout_s=15.0))["received"]
    latencies = watch_latencies_ms(sent, received)
    measured_trips = [t * 1000 for t in round_trips[WATCH_WARMUP_UPDATES:]]
    logger.info(
        "watch: %d samples, p50 %.2f ms, p99 %.2f ms, max %.2f ms; Register round trip p50 %.2f, p99 %.2f ms",
        len(latencies),
        percentile(latencies, 50),
        percentile(latencies, 99),
        max(latencies),
        percentile(measured_trips, 50),
        percentile(measured_trips, 99),
    )
    return [
        Figure("registry.watch_p50_ms", percentile(latencies, 50), "ms"),
        Figure("registry.watch_p99_ms", percentile(latencies, 99), "ms", WATCH_P99_TARGET_MS),
    ]


async def run(context: RunContext) -> GroupResult:
    """Start a control plane, fill it, measure Lookup, then Watch; stop it."""
    echo = context.figure(UNARY_ECHO)
    load = context.load
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="hms-bench-") as data_dir:
        argv = plane_argv(data_dir)
        async with child("control plane", argv, PLANE_READY) as (plane, ready):
            address = ready.group(1)
            async with grpc.aio.insecure_channel(address) as channel:
                took = await register_all(channel)
                logger.info(
                    "registered %d instances over %d services in %.2f s",
                    SERVICES * INSTANCES_PER_SERVICE,
                    SERVICES,
                    took,
                )
                logger.info(
                    "lookup: %d in flight, %g s after %g s warm-up",
                    load.in_flight,
                    load.duration_s,
                    load.warmup_s,
                )
                lookups = await lookup_rate(channel, load, {plane.name: plane.pid})
            ratio = lookups.per_s / echo.value
            logger.info(
                "lookup: %.0f calls/s, %.2f of the echo rate (%.0f calls/s); %s",
                lookups.per_s,
                ratio,
                echo.value,
                lookups.cpu_note(),
            )
            figures.append(Figure("registry.lookup_per_s", lookups.per_s, "calls/s"))
            figures.append(Figure("registry.lookup_vs_echo", ratio, "ratio", LOOKUP_VS_ECHO_TARGET))
            figures += await watch_figures(address)
    setup = (
        f"control plane child (SQLite, fresh dir), {SERVICES * INSTANCES_PER_SERVICE:,} instances over "
        f"{SERVICES} services ({INSTANCES_PER_SERVICE} each); Lookup of random services at "
        f"{load.in_flight} in flight, "
        f"{load.duration_s:g} s after {load.warmup_s:g} s warm-up; {WATCHERS} watchers in a child process, "
        f"{WATCH_UPDATES} updates every {WATCH_INTERVAL_S * 1000:.0f} ms after {WATCH_WARMUP_UPDATES} warm-up"
    )
    return GroupResult(GROUP, setup, figures)
