"""Load-generation machinery: child processes that announce readiness, closed-loop load, percentiles."""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import logging
import os
import re
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.figures import Load

logger = logging.getLogger(__name__)

# Children run with the repository as their working directory, so `python -m bench.x` resolves.
REPO = Path(__file__).resolve().parent.parent
_LOG_TAIL = 50
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ChildError(RuntimeError):
    """A child process failed to start or to finish; the message carries the tail of its log."""


class ChildProcess:
    """A child process that is ready once a line of its stderr matches `ready`.

    After readiness its stderr keeps being drained (a full pipe would block the child), and the
    last lines are kept for error messages.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        ready: re.Pattern[str],
        *,
        stdout: bool = False,
        merged: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: Path = REPO,
    ) -> None:
        self.name = name
        self._argv = list(argv)
        self._ready = ready
        self._want_stdout = stdout
        # `merged`: the child logs to stdout (restate-server does), so both streams are read as one.
        self._merged = merged
        self._env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._cwd = cwd
        self._process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        self.log: collections.deque[str] = collections.deque(maxlen=_LOG_TAIL)

    @property
    def pid(self) -> int:
        """The child's process id (for py-spy)."""
        assert self._process is not None, "not started"
        return self._process.pid

    async def start(self, timeout_s: float = 60.0) -> re.Match[str]:
        """Start the child and return the match of its readiness line."""
        self._process = await asyncio.create_subprocess_exec(
            *self._argv,
            cwd=self._cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE
            if self._want_stdout or self._merged
            else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.STDOUT if self._merged else asyncio.subprocess.PIPE,
            env=self._env,
            # A session of its own: Ctrl-C in the terminal reaches this process only, which then
            # stops its children in order (a peer's server must not die before its clients).
            start_new_session=True,
        )
        stderr = self._process.stdout if self._merged else self._process.stderr
        assert stderr is not None
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    line = (await stderr.readline()).decode(errors="replace")
                    if not line:
                        raise ChildError(f"{self.name} exited before it was ready:\n{self.tail()}")
                    self.log.append(line)
                    match = self._ready.search(line)
                    if match:
                        break
        except TimeoutError:
            raise ChildError(f"{self.name} not ready within {timeout_s:.0f} s:\n{self.tail()}") from None
        self._drain = asyncio.create_task(self._drain_stderr(stderr), name=f"{self.name}-stderr")
        logger.info("%s ready (pid %d)", self.name, self._process.pid)
        return match

    async def output(self, timeout_s: float) -> bytes:
        """Everything the child writes to stdout, once it exits by itself with status 0."""
        assert self._process is not None and self._process.stdout is not None, "started without stdout"
        try:
            async with asyncio.timeout(timeout_s):
                data = await self._process.stdout.read()
                code = await self._process.wait()
        except TimeoutError:
            raise ChildError(f"{self.name} did not finish within {timeout_s:.0f} s:\n{self.tail()}") from None
        if self._drain is not None:
            await self._drain
        if code != 0:
            raise ChildError(f"{self.name} exited with status {code}:\n{self.tail()}")
        return data

    async def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if it lingers; returns the exit status (None if never started)."""
        process = self._process
        if process is None:
            return None
        try:
            if process.returncode is None:
                process.terminate()
            try:
                async with asyncio.timeout(timeout_s):
                    code = await process.wait()
            except TimeoutError:
                logger.warning("%s did not stop within %.0f s; killing it", self.name, timeout_s)
                process.kill()
                code = await process.wait()
            if self._drain is not None:
                await self._drain
            return code
        finally:
            # Cancelled (Ctrl-C) while waiting: never leave the child behind.
            if process.returncode is None:
                process.kill()
            if self._drain is not None and not self._drain.done():
                self._drain.cancel()

    def tail(self) -> str:
        """The last lines the child logged."""
        return "".join(self.log)

    async def _drain_stderr(self, stderr: asyncio.StreamReader) -> None:
        while line := await stderr.readline():
            self.log.append(line.decode(errors="replace"))


@asynccontextmanager
async def child(
    name: str,
    argv: Sequence[str],
    ready: re.Pattern[str],
    *,
    stdout: bool = False,
    merged: bool = False,
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO,
) -> AsyncIterator[tuple[ChildProcess, re.Match[str]]]:
    """A started child and its readiness match; stopped (killed if need be) when the block exits."""
    process = ChildProcess(name, argv, ready, stdout=stdout, merged=merged, env=env, cwd=cwd)
    try:
        match = await process.start()
        yield process, match
    finally:
        code = await process.stop()
        logger.info("%s stopped (status %s)", name, code)


def python_module(module: str, *args: str) -> list[str]:
    """argv running `python -m module args...` with this interpreter."""
    return [sys.executable, "-m", module, *args]


# What `mgmt serve` logs once its gRPC port answers: the address it chose.
PLANE_READY = re.compile(r"mgmt listening on (\S+)")


def plane_argv(data_dir: str | Path, *options: str) -> list[str]:
    """argv of a control plane on ports of its choosing (loopback; PLANE_READY tells the gRPC one) keeping
    its state in `data_dir`, with `options` added."""
    return python_module(
        "control_plane",
        "serve",
        *("--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"),
        *("--data-dir", str(data_dir)),
        *options,
    )


class Counter:
    """Completions counted by load generators; read by `measured_rate`."""

    __slots__ = ("count", "stop")

    def __init__(self) -> None:
        self.count = 0
        self.stop = False


@dataclass(frozen=True, slots=True)
class Rate:
    """Completions per second over a measured window, and the CPU each process spent per completion."""

    per_s: float
    count: int
    cpu_us: dict[str, float]

    def cpu_note(self) -> str:
        """`CPU per item: control plane 245 us, bench 198 us` (empty where /proc is unavailable)."""
        spent = ", ".join(f"{name} {us:.0f} us" for name, us in self.cpu_us.items())
        return f"CPU per item: {spent}" if spent else ""


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process (all its threads) has used so far; None without Linux /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the parenthesised command name; utime and stime are fields 14 and 15 of the line.
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


async def measured_rate(counter: Counter, load: Load, processes: Mapping[str, int]) -> Rate:
    """Completions/s over `load.duration_s` after `load.warmup_s` of warm-up; then tells the load to stop.

    `processes` (name -> pid) are the ones whose CPU is reported; this process is always added as "bench".
    """
    pids = {**processes, "bench": os.getpid()}
    try:
        await asyncio.sleep(load.warmup_s)
        cpu_start = {name: cpu_seconds(pid) for name, pid in pids.items()}
        start_count, start = counter.count, time.perf_counter()
        await asyncio.sleep(load.duration_s)
        count, elapsed = counter.count - start_count, time.perf_counter() - start
        cpu_end = {name: cpu_seconds(pid) for name, pid in pids.items()}
    finally:
        counter.stop = True
    cpu_us: dict[str, float] = {}
    for name, before in cpu_start.items():
        after = cpu_end[name]
        if before is not None and after is not None and count:
            cpu_us[name] = (after - before) / count * 1e6
    return Rate(count / elapsed, count, cpu_us)


async def closed_loop_rate(
    call: Callable[[], Awaitable[object]], load: Load, processes: Mapping[str, int]
) -> Rate:
    """Calls/s with `load.in_flight` callers, each issuing its next call as soon as the last returns."""
    counter = Counter()

    async def caller() -> None:
        while not counter.stop:
            await call()
            counter.count += 1

    async with asyncio.TaskGroup() as tasks:
        for _ in range(load.in_flight):
            tasks.create_task(caller())
        rate = await measured_rate(counter, load, processes)
    return rate


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100) of `values`, interpolating linearly between ranks."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def free_port() -> int:
    """A TCP port of 127.0.0.1 free right now, for a server that cannot pick its own and report it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def median_rate(rates: Sequence[Rate]) -> Rate:
    """The rate of median calls/s among repeats (the upper middle one of an even count), CPU included."""
    if not rates:
        raise ValueError("median of no rates")
    return sorted(rates, key=lambda rate: rate.per_s)[len(rates) // 2]


def add_loop_options(parser: argparse.ArgumentParser) -> None:
    """The options of a child that runs closed loops itself (`--in-flight` once per count)."""
    parser.add_argument("--in-flight", type=int, action="append", required=True)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)


def loop_load(args: argparse.Namespace) -> Load:
    """The load shape those options give."""
    return Load(warmup_s=args.warmup, duration_s=args.duration, repeats=args.repeats)


def loop_arguments(load: Load, in_flight: Sequence[int]) -> list[str]:
    """The options (see `add_loop_options`) asking such a child for `load` at each count of `in_flight`."""
    counts = [arg for count in in_flight for arg in ("--in-flight", str(count))]
    return [
        *counts,
        "--warmup",
        str(load.warmup_s),
        "--duration",
        str(load.duration_s),
        "--repeats",
        str(load.repeats),
    ]


def loops_timeout_s(load: Load, in_flight: Sequence[int], start_s: float) -> float:
    """How long such a child may take: three times its loops, plus `start_s` to get ready and stop."""
    return len(in_flight) * load.repeats * (load.warmup_s + load.duration_s) * 3 + start_s


def median_rates(output: bytes, in_flight: Sequence[int]) -> dict[int, Rate]:
    """The median rate at each count of `in_flight` from such a child's JSON output (`rates_by_count`'s)."""
    runs: dict[str, list[dict[str, Any]]] = json.loads(output)
    return {
        count: median_rate(
            [Rate(float(f["per_s"]), int(f["count"]), dict(f["cpu_us"])) for f in runs[str(count)]]
        )
        for count in in_flight
    }


async def rates_by_count(
    call: Callable[[], Awaitable[object]], load: Load, in_flight: Sequence[int], process: str, steps: int
) -> dict[str, list[dict[str, Any]]]:
    """`load.repeats` closed loops of `call` at each count of `in_flight`, in a child that is engine and
    caller at once: its CPU is reported as `process`'s (not a load generator's); rates (per_s, count, cpu_us)
    by count, as JSON-able dicts. `steps` per call, for the log."""
    rates: dict[str, list[dict[str, Any]]] = {}
    for count in in_flight:
        for repeat in range(1, load.repeats + 1):
            rate = await closed_loop_rate(call, dataclasses.replace(load, in_flight=count), {})
            rate.cpu_us[process] = rate.cpu_us.pop("bench", 0.0)
            logger.info(
                "%d in flight (%d of %d): %.0f steps/s; %s",
                count,
                repeat,
                load.repeats,
                rate.per_s * steps,
                rate.cpu_note(),
            )
            rates.setdefault(str(count), []).append(dataclasses.asdict(rate))
    return rates
