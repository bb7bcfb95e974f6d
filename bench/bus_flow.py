"""How bus benchmark children report, and how the coordinator cuts a measured window out of their reports.

Every publisher and subscriber child (Bus or NATS) counts what it does in 10 ms buckets of
CLOCK_MONOTONIC (one clock for every process on Linux), logs `... ready` to stderr once it can
start, and on SIGUSR1 (or once its own work is done) writes one JSON `Report` to stdout and exits 0.
The coordinator picks the window afterwards, from its own clock: the count is exact to a bucket,
and no child has to know when the window starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from bench.figures import Load
from bench.harness import ChildProcess, Rate, child, cpu_seconds

logger = logging.getLogger(__name__)

BUCKETS_PER_S = 100
# A finished child may still be writing a large report (latency samples) to its pipe.
_REPORT_TIMEOUT_S = 15.0


class Tally:
    """Items counted per bucket of CLOCK_MONOTONIC, with the messages a subscriber was told it skipped."""

    __slots__ = ("_buckets",)

    def __init__(self) -> None:
        self._buckets: dict[int, list[int]] = {}

    def add(self, count: int, now: float) -> None:
        """Count `count` items at monotonic time `now`."""
        bucket = int(now * BUCKETS_PER_S)
        entry = self._buckets.get(bucket)
        if entry is None:
            self._buckets[bucket] = [count, 0, 0]
        else:
            entry[0] += count

    def add_gap(self, skipped: int, now: float) -> None:
        """Count a gap marker of `skipped` messages at monotonic time `now`."""
        entry = self._buckets.setdefault(int(now * BUCKETS_PER_S), [0, 0, 0])
        entry[1] += skipped
        entry[2] += 1

    def rows(self) -> list[list[int]]:
        """`[bucket, count, skipped, gaps]` rows in time order."""
        return [[bucket, *entry] for bucket, entry in sorted(self._buckets.items())]


@dataclass(slots=True)
class Report:
    """What a child writes to stdout when it finishes."""

    buckets: list[list[int]] = field(default_factory=list)
    refused: int = 0
    dropped: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    round_trips_ms: list[float] = field(default_factory=list)

    @classmethod
    def parse(cls, data: bytes) -> Report:
        """A report from a child's stdout."""
        fields: dict[str, Any] = json.loads(data)
        return cls(**fields)

    def window(self, start: float, end: float) -> Window:
        """Counts over the whole buckets that lie between monotonic times `start` and `end`."""
        first, last = math.ceil(start * BUCKETS_PER_S), math.floor(end * BUCKETS_PER_S)
        inside = [row for row in self.buckets if first <= row[0] < last]
        return Window(
            count=sum(r[1] for r in inside),
            skipped=sum(r[2] for r in inside),
            gaps=sum(r[3] for r in inside),
            seconds=(last - first) / BUCKETS_PER_S,
        )


@dataclass(frozen=True, slots=True)
class Window:
    """Items, skipped messages and gap markers counted over `seconds`."""

    count: int
    skipped: int
    gaps: int
    seconds: float


# -- child side ---------------------------------------------------------------------------------


def write_report(report: Report) -> None:
    """Write `report` to stdout (the coordinator reads it once the child exits)."""
    json.dump(dataclasses.asdict(report), sys.stdout)
    sys.stdout.flush()


async def until_finished(work: Coroutine[Any, Any, None]) -> None:
    """Run `work` until it returns or SIGUSR1 arrives; its failure propagates (the child exits non-zero)."""
    finish = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, finish.set)
    async with asyncio.TaskGroup() as tasks:
        worker = tasks.create_task(work)
        waiter = tasks.create_task(finish.wait())
        await asyncio.wait((worker, waiter), return_when=asyncio.FIRST_COMPLETED)
        worker.cancel()
        waiter.cancel()


def configure_child_logging(name: str) -> None:
    """Log to stderr, where the coordinator looks for the readiness line."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=f"{name}: %(message)s")


# -- coordinator side ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Flow:
    """One publisher-to-subscribers measurement: delivered rate (with CPU), publish rate, and anomalies."""

    delivered: Rate
    published_per_s: float
    skipped: int
    gaps: int
    refused: int
    dropped: int
    reports: list[Report]

    def note(self) -> str:
        """A log line's worth of what the flow measured besides the delivered rate."""
        parts = [f"published {self.published_per_s:,.0f} msgs/s"]
        if self.skipped or self.gaps:
            parts.append(f"skipped {self.skipped:,} in {self.gaps} gaps")
        if self.refused:
            parts.append(f"{self.refused:,} acks refused")
        if self.dropped:
            parts.append(f"{self.dropped:,} dropped by the client library")
        parts.append(self.delivered.cpu_note())
        return "; ".join(part for part in parts if part)


def finish_signal(process: ChildProcess) -> None:
    """Ask a child to write its report and exit."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGUSR1)


async def reports(processes: Sequence[ChildProcess]) -> list[Report]:
    """Signal every child to finish and collect their reports."""
    for process in processes:
        finish_signal(process)
    outputs = await asyncio.gather(*(process.output(_REPORT_TIMEOUT_S) for process in processes))
    return [Report.parse(output) for output in outputs]


@contextlib.asynccontextmanager
async def children(
    name: str, argvs: Sequence[Sequence[str]], ready: re.Pattern[str]
) -> AsyncIterator[list[ChildProcess]]:
    """Several children started one after another, each ready before the next starts; all stopped on exit."""
    async with AsyncExitStack() as stack:
        started = []
        for index, argv in enumerate(argvs):
            label = name if len(argvs) == 1 else f"{name} {index + 1}"
            process, _ = await stack.enter_async_context(child(label, argv, ready, stdout=True))
            started.append(process)
        yield started


def _cpu(pids: Mapping[str, Sequence[int]]) -> dict[str, float | None]:
    totals: dict[str, float | None] = {}
    for name, group in pids.items():
        spent = [cpu_seconds(pid) for pid in group]
        totals[name] = None if any(s is None for s in spent) else sum(s for s in spent if s is not None)
    return totals


async def measure_flow(
    publisher_argv: Sequence[str],
    subscriber_argvs: Sequence[Sequence[str]],
    load: Load,
    others: Mapping[str, int],
    ready: re.Pattern[str],
) -> Flow:
    """Start the subscribers, then the publisher; count deliveries over the load's window after warm-up.

    `others` (name -> pid) are servers whose CPU is reported with the clients' and this process's.
    `ready` matches the readiness line of every child.
    """
    async with (
        children("subscriber", subscriber_argvs, ready) as subscribers,
        children("publisher", [publisher_argv], ready) as publishers,
    ):
        pids: dict[str, list[int]] = {name: [pid] for name, pid in others.items()}
        pids["publisher"] = [publishers[0].pid]
        pids["subscribers" if len(subscribers) > 1 else "subscriber"] = [s.pid for s in subscribers]
        pids["bench"] = [os.getpid()]
        await asyncio.sleep(load.warmup_s)
        cpu_start, start = _cpu(pids), time.monotonic()
        await asyncio.sleep(load.duration_s)
        end = time.monotonic()
        cpu_end = _cpu(pids)
        published, *received = await reports([*publishers, *subscribers])
    windows = [report.window(start, end) for report in received]
    count = sum(w.count for w in windows)
    seconds = windows[0].seconds
    cpu_us: dict[str, float] = {}
    for name, before in cpu_start.items():
        after = cpu_end[name]
        if before is not None and after is not None and count:
            cpu_us[name] = (after - before) / count * 1e6
    sent = published.window(start, end)
    return Flow(
        delivered=Rate(count / seconds, count, cpu_us),
        published_per_s=sent.count / sent.seconds,
        skipped=sum(w.skipped for w in windows),
        gaps=sum(w.gaps for w in windows),
        refused=sum(r.refused for r in received),
        dropped=sum(r.dropped for r in received),
        reports=received,
    )
