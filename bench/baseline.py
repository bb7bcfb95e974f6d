"""Baseline group: a raw grpc.aio server (bytes in, bytes out) in a child process, measured from here.

- `baseline.unary_echo_per_s`: unary echo calls/s of a 16-byte payload, 50 calls in flight on one
  channel, counted for 5 s after 1 s of warm-up (the same load shape as `registry.lookup_per_s`).
- `baseline.stream_msgs_per_s`: 16-byte messages/s of one server stream to one client, counted for
  5 s after 1 s of warm-up.
- `baseline.echo_cpu_us_per_call`: the echo server's CPU (user + system) per unary call in that
  closed loop; `workflow.cp_cpu_per_step_vs_echo_call` divides the control plane's CPU per step by it.
- `baseline.unary_p99_ms_at_1000` (and p50): unary echo calls at 1,000 calls/s open loop, each sent
  as its own task the moment it is due on an absolute schedule (late calls are not skipped), for 1 s
  of warm-up then 5 s; latency = answer minus send. `bus.p99_ms_at_1000` is measured the same way
  (one message per request, 1,000/s); their ratio is a target of issue 18.
- `baseline.fsync_p50_ms`, `baseline.fsync_p99_ms`: the disk's floor under every durable latency: 12 KiB
  (about what one small commit appends to SQLite's WAL) written in place into a preallocated file in
  the temporary directory the control planes use, then `fdatasync`, 1,000 times a second on an absolute
  schedule, 1 s of warm-up then 5 s. A publish at 1,000/s waits for one such sync (group-committed), so
  `bus.p99_ms_at_1000` cannot drop below this p99 on the same disk.
No protobuf work on either side, so these are the transport's ceilings on this machine.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import grpc

from bench import echo_server
from bench.figures import Figure, GroupResult, Load, RunContext
from bench.harness import Counter, Rate, child, closed_loop_rate, measured_rate, percentile, python_module

logger = logging.getLogger(__name__)

GROUP = "baseline"
UNARY_ECHO = "baseline.unary_echo_per_s"
ECHO_CPU = "baseline.echo_cpu_us_per_call"
STREAM_MSGS = "baseline.stream_msgs_per_s"
UNARY_P99_AT_RATE = "baseline.unary_p99_ms_at_1000"
FSYNC_P99 = "baseline.fsync_p99_ms"
PACED_RATE = 1000
PAYLOAD = b"0123456789abcdef"
FSYNC_WRITE = b"\0" * 12 * 1024
FSYNC_SLOTS = 256  # distinct offsets the writes cycle through (3 MiB): overwrites, as a reused WAL
_READY = re.compile(r"echo listening on (\S+)")


async def unary_echo_rate(channel: grpc.aio.Channel, load: Load, server: Mapping[str, int]) -> Rate:
    """Echo calls/s at `load.in_flight` calls in flight."""
    echo: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(echo_server.UNARY)

    async def call() -> object:
        return await echo(PAYLOAD)

    return await closed_loop_rate(call, load, server)


async def paced_latencies(channel: grpc.aio.Channel, load: Load, rate: float) -> list[float]:
    """Round trips (ms) of unary echo calls sent at `rate` calls/s open loop, after the warm-up."""
    echo: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(echo_server.UNARY)
    warmup = round(load.warmup_s * rate)
    count = warmup + round(load.duration_s * rate)
    samples: list[float] = []

    async def call(index: int) -> None:
        sent = time.perf_counter()
        await echo(PAYLOAD)
        if index >= warmup:
            samples.append((time.perf_counter() - sent) * 1000)

    start = time.perf_counter()
    async with asyncio.TaskGroup() as tasks:
        for index in range(count):
            delay = start + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.create_task(call(index))
    return samples


def fsync_latencies(load: Load, rate: float) -> list[float]:
    """Write-then-fdatasync times (ms) at `rate` per second after the warm-up, on the temporary directory's
    disk (blocking: run it on a thread)."""
    warmup = round(load.warmup_s * rate)
    count = warmup + round(load.duration_s * rate)
    samples: list[float] = []
    with tempfile.TemporaryDirectory(prefix="hms-bench-fsync-") as directory:
        fd = os.open(Path(directory) / "wal", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, FSYNC_WRITE * FSYNC_SLOTS, 0)
            os.fsync(fd)
            start = time.perf_counter()
            for index in range(count):
                delay = start + index / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                began = time.perf_counter()
                os.pwrite(fd, FSYNC_WRITE, (index % FSYNC_SLOTS) * len(FSYNC_WRITE))
                os.fdatasync(fd)
                if index >= warmup:
                    samples.append((time.perf_counter() - began) * 1000)
        finally:
            os.close(fd)
    return samples


async def stream_rate(channel: grpc.aio.Channel, load: Load, server: Mapping[str, int]) -> Rate:
    """Messages/s received on one server stream."""
    stream: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(echo_server.STREAM)
    call = stream(PAYLOAD)
    counter = Counter()

    async def consume() -> None:
        async for _ in call:
            counter.count += 1
            if counter.stop:
                break

    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(consume())
            rate = await measured_rate(counter, load, server)
        return rate
    finally:
        call.cancel()
        await call.code()


async def run(context: RunContext) -> GroupResult:
    """Start the echo server, measure unary then streaming, stop it."""
    load = context.load
    figures: list[Figure] = []
    async with child("echo server", python_module("bench.echo_server"), _READY) as (server, ready):
        pids = {server.name: server.pid}
        async with grpc.aio.insecure_channel(ready.group(1)) as channel:
            logger.info(
                "unary echo: %d in flight, %g s after %g s warm-up",
                load.in_flight,
                load.duration_s,
                load.warmup_s,
            )
            echo = await unary_echo_rate(channel, load, pids)
            logger.info("unary echo: %.0f calls/s; %s", echo.per_s, echo.cpu_note())
            figures.append(Figure(UNARY_ECHO, echo.per_s, "calls/s"))
            if server.name in echo.cpu_us:
                figures.append(Figure(ECHO_CPU, echo.cpu_us[server.name], "us"))
            logger.info("unary echo: %d calls/s open loop", PACED_RATE)
            paced = await paced_latencies(channel, load, PACED_RATE)
            logger.info(
                "unary echo at %d calls/s: %d samples, p50 %.2f ms, p99 %.2f ms, max %.2f ms",
                PACED_RATE,
                len(paced),
                percentile(paced, 50),
                percentile(paced, 99),
                max(paced),
            )
            figures += [
                Figure(f"baseline.unary_p50_ms_at_{PACED_RATE}", percentile(paced, 50), "ms"),
                Figure(UNARY_P99_AT_RATE, percentile(paced, 99), "ms"),
            ]
            logger.info("server stream: one stream, %g s after %g s warm-up", load.duration_s, load.warmup_s)
            stream = await stream_rate(channel, load, pids)
            logger.info("server stream: %.0f msgs/s; %s", stream.per_s, stream.cpu_note())
            figures.append(Figure(STREAM_MSGS, stream.per_s, "msgs/s"))
    logger.info("disk: %d KiB written and fdatasync'd, %d/s", len(FSYNC_WRITE) // 1024, PACED_RATE)
    syncs = await asyncio.to_thread(fsync_latencies, load, PACED_RATE)
    logger.info(
        "disk: %d syncs, p50 %.2f ms, p99 %.2f ms, max %.2f ms",
        len(syncs),
        percentile(syncs, 50),
        percentile(syncs, 99),
        max(syncs),
    )
    figures += [
        Figure("baseline.fsync_p50_ms", percentile(syncs, 50), "ms"),
        Figure(FSYNC_P99, percentile(syncs, 99), "ms"),
    ]
    setup = (
        f"raw grpc.aio on bytes in a child process; unary echo of {len(PAYLOAD)} B at {load.in_flight} "
        f"in flight, then {PACED_RATE:,} calls/s open loop; one server stream of {len(PAYLOAD)} B messages; "
        f"{len(FSYNC_WRITE) // 1024} KiB write + fdatasync {PACED_RATE:,}/s on the temporary directory's disk; "
        f"{load.duration_s:g} s after {load.warmup_s:g} s warm-up"
    )
    return GroupResult(GROUP, setup, figures)
