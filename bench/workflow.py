"""Workflow group: durable steps/s, step-to-step latency and memory of waiting processes.

Setup: `python -m control_plane serve --listen 127.0.0.1:0` as a child process with a fresh
temporary data directory (SQLite WAL, synchronous=FULL: a transition is acknowledged once
fsynced; transitions of many processes share a commit). The no-op workers run in a second child
process (`python -m bench.workflow_clients`): one SDK `Worker` of service `Bench` (registered in
the Registry, lease kept alive, SubscribeTasks with max in flight 200) whose `noop` handler
returns at once and is reported by a unary CompleteTask, as any SDK worker does. This process
drives: it registers the definition, starts processes with StartProcess on one channel, and learns
of their ends from one Bus subscription of `workflow.bench5.>` (at most once, NEW_ONLY, max_batch
1,000, max_in_flight 100,000): the `process_completed` message the engine publishes in the
transaction that completes a process. One stream carries every process's events in batches, where
a WatchProcess per process would add a stream and history reads per transition to the server
under test. A gap marker on it (a dropped message) fails the run rather than stall a slot.

The definition `bench5`: five sequential steps `s1`..`s5`, each `task: {service: Bench, type: noop}`.
- `workflow.steps_per_s_1`: one process in flight, each started as soon as the last one's
  `process_completed` arrived; 5 x processes completed / s over 5 s after 1 s of warm-up.
- `workflow.steps_per_s_100`: the same closed loop with 100 processes in flight. Target >= 2,000.
  `workflow.steps_per_s_100_vs_echo` divides it by `baseline.unary_echo_per_s` of the same run.
- `workflow.steps_per_s_100_metrics_off`: the 100-in-flight loop again, on a fresh control plane
  started with `--metrics off` (no gRPC interceptor, no histogram observations; the cores' plain
  counters remain). `workflow.steps_per_s_100_metrics_on_vs_off` divides the default run (metrics
  on, nothing scraping) by it: what metrics cost a step. Target >= 0.95.
- `workflow.step_p50_ms_100`, `workflow.step_p99_ms_100`: step-to-step latency at 100 in flight:
  the time between the arrivals, at the subscriber (`time.monotonic()` when its frame is read), of
  consecutive `step_completed` messages of one process (s1->s2, ..., s4->s5: 4 samples per process),
  for the pairs whose later message arrived in the measured window. It spans dispatch of the next
  task, the worker's round trip and the fsynced commit of its completion. Both ends are stamped by
  the same reader, so its delivery delay cancels out except for its jitter; the same intervals
  from the messages' `published_at` (the engine's wall clock when it took up the completion, before
  the commit) are logged as a cross-check, as are the intervals at 1 in flight. In a closed loop
  each process has one step outstanding, so the mean interval is 100 / steps_per_s_100 (Little's
  law): 50 ms at 2,000 steps/s; p99 <= 10 ms at 100 in flight needs more than 10,000 steps/s.
  Target p99 <= 10 ms.
- `workflow.rss_mb_100k_waiting`: on a fresh control plane, 100,000 processes of the one-step
  definition `bench_wait` (`steps: [{id: wait, wait_signal: {name: go}}]`) started with 200
  StartProcess calls in flight; then the control plane's peak RSS (VmHWM of /proc/<pid>/status).
  Target <= 300 MB.
- `workflow.map_items_per_s`: on a fresh control plane with the same worker child, one process of
  `bench_map`: a map step over `input.xs`, a list of 10,000 numbers, `max_concurrency` 100, each
  item one no-op task; items / s from StartProcess until its `process_completed` arrives on a Bus
  subscription of `workflow.bench_map.*.process_completed`. `workflow.map_items_per_s_vs_steps_100`
  divides it by `workflow.steps_per_s_100` of the same run. Target >= 0.8.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from bench.baseline import UNARY_ECHO
from bench.bus_clients import open_subscription
from bench.figures import Figure, GroupResult, Load, RunContext, Target
from bench.harness import Rate, child, closed_loop_rate, percentile, python_module
from hms.mgmt.v1 import bus_pb2, workflow_pb2, workflow_pb2_grpc

logger = logging.getLogger(__name__)

GROUP = "workflow"
DEFINITION = "bench5"
STEPS = 5
SERVICE = "Bench"
TASK_TYPE = "noop"
MANY = 100
WORKER_MAX_IN_FLIGHT = 200
WAIT_DEFINITION = "bench_wait"
WAITING = 100_000
START_IN_FLIGHT = 200
SUBSCRIBE_MAX_BATCH = 1000
SUBSCRIBE_MAX_IN_FLIGHT = 100_000
STEPS_TARGET = Target(2000, at_least=True)
STEP_P99_TARGET_MS = Target(10.0, at_least=False)
RSS_TARGET_MB = Target(300, at_least=False)
METRICS_COST_TARGET = Target(0.95, at_least=True)
# A process of five no-op steps that has not ended by then is stuck, not slow.
_PROCESS_TIMEOUT_S = 30.0
_PLANE_READY = re.compile(r"mgmt listening on (\S+)")
_WORKERS_READY = re.compile(r"workers ready")
_FINAL_EVENTS = frozenset({"process_completed", "process_failed", "process_compensated", "process_cancelled"})

FIVE_STEPS = f"name: {DEFINITION}\nsteps:\n" + "".join(
    f"  - {{id: s{n}, task: {{service: {SERVICE}, type: {TASK_TYPE}}}}}\n" for n in range(1, STEPS + 1)
)
WAIT_FOR_SIGNAL = f"name: {WAIT_DEFINITION}\nsteps:\n  - {{id: wait, wait_signal: {{name: go}}}}\n"
MAP_DEFINITION = "bench_map"
MAP_ITEMS = 10_000
MAP_CONCURRENCY = 100
MAP_TARGET = Target(0.8, at_least=True)
_MAP_TIMEOUT_S = 600.0
MAP_STEP = f"""name: {MAP_DEFINITION}
steps:
  - id: each
    map:
      items: "input.xs"
      max_concurrency: {MAP_CONCURRENCY}
      steps:
        - {{id: item, task: {{service: {SERVICE}, type: {TASK_TYPE}}}}}
"""


@dataclass(frozen=True, slots=True)
class Interval:
    """Two consecutive step completions of one process: when the later arrived, and the gaps (ms)."""

    arrived: float
    arrival_ms: float
    published_ms: float


class Tracker:
    """Reads the Bus events of `bench5` processes: wakes whoever waits for a process's end, times steps."""

    def __init__(self) -> None:
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self._ended: dict[str, str] = {}
        self._last_step: dict[str, tuple[float, float]] = {}
        self.intervals: list[Interval] = []

    async def follow(self, responses: AsyncIterator[bus_pb2.SubscribeResponse]) -> None:
        """Consume the subscription until cancelled; a gap (dropped messages) is an error."""
        async for response in responses:
            arrived = time.monotonic()
            if response.HasField("gap"):
                raise RuntimeError(f"the subscriber was told it missed {response.gap.skipped} messages")
            for delivery in response.deliveries:
                message = delivery.message
                _, _, process_id, event = message.subject.split(".")
                if event == "step_completed":
                    published = message.published_at.seconds + message.published_at.nanos / 1e9
                    previous = self._last_step.get(process_id)
                    self._last_step[process_id] = (arrived, published)
                    if previous is not None:
                        self.intervals.append(
                            Interval(
                                arrived, (arrived - previous[0]) * 1000, (published - previous[1]) * 1000
                            )
                        )
                elif event in _FINAL_EVENTS:
                    self._last_step.pop(process_id, None)
                    waiter = self._waiters.pop(process_id, None)
                    if waiter is None:
                        self._ended[process_id] = event
                    elif event == "process_completed":
                        waiter.set_result(None)
                    else:
                        waiter.set_exception(RuntimeError(f"process {process_id} ended with {event}"))
        raise RuntimeError("the Bus subscription ended")

    async def completion(self, process_id: str) -> None:
        """Return once the process has completed (raise if it ended otherwise, or never does)."""
        event = self._ended.pop(process_id, None)
        if event is None:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters[process_id] = waiter
            try:
                async with asyncio.timeout(_PROCESS_TIMEOUT_S):
                    await waiter
            finally:
                self._waiters.pop(process_id, None)
        elif event != "process_completed":
            raise RuntimeError(f"process {process_id} ended with {event}")

    def window(self, start: float, end: float) -> list[Interval]:
        """The intervals whose later step completion arrived between `start` and `end` (monotonic)."""
        return [i for i in self.intervals if start <= i.arrived < end]


@dataclass(frozen=True, slots=True)
class Phase:
    """A closed loop of processes: processes/s, step intervals in its window, start-to-end times (ms)."""

    processes: Rate
    intervals: list[Interval]
    process_ms: list[float]

    @property
    def steps_per_s(self) -> float:
        """Durable steps per second."""
        return self.processes.per_s * STEPS

    def cpu_per_step(self) -> str:
        """`CPU per step: control plane 600 us, ...` from the CPU per process."""
        spent = ", ".join(f"{name} {us / STEPS:.0f} us" for name, us in self.processes.cpu_us.items())
        return f"CPU per step: {spent}" if spent else ""


@dataclass(frozen=True, slots=True)
class Plane:
    """A running control plane child: where it listens, its pid and its data directory."""

    address: str
    pid: int
    data_dir: Path


@contextlib.asynccontextmanager
async def control_plane(*, metrics: bool = True) -> AsyncIterator[Plane]:
    """A control plane child with a fresh data directory, on a port of its choosing."""
    with tempfile.TemporaryDirectory(prefix="hms-bench-wf-") as data_dir:
        argv = python_module(
            "control_plane",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--data-dir",
            data_dir,
            "--metrics",
            "on" if metrics else "off",
        )
        async with child("control plane", argv, _PLANE_READY) as (process, ready):
            yield Plane(ready.group(1), process.pid, Path(data_dir))


async def closed_loop(
    stub: workflow_pb2_grpc.WorkflowAsyncStub, tracker: Tracker, load: Load, pids: dict[str, int]
) -> Phase:
    """Keep `load.in_flight` processes of `bench5` running, each replaced as soon as it completes."""
    request = workflow_pb2.StartProcessRequest(definition=DEFINITION)
    process_ms: list[float] = []

    async def one_process() -> None:
        started = time.monotonic()
        response = await stub.StartProcess(request)
        await tracker.completion(response.process.id)
        process_ms.append((time.monotonic() - started) * 1000)

    tracker.intervals.clear()
    began = time.monotonic()
    rate = await closed_loop_rate(one_process, load, pids)
    window_start = began + load.warmup_s
    intervals = tracker.window(window_start, window_start + load.duration_s)
    return Phase(rate, intervals, process_ms)


def log_phase(label: str, phase: Phase) -> None:
    """One line of what a phase measured besides steps/s."""
    arrival = [i.arrival_ms for i in phase.intervals]
    published = [i.published_ms for i in phase.intervals]
    logger.info(
        "%s: %.0f steps/s (%d processes); process start-to-end p50 %.2f ms; %s",
        label,
        phase.steps_per_s,
        phase.processes.count,
        percentile(phase.process_ms, 50),
        phase.cpu_per_step(),
    )
    logger.info(
        "%s: step-to-step %d samples: on arrival p50 %.2f, p99 %.2f, max %.2f ms; "
        "by published_at p50 %.2f, p99 %.2f ms",
        label,
        len(arrival),
        percentile(arrival, 50),
        percentile(arrival, 99),
        max(arrival),
        percentile(published, 50),
        percentile(published, 99),
    )


async def step_phases(load: Load, in_flight: tuple[int, ...], *, metrics: bool = True) -> list[Phase]:
    """A closed loop at each of `in_flight` processes in flight, on one control plane with one worker process."""
    phases: list[Phase] = []
    async with control_plane(metrics=metrics) as plane, grpc.aio.insecure_channel(plane.address) as channel:
        stub = workflow_pb2_grpc.WorkflowStub(channel)
        await stub.RegisterDefinition(workflow_pb2.RegisterDefinitionRequest(source=FIVE_STEPS))
        workers_argv = python_module(
            "bench.workflow_clients",
            plane.address,
            *("--service", SERVICE, "--task-type", TASK_TYPE, "--max-in-flight", str(WORKER_MAX_IN_FLIGHT)),
        )
        async with child("workers", workers_argv, _WORKERS_READY) as (workers, _):
            pids = {"control plane": plane.pid, "workers": workers.pid}
            subscription = bus_pb2.SubscribeRequest(
                pattern=f"workflow.{DEFINITION}.>",
                start=bus_pb2.START_POSITION_NEW_ONLY,
                ack_mode=bus_pb2.ACK_MODE_NONE,
                max_batch=SUBSCRIBE_MAX_BATCH,
                max_in_flight=SUBSCRIBE_MAX_IN_FLIGHT,
            )
            call, responses = await open_subscription(channel, subscription)
            tracker = Tracker()
            try:
                async with asyncio.TaskGroup() as tasks:
                    following = tasks.create_task(tracker.follow(responses))
                    for count in in_flight:
                        label = f"{count} in flight" + ("" if metrics else ", metrics off")
                        logger.info("%s: %g s after %g s warm-up", label, load.duration_s, load.warmup_s)
                        phase = await closed_loop(
                            stub, tracker, dataclasses.replace(load, in_flight=count), pids
                        )
                        log_phase(label, phase)
                        phases.append(phase)
                    following.cancel()
            finally:
                call.cancel()
    return phases


def peak_rss_mb(pid: int) -> tuple[float, float]:
    """(VmHWM, VmRSS) of a process in MB (2**20 bytes), from /proc/<pid>/status."""
    kib: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            kib[name] = int(value.split()[0])
    return kib["VmHWM"] / 1024, kib["VmRSS"] / 1024


def size_mb(directory: Path) -> float:
    """Bytes under `directory`, in MB."""
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file()) / 2**20


async def waiting_rss(count: int) -> float:
    """Peak RSS (MB) of a fresh control plane after `count` processes started to wait for a signal."""
    async with control_plane() as plane, grpc.aio.insecure_channel(plane.address) as channel:
        stub = workflow_pb2_grpc.WorkflowStub(channel)
        await stub.RegisterDefinition(workflow_pb2.RegisterDefinitionRequest(source=WAIT_FOR_SIGNAL))
        before, _ = peak_rss_mb(plane.pid)
        request = workflow_pb2.StartProcessRequest(definition=WAIT_DEFINITION)
        remaining: Iterator[int] = iter(range(count))
        last = ""

        async def starter() -> None:
            nonlocal last
            for _ in remaining:
                last = (await stub.StartProcess(request)).process.id

        started = time.perf_counter()
        async with asyncio.TaskGroup() as tasks:
            for _ in range(START_IN_FLIGHT):
                tasks.create_task(starter())
        took = time.perf_counter() - started
        process = (await stub.GetProcess(workflow_pb2.GetProcessRequest(process_id=last))).process
        if process.state != workflow_pb2.PROCESS_STATE_RUNNING:
            raise RuntimeError(f"a waiting process is {workflow_pb2.ProcessState.Name(process.state)}")
        peak, now = peak_rss_mb(plane.pid)
        logger.info(
            "waiting: %d processes started in %.1f s (%.0f/s, %d in flight); control plane RSS %.0f MB "
            "before, peak %.0f MB, now %.0f MB; data dir %.0f MB",
            count,
            took,
            count / took,
            START_IN_FLIGHT,
            before,
            peak,
            now,
            size_mb(plane.data_dir),
        )
    return peak


async def map_items_per_s(items: int) -> float:
    """Items per second of one map step over `items` no-op items, on a fresh control plane."""
    async with control_plane() as plane, grpc.aio.insecure_channel(plane.address) as channel:
        stub = workflow_pb2_grpc.WorkflowStub(channel)
        await stub.RegisterDefinition(workflow_pb2.RegisterDefinitionRequest(source=MAP_STEP))
        workers_argv = python_module(
            "bench.workflow_clients",
            plane.address,
            *("--service", SERVICE, "--task-type", TASK_TYPE, "--max-in-flight", str(WORKER_MAX_IN_FLIGHT)),
        )
        async with child("workers", workers_argv, _WORKERS_READY):
            subscription = bus_pb2.SubscribeRequest(
                pattern=f"workflow.{MAP_DEFINITION}.*.process_completed",
                start=bus_pb2.START_POSITION_NEW_ONLY,
                ack_mode=bus_pb2.ACK_MODE_NONE,
            )
            call, responses = await open_subscription(channel, subscription)
            try:
                request = workflow_pb2.StartProcessRequest(definition=MAP_DEFINITION)
                request.input.update({"xs": list(range(items))})
                started = time.monotonic()
                await stub.StartProcess(request)
                async with asyncio.timeout(_MAP_TIMEOUT_S):
                    async for response in responses:
                        if response.deliveries:
                            break
                elapsed = time.monotonic() - started
            finally:
                call.cancel()
    rate = items / elapsed
    logger.info(
        "map: %d items at most %d at once in %.2f s: %.0f items/s", items, MAP_CONCURRENCY, elapsed, rate
    )
    return rate


async def run(context: RunContext) -> GroupResult:
    """Measure 1 and 100 processes in flight on one control plane, then waiting processes on another."""
    echo = context.figure(UNARY_ECHO)
    load = context.load
    one, many = await step_phases(load, (1, MANY))
    (many_off,) = await step_phases(load, (MANY,), metrics=False)
    step_ms = [i.arrival_ms for i in many.intervals]
    logger.info(
        "waiting: %d processes of %s, %d StartProcess in flight", WAITING, WAIT_DEFINITION, START_IN_FLIGHT
    )
    rss = await waiting_rss(WAITING)
    logger.info("map: one process of %s over %d items", MAP_DEFINITION, MAP_ITEMS)
    mapped = await map_items_per_s(MAP_ITEMS)
    figures = [
        Figure("workflow.steps_per_s_1", one.steps_per_s, "steps/s"),
        Figure(f"workflow.steps_per_s_{MANY}", many.steps_per_s, "steps/s", STEPS_TARGET),
        Figure(f"workflow.steps_per_s_{MANY}_vs_echo", many.steps_per_s / echo.value, "ratio"),
        Figure(f"workflow.steps_per_s_{MANY}_metrics_off", many_off.steps_per_s, "steps/s"),
        Figure(
            f"workflow.steps_per_s_{MANY}_metrics_on_vs_off",
            many.steps_per_s / many_off.steps_per_s,
            "ratio",
            METRICS_COST_TARGET,
        ),
        Figure(f"workflow.step_p50_ms_{MANY}", percentile(step_ms, 50), "ms"),
        Figure(f"workflow.step_p99_ms_{MANY}", percentile(step_ms, 99), "ms", STEP_P99_TARGET_MS),
        Figure(f"workflow.rss_mb_{WAITING // 1000}k_waiting", rss, "MB", RSS_TARGET_MB),
        Figure("workflow.map_items_per_s", mapped, "items/s"),
        Figure(f"workflow.map_items_per_s_vs_steps_{MANY}", mapped / many.steps_per_s, "ratio", MAP_TARGET),
    ]
    setup = (
        f"control plane child (SQLite, synchronous=FULL, fresh dir); one SDK worker (CompleteTask per task, "
        f"max in flight {WORKER_MAX_IN_FLIGHT}) in a child process; {STEPS}-step no-op definition, "
        f"closed loop at 1 and {MANY} processes in flight, ends seen on one Bus subscription; "
        f"{MANY} in flight again on a fresh plane with --metrics off; "
        f"{load.duration_s:g} s after {load.warmup_s:g} s warm-up; step-to-step = gap between arrivals of "
        f"consecutive step_completed events; RSS = VmHWM after {WAITING:,} processes waiting on a signal "
        f"(fresh plane, {START_IN_FLIGHT} starts in flight); map = one process mapping {MAP_ITEMS:,} no-op "
        f"items, {MAP_CONCURRENCY} at once (fresh plane)"
    )
    return GroupResult(GROUP, setup, figures)
