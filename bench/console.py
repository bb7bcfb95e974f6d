"""Console group: how long the operations console takes to render its heaviest pages over 100,000 processes.

Setup: `python -m control_plane serve --listen 127.0.0.1:0 --http-listen 127.0.0.1:0` as a child
process with a fresh temporary data directory (SQLite WAL, synchronous=FULL). This process
registers the one-step definition `console_wait` (`steps: [{id: wait, wait_signal: {name: go}}]`)
and starts 100,000 processes of it with StartProcess, 200 in flight, each with the business key
`K-000000` .. `K-099999`; every tenth gets its signal, so that two states are listed.

Then one aiohttp client (one connection, requests one at a time, so the figure is the server's time
plus a loopback round trip) fetches, after 10 warm-up requests of each kind:
- `console.processes_page_p95_ms`: 200 processes pages, cycling through the unfiltered first page,
  `state=running`, `state=completed`, a business-key prefix (`key=K-0421`), `definition=console_wait`
  and the second page of the unfiltered list (its `before` position). Target p95 <= 300 ms.
- `console.process_page_p95_ms`: 200 process pages of processes picked at random (graph, step table,
  history, input and output). Target p95 <= 300 ms.
`console.processes_page_p50_ms` and `console.process_page_p50_ms` are reported beside them.
No browser is open during the workflow group, so the console costs it nothing there: its live
streams subscribe only while a page is open.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import tempfile
import time
from collections.abc import Sequence

import aiohttp
import grpc
from google.protobuf import struct_pb2

from bench.figures import Figure, GroupResult, RunContext, Target
from bench.harness import PLANE_READY, child, percentile, plane_argv
from hms.mgmt.v1 import workflow_pb2, workflow_pb2_grpc

logger = logging.getLogger(__name__)

GROUP = "console"
PROCESSES = 100_000
START_IN_FLIGHT = 200
SIGNAL_EVERY = 10
WARMUP_REQUESTS = 10
REQUESTS = 200
PAGE_TARGET_MS = Target(300.0, at_least=False)
DEFINITION = "name: console_wait\nsteps:\n  - id: wait\n    wait_signal: {name: go}\n"
_HTTP = re.compile(r"mgmt http on (\S+)")
_OLDER = re.compile(r'href="(/processes\?[^"]*)" id="older-page"')


async def _fill(stub: workflow_pb2_grpc.WorkflowAsyncStub, count: int) -> list[str]:
    """Start `count` processes, `START_IN_FLIGHT` at a time; signal every tenth. Returns their ids."""
    ids: list[str] = [""] * count
    next_index = 0

    async def starter() -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            reply = await stub.StartProcess(
                workflow_pb2.StartProcessRequest(
                    definition="console_wait", input=struct_pb2.Struct(), business_key=f"K-{index:06d}"
                )
            )
            ids[index] = reply.process.id
            if index % SIGNAL_EVERY == 0:
                await stub.SignalProcess(
                    workflow_pb2.SignalProcessRequest(process_id=reply.process.id, name="go")
                )

    started = time.perf_counter()
    await asyncio.gather(*(starter() for _ in range(START_IN_FLIGHT)))
    logger.info("started %d processes in %.1f s", count, time.perf_counter() - started)
    return ids


async def _timed(http: aiohttp.ClientSession, url: str) -> tuple[float, str]:
    """Milliseconds to fetch `url` whole, and its body; fails on anything but 200."""
    started = time.perf_counter()
    async with http.get(url) as response:
        body = await response.text()
        if response.status != 200:
            raise RuntimeError(f"GET {url}: HTTP {response.status}")
    return (time.perf_counter() - started) * 1000, body


async def _measure(http: aiohttp.ClientSession, urls: Sequence[str]) -> list[float]:
    """`WARMUP_REQUESTS` fetches, then `REQUESTS` timed ones, cycling through `urls`; the times in ms."""
    for n in range(WARMUP_REQUESTS):
        await _timed(http, urls[n % len(urls)])
    return [(await _timed(http, urls[n % len(urls)]))[0] for n in range(REQUESTS)]


async def run(context: RunContext) -> GroupResult:
    """Fill a control plane with 100,000 processes and time the console's processes and process pages."""
    with tempfile.TemporaryDirectory(prefix="bench-console-") as data_dir:
        argv = plane_argv(data_dir)
        # `mgmt serve` logs where its HTTP listener answers right after where gRPC does.
        async with child("control plane", argv, _HTTP) as (plane, ready):
            base = ready.group(1)
            listening = PLANE_READY.search(plane.tail())
            if listening is None:
                raise RuntimeError("the control plane did not say where it listens")
            async with grpc.aio.insecure_channel(listening.group(1)) as channel:
                stub = workflow_pb2_grpc.WorkflowStub(channel)
                await stub.RegisterDefinition(workflow_pb2.RegisterDefinitionRequest(source=DEFINITION))
                ids = await _fill(stub, PROCESSES)
            connector = aiohttp.TCPConnector(limit=1)
            async with aiohttp.ClientSession(connector=connector) as http:
                _, first = await _timed(http, f"{base}/processes")
                older = _OLDER.search(first)
                if older is None:
                    raise RuntimeError("the processes page has no link to older processes")
                listing = [
                    f"{base}/processes",
                    f"{base}/processes?state=running",
                    f"{base}/processes?state=completed",
                    f"{base}/processes?key=K-0421",
                    f"{base}/processes?definition=console_wait",
                    base + older.group(1).replace("&amp;", "&"),
                ]
                list_ms = await _measure(http, listing)
                rng = random.Random(7)
                single_ms = await _measure(http, [f"{base}/processes/{rng.choice(ids)}" for _ in range(50)])
    figures = [
        Figure("console.processes_page_p50_ms", percentile(list_ms, 50), "ms"),
        Figure("console.processes_page_p95_ms", percentile(list_ms, 95), "ms", PAGE_TARGET_MS),
        Figure("console.process_page_p50_ms", percentile(single_ms, 50), "ms"),
        Figure("console.process_page_p95_ms", percentile(single_ms, 95), "ms", PAGE_TARGET_MS),
    ]
    setup = (
        f"{PROCESSES:,} processes (every {SIGNAL_EVERY}th completed) in SQLite; {REQUESTS} sequential GETs "
        "of each page kind over one loopback connection"
    )
    return GroupResult(GROUP, setup, figures)
