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
No protobuf work on either side, so these are the transport's ceilings on this machine.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping

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
PACED_RATE = 1000
PAYLOAD = b"0123456789abcdef"
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
    setup = (
        f"raw grpc.aio on bytes in a child process; unary echo of {len(PAYLOAD)} B at {load.in_flight} "
        f"in flight, then {PACED_RATE:,} calls/s open loop; one server stream of {len(PAYLOAD)} B messages; "
        f"{load.duration_s:g} s after {load.warmup_s:g} s warm-up"
    )
    return GroupResult(GROUP, setup, figures)
