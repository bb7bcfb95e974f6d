"""Workflow group: durable steps/s, step-to-step latency and memory of waiting processes.

Setup: `python -m control_plane serve --listen 127.0.0.1:0` as a child process with a fresh
temporary data directory (SQLite WAL, synchronous=FULL: a transition is acknowledged once
fsynced; transitions of many processes share a commit). The no-op workers run in a second child
process (`python -m bench.workflow_clients`): one SDK `Worker` of service `Bench` (registered in
the Registry, lease kept alive, SubscribeTasks with max in flight 200) whose `noop` handler
returns at once and is reported in batches on its ReportTaskEventBatches stream, as any SDK worker does. This process
drives: it registers the definition, starts processes with StartProcess on one channel, and learns
of their ends from one Bus subscription of `workflow.bench5.>` (at most once, NEW_ONLY, max_batch
1,000, max_in_flight 100,000): the `process_completed` message the engine publishes in the
transaction that completes a process. One stream carries every process's events in batches, where
a WatchProcess per process would add a stream and history reads per transition to the server
under test. A gap marker on it (a dropped message) fails the run rather than stall a slot.

The definition `bench5`: five sequential steps `s1`..`s5`, each `task: {service: Bench, type: noop}`
whose input is the previous step's output (the first's the process input `{bench: bench5}`); the
worker returns its input plus a field named after the step, so the process's output (the last
step's, carried by its `process_completed` event) must be the input plus `s1`..`s5`, and every
one is checked. The peers group (Restate, DBOS) runs the same workflow.
- `workflow.steps_per_s_1`: one process in flight, each started as soon as the last one's
  `process_completed` arrived; 5 x processes completed / s over 5 s after 1 s of warm-up; the
  median of 3 such runs (`--repeats`), as for every closed loop here.
- `workflow.steps_per_s_100`: the same closed loop with 100 processes in flight. Target >= 2,000.
  `workflow.steps_per_s_100_vs_echo` divides it by `baseline.unary_echo_per_s` of the same run.
- `workflow.cp_cpu_us_per_step`: the control plane's CPU (user + system, /proc) per step in the
  median 100-in-flight run; `workflow.cp_cpu_per_step_vs_echo_call` divides it by the raw echo
  server's CPU per unary call of the same run (`baseline.echo_cpu_us_per_call`). Target <= 1.7.
- `workflow.floor_steps_per_s_1`, `workflow.floor_steps_per_s_100`, `workflow.floor_cpu_us_per_step`,
  `workflow.floor_cpu_per_step_vs_echo_call`: the same closed loops (same worker child, same driver and
  subscription, median of 3) against the protocol floor (`bench.floor_plane`): a server that answers the
  same calls with the same messages and publishes the same 13 events per process, with no engine, no
  store and no fsync. Its CPU per step is what this traffic alone costs a grpc.aio server; its steps/s the
  most these clients can do on this machine whatever the control plane does. `workflow.steps_per_s_1_vs_floor`
  and `_100_vs_floor` divide the control plane's by it. With no commit to wait for, the floor's frames
  would carry a few items each at 100 in flight, where the control plane's carry a commit's worth: there
  each frame waits 20 turns of the floor's event loop for more (`--hold-turns`, no timer); at 1 in flight
  none (nothing can join a frame).
- `workflow.engine_steps_per_s_1`, `workflow.engine_steps_per_s_100`, `workflow.engine_cpu_us_per_step_1`,
  `workflow.engine_cpu_us_per_step_100`: the same closed loops (median of 3) on the engine and its store
  alone (`bench.engine_loop`: a control plane in a child process of its own, driven by direct calls of
  Workflows.start / worker / complete, no gRPC), with that process's CPU per step. With the floor's, the
  two halves of `workflow.cp_cpu_us_per_step`: the traffic and the rest.
- `workflow.steps_per_s_100_metrics_off`: the 100-in-flight loop again, on a fresh control plane
  started with `--metrics off` (no gRPC interceptor, no histogram observations; the cores' plain
  counters remain). `workflow.steps_per_s_100_metrics_on_vs_off` divides the default run (metrics
  on, nothing scraping) by it: what metrics cost a step. Target >= 0.95. The default plane runs
  its 100-in-flight loops first, so all three are measured on planes of the same age (a plane that
  ran the 1-in-flight loop first holds ~1,000 more processes' history and Bus tail).
  "Metrics off" means `--metrics off`: the HTTP listener stays up (it serves /healthz), but no
  Prometheus registry, no gRPC metrics interceptor and no histograms exist.
- `workflow.steps_per_s_100_traced`: the 100-in-flight loop on a fresh control plane (metrics on,
  as by default) tracing every span: OTEL_TRACES_EXPORTER=otlp, OTEL_TRACES_SAMPLER=always_on,
  exported over OTLP/gRPC by the SDK's batch processor to a local receiver in this process
  (bench/otlp_sink.py: the collector's TraceService, decoding and counting each export). The
  control plane makes a server span per RPC and, per step, a step span and an attempt span (plus
  the process span and its StartProcess span). The workers are not traced (their own spans would
  cost the worker process, not the control plane). `workflow.steps_per_s_100_traced_vs_off`
  divides it by `workflow.steps_per_s_100_metrics_off`. Target >= 0.8.
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
- `workflow.step_p50_ms_half_load`, `workflow.step_p99_ms_half_load`: the same step-to-step
  latency in an open loop on the same control plane: processes started (each StartProcess its own
  task, not waiting for earlier ones) at Poisson arrivals of half the median `steps_per_s_100`
  (in processes/s: steps/s / 5 / 2), for 1 s of warm-up then 5 s; every process started must
  complete. Target p99 <= 10 ms.
- `workflow.cp_cpu_us_per_step_half_load`, `workflow.cp_cores_busy_half_load`: the control plane's
  CPU (/proc, all its threads) over that open loop, from its first start to its last completion, per
  step started and per second: what "half load" costs it. Its CPU a step falls as its batches grow,
  so half the 100-in-flight rate, with the small batches it gives, keeps it busier than half.
- `workflow.rss_mb_1m_waiting`: on a fresh control plane, 1,000,000 processes (MGMT_BENCH_WAITING
  changes the count, and the figure's name with it: `rss_mb_1k_waiting` for 1,000; 0 skips it) of the one-step
  definition `bench_wait` (`steps: [{id: wait, wait_signal: {name: go}}]`) started with 200
  StartProcess calls in flight (the API has no bulk start); then the control plane's peak RSS
  (VmHWM of /proc/<pid>/status). Progress is logged every tenth: at ~1,500 starts/s a million
  takes about 11 minutes. Target <= 1,500 MB.
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
import json
import logging
import os
import random
import re
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc

from bench.baseline import ECHO_CPU, UNARY_ECHO
from bench.bus_clients import open_subscription
from bench.figures import Figure, GroupResult, Load, RunContext, Target
from bench.harness import (
    PLANE_READY,
    Rate,
    child,
    closed_loop_rate,
    cpu_seconds,
    loop_arguments,
    loops_timeout_s,
    median_rates,
    percentile,
    plane_argv,
    python_module,
)
from bench.otlp_sink import otlp_sink
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
WAITING = 1_000_000
WAITING_ENV = "MGMT_BENCH_WAITING"
START_IN_FLIGHT = 200
SUBSCRIBE_MAX_BATCH = 1000
SUBSCRIBE_MAX_IN_FLIGHT = 100_000
STEPS_TARGET = Target(2000, at_least=True)
STEP_P99_TARGET_MS = Target(10.0, at_least=False)
RSS_TARGET_MB = Target(1500, at_least=False)
CPU_TARGET = Target(1.7, at_least=False)
METRICS_COST_TARGET = Target(0.95, at_least=True)
TRACING_COST_TARGET = Target(0.8, at_least=True)
# A process of five no-op steps that has not ended by then is stuck, not slow.
_PROCESS_TIMEOUT_S = 30.0
_WORKERS_READY = re.compile(r"workers ready")
FLOOR_READY = re.compile(r"floor listening on (\S+)")
_ENGINE_READY = re.compile(r"engine ready")
# Turns of the event loop the protocol floor holds each frame for at 100 in flight (none at 1).
FLOOR_HOLD_TURNS = 20
_FINAL_EVENTS = frozenset({"process_completed", "process_failed", "process_compensated", "process_cancelled"})

# Each step's task gets the previous step's output (the first the process input) and returns it
# plus a field of its own; the process's output is the last step's, which the caller checks.
FIVE_STEPS = f"name: {DEFINITION}\nsteps:\n" + "".join(
    f"  - {{id: s{n}, task: {{service: {SERVICE}, type: {TASK_TYPE}}}, "
    f'input: "{"input" if n == 1 else f"steps.s{n - 1}.output"}"}}\n'
    for n in range(1, STEPS + 1)
)
START_INPUT = {"bench": DEFINITION}
EXPECTED_OUTPUT = {**START_INPUT, **{f"s{n}": True for n in range(1, STEPS + 1)}}
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


def start_request() -> workflow_pb2.StartProcessRequest:
    """StartProcess of `bench5` with the input whose fields the process's output must carry on."""
    request = workflow_pb2.StartProcessRequest(definition=DEFINITION)
    request.input.update(START_INPUT)
    return request


def check_output(process_id: str, payload: bytes) -> None:
    """Raise unless a `process_completed` event's output is the input plus every step's field."""
    output = json.loads(payload).get("details", {}).get("output")
    if output != EXPECTED_OUTPUT:
        raise RuntimeError(f"process {process_id} completed with output {output!r}, not {EXPECTED_OUTPUT!r}")


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
                    if event == "process_completed":
                        check_output(process_id, message.data)
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
async def control_plane(
    *, metrics: bool = True, env: Mapping[str, str] | None = None
) -> AsyncIterator[Plane]:
    """A control plane child with a fresh data directory, on a port of its choosing (`env` added to its
    environment: the OTEL_* variables of a traced run)."""
    with tempfile.TemporaryDirectory(prefix="hms-bench-wf-") as data_dir:
        argv = plane_argv(data_dir, "--metrics", "on" if metrics else "off")
        async with child("control plane", argv, PLANE_READY, env=env) as (process, ready):
            yield Plane(ready.group(1), process.pid, Path(data_dir))


async def closed_loop(
    stub: workflow_pb2_grpc.WorkflowAsyncStub, tracker: Tracker, load: Load, pids: dict[str, int]
) -> Phase:
    """Keep `load.in_flight` processes of `bench5` running, each replaced as soon as it completes."""
    request = start_request()
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


@dataclass(frozen=True, slots=True)
class Loaded:
    """A control plane with the definition registered, its worker child, and the tracker of its events."""

    stub: workflow_pb2_grpc.WorkflowAsyncStub
    tracker: Tracker
    pids: dict[str, int]


@contextlib.asynccontextmanager
async def floor_plane(hold_turns: int) -> AsyncIterator[Plane]:
    """The protocol floor (bench.floor_plane) as a child, on a port of its choosing."""
    with tempfile.TemporaryDirectory(prefix="hms-bench-floor-") as data_dir:
        argv = python_module("bench.floor_plane", "127.0.0.1:0", "--hold-turns", str(hold_turns))
        async with child("floor", argv, FLOOR_READY) as (process, ready):
            yield Plane(ready.group(1), process.pid, Path(data_dir))


@contextlib.asynccontextmanager
async def loaded_plane(
    *, metrics: bool = True, env: Mapping[str, str] | None = None, floor: int | None = None
) -> AsyncIterator[Loaded]:
    """A fresh control plane (or, with `floor` turns to hold each frame, the protocol floor) with `bench5`
    registered, one worker child, and a Bus subscription followed."""
    plane_of = floor_plane(floor) if floor is not None else control_plane(metrics=metrics, env=env)
    async with (
        plane_of as plane,
        grpc.aio.insecure_channel(plane.address) as channel,
    ):
        stub = workflow_pb2_grpc.WorkflowStub(channel)
        await stub.RegisterDefinition(workflow_pb2.RegisterDefinitionRequest(source=FIVE_STEPS))
        workers_argv = python_module(
            "bench.workflow_clients",
            plane.address,
            *("--service", SERVICE, "--task-type", TASK_TYPE, "--max-in-flight", str(WORKER_MAX_IN_FLIGHT)),
        )
        async with child("workers", workers_argv, _WORKERS_READY) as (workers, _):
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
                    # A failure of the follower (a gap) cancels the measurement in the body.
                    following = tasks.create_task(tracker.follow(responses))
                    try:
                        yield Loaded(stub, tracker, {"control plane": plane.pid, "workers": workers.pid})
                    finally:
                        following.cancel()
            finally:
                call.cancel()


async def engine_rates(load: Load) -> dict[int, Rate]:
    """The median rate (processes/s, with the child's CPU as "engine") at 100 and at 1 in flight of
    `bench5` on the engine and its store alone (bench.engine_loop, a child of its own)."""
    counts = (MANY, 1)
    argv = python_module("bench.engine_loop", *loop_arguments(load, counts))
    async with child("engine", argv, _ENGINE_READY, stdout=True) as (process, _):
        output = await process.output(loops_timeout_s(load, counts, 60))
    rates = median_rates(output, counts)
    for count, rate in rates.items():
        logger.info(
            "engine alone, %d in flight: median %.0f steps/s; %s", count, rate.per_s * STEPS, rate.cpu_note()
        )
    return rates


async def repeated_loop(loaded: Loaded, load: Load, in_flight: int, label: str) -> Phase:
    """`load.repeats` closed loops at `in_flight` processes in flight; the one of median steps/s."""
    phases: list[Phase] = []
    for repeat in range(1, load.repeats + 1):
        logger.info(
            "%s (%d of %d): %g s after %g s warm-up",
            label,
            repeat,
            load.repeats,
            load.duration_s,
            load.warmup_s,
        )
        phase = await closed_loop(
            loaded.stub, loaded.tracker, dataclasses.replace(load, in_flight=in_flight), loaded.pids
        )
        log_phase(label, phase)
        phases.append(phase)
    median = sorted(phases, key=lambda phase: phase.steps_per_s)[len(phases) // 2]
    logger.info(
        "%s: median %.0f steps/s of %s",
        label,
        median.steps_per_s,
        ", ".join(f"{phase.steps_per_s:.0f}" for phase in phases),
    )
    return median


@dataclass(frozen=True, slots=True)
class OpenPhase:
    """Processes started at a Poisson rate: the rate, how many started, and step intervals in the window."""

    processes_per_s: float
    started: int
    intervals: list[Interval]
    process_ms: list[float]
    # The control plane's CPU seconds over the whole loop (None without /proc), and the loop's length.
    plane_cpu_s: float | None
    elapsed_s: float

    @property
    def plane_cpu_us_per_step(self) -> float | None:
        """The control plane's CPU per step started (µs)."""
        if self.plane_cpu_s is None or not self.started:
            return None
        return self.plane_cpu_s * 1e6 / (self.started * STEPS)

    @property
    def plane_cores_busy(self) -> float | None:
        """The control plane's CPU per second of the loop: 1.0 is one core always busy."""
        return None if self.plane_cpu_s is None else self.plane_cpu_s / self.elapsed_s


async def open_loop(loaded: Loaded, processes_per_s: float, load: Load) -> OpenPhase:
    """Start processes at Poisson arrivals of `processes_per_s` for warm-up + duration; wait for all to end.

    Each start is its own task issued when due, whether or not earlier ones have ended (open loop):
    a slow engine is not given time to catch up, so queueing shows in the latencies.
    """
    request = start_request()
    arrivals = random.Random(18)
    process_ms: list[float] = []

    async def one_process() -> None:
        started = time.monotonic()
        response = await loaded.stub.StartProcess(request)
        await loaded.tracker.completion(response.process.id)
        process_ms.append((time.monotonic() - started) * 1000)

    loaded.tracker.intervals.clear()
    plane = loaded.pids.get("control plane")
    cpu_before = cpu_seconds(plane) if plane is not None else None
    began = due = time.monotonic()
    end = began + load.warmup_s + load.duration_s
    started = 0
    async with asyncio.TaskGroup() as tasks:
        while (due := due + arrivals.expovariate(processes_per_s)) < end:
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.create_task(one_process())
            started += 1
    elapsed = time.monotonic() - began
    cpu_after = cpu_seconds(plane) if plane is not None else None
    plane_cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    window_start = began + load.warmup_s
    intervals = loaded.tracker.window(window_start, window_start + load.duration_s)
    return OpenPhase(processes_per_s, started, intervals, process_ms, plane_cpu, elapsed)


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


def waiting_count() -> int:
    """How many processes `workflow.rss_mb_*_waiting` starts: MGMT_BENCH_WAITING, default one million (0: none)."""
    text = os.environ.get(WAITING_ENV, "")
    try:
        count = int(text.replace("_", "")) if text else WAITING
    except ValueError:
        raise ValueError(f"{WAITING_ENV}={text!r} is not a whole number") from None
    if count < 0:
        raise ValueError(f"{WAITING_ENV}={text!r} must not be negative")
    return count


def count_label(count: int) -> str:
    """`1m`, `100k` or `1500`: how a count of waiting processes appears in a figure's name."""
    if count % 1_000_000 == 0:
        return f"{count // 1_000_000}m"
    if count % 1000 == 0:
        return f"{count // 1000}k"
    return str(count)


async def waiting_rss(count: int) -> float:
    """Peak RSS (MB) of a fresh control plane after `count` processes started to wait for a signal."""
    async with control_plane() as plane, grpc.aio.insecure_channel(plane.address) as channel:
        stub = workflow_pb2_grpc.WorkflowStub(channel)
        await stub.RegisterDefinition(workflow_pb2.RegisterDefinitionRequest(source=WAIT_FOR_SIGNAL))
        before, _ = peak_rss_mb(plane.pid)
        request = workflow_pb2.StartProcessRequest(definition=WAIT_DEFINITION)
        remaining: Iterator[int] = iter(range(count))
        report_every = max(count // 10, 1)
        last = ""
        started = time.perf_counter()

        async def starter() -> None:
            nonlocal last
            for index in remaining:
                last = (await stub.StartProcess(request)).process.id
                if (index + 1) % report_every == 0 and index + 1 < count:
                    took = time.perf_counter() - started
                    logger.info(
                        "waiting: %d started in %.0f s (%.0f/s); control plane RSS %.0f MB",
                        index + 1,
                        took,
                        (index + 1) / took,
                        peak_rss_mb(plane.pid)[1],
                    )

        async with asyncio.TaskGroup() as tasks:
            for _ in range(min(START_IN_FLIGHT, count)):
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


def log_open_phase(label: str, phase: OpenPhase) -> None:
    """One line of what the open-loop phase measured."""
    arrival = [i.arrival_ms for i in phase.intervals]
    logger.info(
        "%s: %.1f processes/s (%.0f steps/s) Poisson, %d started; process start-to-end p50 %.2f, p99 %.2f ms; "
        "step-to-step %d samples: p50 %.2f, p99 %.2f, max %.2f ms",
        label,
        phase.processes_per_s,
        phase.processes_per_s * STEPS,
        phase.started,
        percentile(phase.process_ms, 50),
        percentile(phase.process_ms, 99),
        len(arrival),
        percentile(arrival, 50),
        percentile(arrival, 99),
        max(arrival),
    )
    if phase.plane_cpu_us_per_step is not None and phase.plane_cores_busy is not None:
        logger.info(
            "%s: control plane %.0f us of CPU a step, %.2f cores busy over %.1f s",
            label,
            phase.plane_cpu_us_per_step,
            phase.plane_cores_busy,
            phase.elapsed_s,
        )


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
    """Closed loops at 1 and 100 in flight and the half-load open loop on one plane; metrics off; waiting."""
    echo = context.figure(UNARY_ECHO)
    load = context.load
    waiting = waiting_count()  # a bad value fails now, not after the loops
    async with loaded_plane() as loaded:
        # 100 in flight first, on a fresh plane as the metrics-off and traced loops below are: a plane
        # that has already run other loops holds more (history, the Bus's in-memory tail) and would
        # charge its age to metrics.
        many = await repeated_loop(loaded, load, MANY, f"{MANY} in flight")
        one = await repeated_loop(loaded, load, 1, "1 in flight")
        if not many.steps_per_s:
            raise RuntimeError(f"no process completed in the {MANY}-in-flight window: nothing to halve")
        half_rate = many.steps_per_s / STEPS / 2
        label = "half load"
        logger.info(
            "%s: %.1f processes/s Poisson (half of %.0f steps/s), %g s after %g s warm-up",
            label,
            half_rate,
            many.steps_per_s,
            load.duration_s,
            load.warmup_s,
        )
        half = await open_loop(loaded, half_rate, load)
        log_open_phase(label, half)
    async with loaded_plane(metrics=False) as loaded:
        many_off = await repeated_loop(loaded, load, MANY, f"{MANY} in flight, metrics off")
    async with otlp_sink() as sink, loaded_plane(env=sink.environment()) as loaded:
        many_traced = await repeated_loop(loaded, load, MANY, f"{MANY} in flight, traced")
    logger.info("traced: the OTLP receiver got %d spans", sink.spans)
    async with loaded_plane(floor=FLOOR_HOLD_TURNS) as loaded:
        floor_many = await repeated_loop(loaded, load, MANY, f"{MANY} in flight, protocol floor")
    async with loaded_plane(floor=0) as loaded:
        floor_one = await repeated_loop(loaded, load, 1, "1 in flight, protocol floor")
    engine = await engine_rates(load)
    step_ms = [i.arrival_ms for i in many.intervals]
    rss: float | None = None
    if waiting:
        logger.info(
            "waiting: %d processes of %s, %d StartProcess in flight (%s to change)",
            waiting,
            WAIT_DEFINITION,
            START_IN_FLIGHT,
            WAITING_ENV,
        )
        rss = await waiting_rss(waiting)
    else:
        logger.warning("waiting: not measured (%s=0)", WAITING_ENV)
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
        Figure(f"workflow.steps_per_s_{MANY}_traced", many_traced.steps_per_s, "steps/s"),
        Figure(
            f"workflow.steps_per_s_{MANY}_traced_vs_off",
            many_traced.steps_per_s / many_off.steps_per_s,
            "ratio",
            TRACING_COST_TARGET,
        ),
        Figure(f"workflow.step_p50_ms_{MANY}", percentile(step_ms, 50), "ms"),
        Figure(f"workflow.step_p99_ms_{MANY}", percentile(step_ms, 99), "ms", STEP_P99_TARGET_MS),
        Figure("workflow.map_items_per_s", mapped, "items/s"),
        Figure(f"workflow.map_items_per_s_vs_steps_{MANY}", mapped / many.steps_per_s, "ratio", MAP_TARGET),
    ]
    figures += [
        Figure("workflow.floor_steps_per_s_1", floor_one.steps_per_s, "steps/s"),
        Figure(f"workflow.floor_steps_per_s_{MANY}", floor_many.steps_per_s, "steps/s"),
        Figure("workflow.steps_per_s_1_vs_floor", one.steps_per_s / floor_one.steps_per_s, "ratio"),
        Figure(f"workflow.steps_per_s_{MANY}_vs_floor", many.steps_per_s / floor_many.steps_per_s, "ratio"),
    ]
    for count, rate in engine.items():
        figures.append(Figure(f"workflow.engine_steps_per_s_{count}", rate.per_s * STEPS, "steps/s"))
        engine_us = rate.cpu_us.get("engine")
        if engine_us is not None:
            figures.append(Figure(f"workflow.engine_cpu_us_per_step_{count}", engine_us / STEPS, "us"))
    echo_cpu = context.measured.get(ECHO_CPU)
    for name, phase, target in (("cp", many, CPU_TARGET), ("floor", floor_many, None)):
        plane_cpu_us = phase.processes.cpu_us.get("control plane")
        if plane_cpu_us is None:
            continue
        per_step = plane_cpu_us / STEPS
        figures.append(Figure(f"workflow.{name}_cpu_us_per_step", per_step, "us"))
        if echo_cpu is not None:
            figures.append(
                Figure(
                    f"workflow.{name}_cpu_per_step_vs_echo_call", per_step / echo_cpu.value, "ratio", target
                )
            )
    half_ms = [i.arrival_ms for i in half.intervals]
    figures += [
        Figure("workflow.step_p50_ms_half_load", percentile(half_ms, 50), "ms"),
        Figure("workflow.step_p99_ms_half_load", percentile(half_ms, 99), "ms", STEP_P99_TARGET_MS),
    ]
    if half.plane_cpu_us_per_step is not None and half.plane_cores_busy is not None:
        figures += [
            Figure("workflow.cp_cpu_us_per_step_half_load", half.plane_cpu_us_per_step, "us"),
            Figure("workflow.cp_cores_busy_half_load", half.plane_cores_busy, "cores"),
        ]
    if rss is not None:
        target = RSS_TARGET_MB if waiting == WAITING else None
        figures.append(Figure(f"workflow.rss_mb_{count_label(waiting)}_waiting", rss, "MB", target))
    setup = (
        f"control plane child (SQLite, synchronous=FULL, fresh dir); one SDK worker (reports batched on a stream, "
        f"max in flight {WORKER_MAX_IN_FLIGHT}) in a child process; {STEPS}-step no-op definition (each task "
        f"returns its input plus a field; the output of every process checked), closed loop at 1 and {MANY} "
        f"processes in flight (100 first), median of {load.repeats}, ends seen on one Bus subscription; then processes "
        f"started at Poisson arrivals of half the {MANY}-in-flight rate (open loop); "
        f"{MANY} in flight again on a fresh plane with --metrics off, and on one tracing every span "
        f"to a local OTLP receiver; "
        f"{load.duration_s:g} s after {load.warmup_s:g} s warm-up; step-to-step = gap between arrivals of "
        f"consecutive step_completed events; "
        + (
            f"RSS = VmHWM after {waiting:,} processes waiting on a signal "
            f"(fresh plane, {START_IN_FLIGHT} starts in flight)"
            if waiting
            else f"waiting processes not measured ({WAITING_ENV}=0)"
        )
        + f"; map = one process mapping {MAP_ITEMS:,} no-op items, {MAP_CONCURRENCY} at once (fresh plane)"
    )
    return GroupResult(GROUP, setup, figures)
