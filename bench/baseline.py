"""Baseline group: a raw grpc.aio server (bytes in, bytes out) in a child process, measured from here.

- `baseline.unary_echo_per_s`: unary echo calls/s of a 16-byte payload, 50 calls in flight on one
  channel, counted for 5 s after 1 s of warm-up (the same load shape as `registry.lookup_per_s`).
- `baseline.stream_msgs_per_s`: 16-byte messages/s of one server stream to one client, counted for
  5 s after 1 s of warm-up.
No protobuf work on either side, so these are the transport's ceilings on this machine.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping

import grpc

from bench import echo_server
from bench.figures import Figure, GroupResult, Load, RunContext
from bench.harness import Counter, Rate, child, closed_loop_rate, measured_rate, python_module

logger = logging.getLogger(__name__)

GROUP = "baseline"
UNARY_ECHO = "baseline.unary_echo_per_s"
STREAM_MSGS = "baseline.stream_msgs_per_s"
PAYLOAD = b"0123456789abcdef"
_READY = re.compile(r"echo listening on (\S+)")


async def unary_echo_rate(channel: grpc.aio.Channel, load: Load, server: Mapping[str, int]) -> Rate:
    """Echo calls/s at `load.in_flight` calls in flight."""
    echo: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(echo_server.UNARY)

    async def call() -> object:
        return await echo(PAYLOAD)

    return await closed_loop_rate(call, load, server)


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
            logger.info("server stream: one stream, %g s after %g s warm-up", load.duration_s, load.warmup_s)
            stream = await stream_rate(channel, load, pids)
            logger.info("server stream: %.0f msgs/s; %s", stream.per_s, stream.cpu_note())
            figures.append(Figure(STREAM_MSGS, stream.per_s, "msgs/s"))
    setup = (
        f"raw grpc.aio on bytes in a child process; unary echo of {len(PAYLOAD)} B at {load.in_flight} "
        f"in flight, one server stream of {len(PAYLOAD)} B messages; "
        f"{load.duration_s:g} s after {load.warmup_s:g} s warm-up"
    )
    return GroupResult(GROUP, setup, figures)
