"""Soak: many short processes with heartbeats and signals; the control plane's memory must not grow.

Each process waits for a signal (arming a 14-day timeout that the signal clears), then runs one task
whose worker heartbeats before completing. The control plane runs as a child process; its resident
memory (VmRSS) is read after a warm-up and again at the end, and must be within 10% of the first reading.

The full soak is `MGMT_SOAK_PROCESSES=100000` (with the control plane's default caches and a 30,000
process warm-up: 9 minutes on a busy 2-core machine, 258.5 MiB after the warm-up, 266.9 MiB at the end).
An ordinary run does 3,000 (a few seconds), with caches small enough to fill during its warm-up. Either
runs in the SQLite pass only (the child control plane uses its own SQLite store whatever the pass).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hms_mgmt import BusSubscription, Client, TaskContext, Worker
from tests.conftest import ON_POSTGRES, ServerProcess

logger = logging.getLogger(__name__)

SOAK = """
name: soak
steps:
  - id: go
    wait_signal: {name: go, timeout: 14d}
  - id: work
    task: {service: Soak, type: work}
    input: {n: "input.n"}
    heartbeat_timeout: 1m
    timeout: 10m
"""

PROCESSES = int(os.environ.get("MGMT_SOAK_PROCESSES", "3000"))
# The control plane's bounded caches fill up first: the Bus keeps 100,000 to 200,000 recent messages in
# memory (7 per process here) and SQLite 64 MiB of pages per connection. Growth is measured after they
# are full: with the defaults that takes about 30,000 processes; a shorter run shrinks the caches so that
# they fill during its warm-up.
DEFAULT_CACHES = PROCESSES >= 60_000
WARM_UP = int(os.environ.get("MGMT_SOAK_WARM_UP", "30000" if DEFAULT_CACHES else str(PROCESSES // 3)))
SMALL_CACHES = ("--bus-tail-size", "1000")
SMALL_SQLITE_CACHE_MIB = 4
# Processes in flight at once from this client.
IN_FLIGHT = 400


def chunks(first: int, end: int, parts: int) -> list[tuple[int, int]]:
    """[first, end) cut into `parts` consecutive ranges (fewer when there are fewer numbers)."""
    bounds = sorted({first + (end - first) * i // parts for i in range(parts + 1)})
    return list(itertools.pairwise(bounds))


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


class Soak:
    """Runs processes through the control plane, IN_FLIGHT at a time, and counts the completed ones."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.completed = 0
        self.progress = asyncio.Condition()

    async def run(self, first: int, count: int) -> None:
        """Start `count` processes, signal each, and return once every one has completed."""
        numbers = iter(range(first, first + count))
        async with asyncio.TaskGroup() as lives:
            for _ in range(min(IN_FLIGHT, count)):
                lives.create_task(self._lives(numbers))
        async with asyncio.timeout(120):
            async with self.progress:
                await self.progress.wait_for(lambda: self.completed >= first + count)

    async def _lives(self, numbers: Iterator[int]) -> None:
        for n in numbers:
            process = await self.client.workflow.start("soak", {"n": n})
            answer = await self.client.workflow.signal(process.id, "go", {"n": n})
            assert not answer.buffered and not answer.duplicate

    async def count_completions(self, events: BusSubscription) -> None:
        """Count `process_completed` events from the Bus (a gap would mean some were skipped)."""
        while True:
            frame = await events.next_frame()
            assert not frame.HasField("gap"), frame.gap
            async with self.progress:
                self.completed += len(frame.deliveries)
                self.progress.notify_all()


@pytest.mark.timeout(900)
async def test_memory_returns_after_many_short_processes(
    server_process: Callable[..., Awaitable[ServerProcess]], tmp_path: Path
) -> None:
    if ON_POSTGRES:
        pytest.skip("the soak runs in the SQLite pass only")
    if DEFAULT_CACHES:
        control_plane = await server_process()
    else:
        store = f"sqlite:///{tmp_path / 'soak.db'}?cache_mib={SMALL_SQLITE_CACHE_MIB}"
        control_plane = await server_process(*SMALL_CACHES, "--store", store)
    assert control_plane.process is not None
    pid = control_plane.process.pid
    async with Client(control_plane.address) as client:
        await client.workflow.apply(SOAK)
        worker = Worker(client, "Soak", max_in_flight=2000, drain_timeout_s=1.0)

        @worker.task("work")
        async def work(task: TaskContext) -> dict[str, Any]:
            await task.heartbeat()
            return {"n": task.input["n"]}

        soak = Soak(client)
        async with asyncio.TaskGroup() as background:
            running = background.create_task(worker.run())
            async with asyncio.timeout(10):
                await worker.ready.wait()
            async with client.bus.subscribe(
                "workflow.soak.*.process_completed", max_in_flight=10_000, max_batch=1000
            ) as events:
                counting = background.create_task(soak.count_completions(events))
                began = time.monotonic()
                await soak.run(0, WARM_UP)
                warm = rss_kib(pid)
                warmed = time.monotonic()
                samples = []  # RSS along the way, for the report: flat, or still climbing?
                for first, last in chunks(WARM_UP, PROCESSES, 5):
                    await soak.run(first, last - first)
                    samples.append(rss_kib(pid))
                end = samples[-1]
                finished = time.monotonic()
                counting.cancel()
            worker.stop()
            await running
    rate = (PROCESSES - WARM_UP) / (finished - warmed)
    report = (
        f"soak: {PROCESSES} processes in {finished - began:.1f} s ({rate:.0f}/s after warm-up); "
        f"control plane RSS {warm / 1024:.1f} MiB after {WARM_UP}, {end / 1024:.1f} MiB after all "
        f"({(end - warm) / warm:+.1%}); along the way: {', '.join(f'{k / 1024:.0f}' for k in samples)} MiB"
    )
    print(report)
    logger.info(report)
    assert soak.completed == PROCESSES
    assert end <= warm * 1.10, report
