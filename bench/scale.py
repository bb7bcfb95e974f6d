"""Scale group: steps/s and control-plane CPU per step on SQLite, and on PostgreSQL with 1 and 2 replicas.

This machine has 2 cores, so two replicas (plus PostgreSQL, the workers and this driver) cannot
run faster than one: what shows whether the design scales out is the CPU a durable step costs the
control plane, which must not grow much when a second replica shares the database.

Each configuration runs the workflow group's load (its definition `bench5`, five sequential
no-op task steps; its worker child `bench.workflow_clients`; its `Tracker`) with 100 processes in
flight, on control planes started afresh as child processes
(`python -m control_plane serve --listen 127.0.0.1:0 --store URL`):
- `sqlite1`: one control plane on a fresh SQLite file in a temporary directory (WAL, synchronous=FULL).
- `pg1`: one control plane on a fresh PostgreSQL database (`hms_bench_<random>`, created on the
  server at MGMT_BENCH_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/postgres, and
  dropped afterwards).
- `pg2`: two control planes on one fresh PostgreSQL database. The second starts once the
  definition is registered on the first (so it loads it from the database at start-up).
Each replica gets its own worker child (one SDK `Worker` of `Bench/noop`, max in flight 200), and
this process round-robins its StartProcess calls over the replicas. Where PostgreSQL does not
answer, pg1 and pg2 are skipped and the setup line says why; a pg configuration that fails is
logged with its traceback and reported as failed on the setup line, and the other figures stand.

What is counted, for each configuration, over one window after a warm-up (3 x `--warmup`, then
3 x `--duration`: 3 s and 15 s by default):
- steps/s: 5 x the processes whose `process_completed` event reached this process in the window.
  The engine publishes that event on the Bus in the transaction that completes the process, so a
  counted step is a committed one. This process subscribes to `workflow.bench5.*.process_completed`
  (at most once, NEW_ONLY) on every replica: ends are all it needs, and a narrower pattern keeps
  the deliveries the driver costs the control plane to one per process (the workflow group
  subscribes to all 12 events of a process, so sqlite1 is close to, not the same as, its figure).
  Whether a replica's Bus also carries the other replica's events does not matter: the `Tracker`
  wakes the starter on the first copy; later ones are set aside unread (deliveries per subscription
  are logged: with a shared Bus each subscription sees every process end).
- CPU s per 1,000 steps: user + system CPU (/proc/<pid>/stat) of the control-plane processes,
  summed over the replicas, spent in the window, divided by the steps counted in the window, x 1,000.
  It includes everything those processes did meanwhile (their Bus deliveries to this driver,
  lease renewals of the workers, background loops); it excludes the workers, this driver and the
  database server. When the PostgreSQL server runs on this machine, the CPU of the backends of
  the bench database (pids from pg_stat_activity when the window opens) is reported as
  `scale.pg*_db_cpu_s_per_1000`, without a target.
- Disturbance: the machine's busy CPU over the same window (/proc/stat) minus that of the processes
  measured (replicas, workers, backends, this driver) is logged per configuration; above 0.15 of a
  core (other people's tests, say) the setup line calls that configuration disturbed.
- `scale.pg1_vs_sqlite1_steps`: pg1 steps/s / sqlite1 steps/s. Target >= 0.75 (issue 18).
- `scale.pg2_vs_pg1_cpu_per_step`: pg2 CPU per step / pg1 CPU per step. Target <= 1.25.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import re
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from bench.bus_clients import open_subscription
from bench.figures import Figure, GroupResult, Load, RunContext, Target
from bench.harness import PLANE_READY, ChildProcess, Rate, child, closed_loop_rate, plane_argv, python_module
from bench.scale_postgres import DEFAULT_URL, URL_ENV, PostgresUnavailableError, scratch_database, server_of
from bench.workflow import (
    DEFINITION,
    FIVE_STEPS,
    MANY,
    SERVICE,
    STEPS,
    SUBSCRIBE_MAX_BATCH,
    SUBSCRIBE_MAX_IN_FLIGHT,
    TASK_TYPE,
    WORKER_MAX_IN_FLIGHT,
    Tracker,
    start_request,
)
from hms.mgmt.v1 import bus_pb2, workflow_pb2, workflow_pb2_grpc

logger = logging.getLogger(__name__)

GROUP = "scale"
# The window is longer than other groups' (1 s + 5 s by default): one figure per configuration,
# compared across configurations, so noise matters more than elsewhere; 3 configurations stay < 2 min.
WARMUP_FACTOR = 3.0
DURATION_FACTOR = 3.0
PG1_VS_SQLITE1_STEPS_TARGET = Target(0.75, at_least=True)  # issue 18
PG2_VS_PG1_CPU_TARGET = Target(1.25, at_least=False)
_WORKERS_READY = re.compile(r"workers ready")
_WORKERS_RAN = re.compile(r"workers stopped after (\d+) tasks")
_CPU_UNIT = "CPU s"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Busy CPU outside the measured processes above which a window is reported as disturbed (in cores).
_DISTURBED_CORES = 0.15

BackendPids = Callable[[], Awaitable[list[int]]]


@dataclass(frozen=True, slots=True)
class Config:
    """One measured setup: the store behind the control plane, and how many replicas share it."""

    name: str
    replicas: int


SQLITE1 = Config("sqlite1", replicas=1)
PG1 = Config("pg1", replicas=1)
PG2 = Config("pg2", replicas=2)


@dataclass(frozen=True, slots=True)
class Measured:
    """What one configuration's window gave: processes/s with each named process's CPU per process."""

    config: Config
    processes: Rate
    planes: tuple[str, ...]
    backends: tuple[str, ...]
    # CPU seconds the whole machine was busy in the window (None without /proc/stat).
    machine_busy_s: float | None

    @property
    def steps_per_s(self) -> float:
        """Committed steps per second."""
        return self.processes.per_s * STEPS

    def cpu_s_per_1000(self, names: tuple[str, ...]) -> float:
        """CPU seconds the processes `names` spent together per 1,000 steps."""
        # cpu_us is per process (STEPS steps): us / STEPS per step, x 1,000 steps, / 1e6 for seconds.
        return sum(self.processes.cpu_us[name] for name in names) / STEPS / 1000

    @property
    def plane_cpu_s_per_1000(self) -> float:
        """Control-plane CPU seconds per 1,000 steps, all replicas together."""
        return self.cpu_s_per_1000(self.planes)

    @property
    def window_s(self) -> float:
        """How long the window lasted."""
        return self.processes.count / self.processes.per_s

    @property
    def other_cores(self) -> float | None:
        """Cores busy in the window outside the processes measured (None without /proc/stat).

        They include PostgreSQL's background processes (WAL writer, checkpointer) and the kernel's work
        on nobody's behalf, so a little is normal.
        """
        if self.machine_busy_s is None:
            return None
        ours = sum(self.processes.cpu_us.values()) * self.processes.count / 1e6
        return (self.machine_busy_s - ours) / self.window_s

    @property
    def disturbed(self) -> bool:
        """Whether something else kept the machine busy enough in the window to distort the figures."""
        others = self.other_cores
        return others is not None and others > _DISTURBED_CORES

    @property
    def db_cpu_s_per_1000(self) -> float | None:
        """The database backends' CPU seconds per 1,000 steps; None when they were not measurable."""
        measured = tuple(name for name in self.backends if name in self.processes.cpu_us)
        return self.cpu_s_per_1000(measured) if measured else None


@dataclass(frozen=True, slots=True)
class Replica:
    """A running control-plane child: its name in the CPU table, its pid, its address, a channel to it."""

    name: str
    pid: int
    address: str
    channel: grpc.aio.Channel


async def start_replicas(
    config: Config, store_url: str, scratch: Path, stack: contextlib.AsyncExitStack
) -> list[Replica]:
    """Start `config.replicas` control planes on `store_url` (stopped by `stack`), `bench5` registered."""
    replicas: list[Replica] = []
    for number in range(1, config.replicas + 1):
        name = f"control plane {number}"
        argv = plane_argv(scratch / f"replica{number}", "--store", store_url)
        process, ready = await stack.enter_async_context(child(name, argv, PLANE_READY))
        channel = await stack.enter_async_context(grpc.aio.insecure_channel(ready.group(1)))
        if number == 1:
            # Registered before the next replica starts, which then loads it from the database.
            stub = workflow_pb2_grpc.WorkflowStub(channel)
            await stub.RegisterDefinition(workflow_pb2.RegisterDefinitionRequest(source=FIVE_STEPS))
        replicas.append(Replica(name, process.pid, ready.group(1), channel))
    return replicas


async def start_workers(replicas: list[Replica], stack: contextlib.AsyncExitStack) -> list[ChildProcess]:
    """One worker child (the workflow group's) per replica, connected to that replica only."""
    workers: list[ChildProcess] = []
    for number, replica in enumerate(replicas, start=1):
        argv = python_module(
            "bench.workflow_clients",
            replica.address,
            *("--service", SERVICE, "--task-type", TASK_TYPE, "--max-in-flight", str(WORKER_MAX_IN_FLIGHT)),
        )
        process, _ = await stack.enter_async_context(child(f"workers {number}", argv, _WORKERS_READY))
        workers.append(process)
    return workers


async def _counted(
    responses: AsyncIterator[bus_pb2.SubscribeResponse], delivered: list[int], index: int
) -> AsyncIterator[bus_pb2.SubscribeResponse]:
    """`responses`, counting the deliveries of subscription `index` on the way."""
    async for response in responses:
        delivered[index] += len(response.deliveries)
        yield response


def _machine_busy_s() -> float | None:
    """CPU seconds all cores of this machine have been busy since boot (None without Linux /proc/stat)."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal ...: everything but idle and iowait is busy.
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS


async def machine_busy_in_window(load: Load) -> float | None:
    """Machine-wide busy CPU seconds over the window `measured_rate` counts in (started with it)."""
    await asyncio.sleep(load.warmup_s)
    before = _machine_busy_s()
    await asyncio.sleep(load.duration_s)
    after = _machine_busy_s()
    return after - before if before is not None and after is not None else None


def _tasks_ran(workers: ChildProcess) -> str:
    """How many tasks a stopped worker child says it ran ("?" if its last line is not there)."""
    found = _WORKERS_RAN.findall(workers.tail())
    return found[-1] if found else "?"


async def measure(config: Config, store_url: str, load: Load, backend_pids: BackendPids | None) -> Measured:
    """Run `load` on `config.replicas` fresh control planes on `store_url`; the window's rate and CPU."""
    subscription = bus_pb2.SubscribeRequest(
        pattern=f"workflow.{DEFINITION}.*.process_completed",
        start=bus_pb2.START_POSITION_NEW_ONLY,
        ack_mode=bus_pb2.ACK_MODE_NONE,
        max_batch=SUBSCRIBE_MAX_BATCH,
        max_in_flight=SUBSCRIBE_MAX_IN_FLIGHT,
    )
    request = start_request()
    with tempfile.TemporaryDirectory(prefix=f"hms-bench-{config.name}-") as scratch:
        # Closed in reverse: subscriptions, workers (they drain and deregister), then the replicas.
        async with contextlib.AsyncExitStack() as stack:
            replicas = await start_replicas(config, store_url, Path(scratch), stack)
            workers = await start_workers(replicas, stack)
            tracker = Tracker()
            feeds: list[AsyncIterator[bus_pb2.SubscribeResponse]] = []
            for replica in replicas:
                call, feed = await open_subscription(replica.channel, subscription)
                stack.callback(call.cancel)
                feeds.append(feed)
            stubs = [workflow_pb2_grpc.WorkflowStub(replica.channel) for replica in replicas]
            turns = itertools.cycle(range(len(replicas)))
            started = [0] * len(replicas)
            delivered = [0] * len(replicas)

            async def one_process() -> None:
                turn = next(turns)
                started[turn] += 1
                response = await stubs[turn].StartProcess(request)
                await tracker.completion(response.process.id)

            pids = {replica.name: replica.pid for replica in replicas}
            pids |= {worker.name: worker.pid for worker in workers}
            backends = await backend_pids() if backend_pids else []
            pids |= {f"postgres backend {pid}": pid for pid in backends}
            logger.info(
                "%s: %d in flight on %d replica(s), %g s after %g s warm-up; %d database backends",
                config.name,
                load.in_flight,
                len(replicas),
                load.duration_s,
                load.warmup_s,
                len(backends),
            )
            async with asyncio.TaskGroup() as tasks:
                following = [
                    tasks.create_task(tracker.follow(_counted(feed, delivered, index)))
                    for index, feed in enumerate(feeds)
                ]
                # Started together, so the two windows line up to within a scheduling delay.
                busy = tasks.create_task(machine_busy_in_window(load))
                processes = await closed_loop_rate(one_process, load, pids)
                for task in following:
                    task.cancel()
            if backend_pids and (after := await backend_pids()) != backends:
                logger.warning(
                    "%s: database backends changed during the run (%s -> %s); CPU of new ones not counted",
                    config.name,
                    backends,
                    after,
                )
    if not processes.count:
        raise RuntimeError(f"{config.name}: no process completed in the {load.duration_s:g} s window")
    measured = Measured(
        config,
        processes,
        tuple(replica.name for replica in replicas),
        tuple(name for name in pids if name.startswith("postgres backend")),
        busy.result(),
    )
    log_measured(measured, started, delivered, [_tasks_ran(worker) for worker in workers])
    return measured


def cpu_per_step(measured: Measured) -> str:
    """`control plane 1 467 us, workers 1 44 us, ..., postgres backends 117 us, bench 49 us` per step."""
    spent: dict[str, float] = {}
    for name, us in measured.processes.cpu_us.items():
        key = "postgres backends" if name in measured.backends else name
        spent[key] = spent.get(key, 0.0) + us / STEPS
    return ", ".join(f"{name} {us:.0f} us" for name, us in spent.items())


def log_measured(measured: Measured, started: list[int], delivered: list[int], ran: list[str]) -> None:
    """What a configuration measured, with the split over replicas that shows each did its share."""
    db = measured.db_cpu_s_per_1000
    logger.info(
        "%s: %.0f steps/s (%d processes in the window); control plane %.3f CPU s per 1,000 steps%s",
        measured.config.name,
        measured.steps_per_s,
        measured.processes.count,
        measured.plane_cpu_s_per_1000,
        f", database backends {db:.3f}" if db is not None else "",
    )
    logger.info("%s: CPU per step: %s", measured.config.name, cpu_per_step(measured))
    others = measured.other_cores
    if measured.machine_busy_s is not None and others is not None:
        logger.log(
            logging.WARNING if measured.disturbed else logging.INFO,
            "%s: machine %.2f of %d cores busy in the window; %.2f cores outside the processes measured%s",
            measured.config.name,
            measured.machine_busy_s / measured.window_s,
            os.cpu_count() or 0,
            others,
            " (disturbed)" if measured.disturbed else "",
        )
    logger.info(
        "%s: per replica: processes started %s, process_completed deliveries %s, tasks run by its workers %s",
        measured.config.name,
        started,
        delivered,
        ran,
    )


def _reason(exc: BaseException) -> str:
    """The first leaf of an exception (group), as one line."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


async def measure_sqlite(load: Load) -> Measured:
    """`sqlite1`: one control plane on a fresh SQLite file."""
    with tempfile.TemporaryDirectory(prefix="hms-bench-sqlite-") as directory:
        url = f"sqlite:///{(Path(directory) / 'mgmt.db').resolve()}"
        return await measure(SQLITE1, url, load, None)


async def measure_postgres(config: Config, admin_url: str, load: Load) -> Measured:
    """`pg1` / `pg2`: the replicas on a fresh PostgreSQL database, dropped afterwards."""
    async with scratch_database(admin_url) as database:
        return await measure(config, database.url, load, database.backend_pids)


async def run(context: RunContext) -> GroupResult:
    """Measure sqlite1, pg1 and pg2 in turn; a skipped or failed pg configuration leaves its figures out."""
    load = dataclasses.replace(
        context.load,
        in_flight=MANY,
        warmup_s=context.load.warmup_s * WARMUP_FACTOR,
        duration_s=context.load.duration_s * DURATION_FACTOR,
    )
    admin_url = os.environ.get(URL_ENV, DEFAULT_URL)
    results = {SQLITE1.name: await measure_sqlite(load)}
    notes: list[str] = []
    for config in (PG1, PG2):
        try:
            results[config.name] = await measure_postgres(config, admin_url, load)
        except PostgresUnavailableError as exc:
            # Nothing to measure on PostgreSQL here: say so and keep the SQLite figures.
            logger.warning("pg1 and pg2 skipped: %s", exc)
            notes.append(f"pg1 and pg2 skipped ({exc})")
            break
        except Exception as exc:
            # pg2 depends on replica work that may be unfinished: keep the other figures, say why not these.
            logger.exception("%s failed", config.name)
            notes.append(f"{config.name} FAILED ({_reason(exc)})")
    figures: list[Figure] = []
    for measured in results.values():
        name = measured.config.name
        if measured.disturbed:
            notes.append(
                f"{name} disturbed ({measured.other_cores:.2f} cores busy outside the measured processes)"
            )
        figures.append(Figure(f"{GROUP}.{name}_steps_per_s", measured.steps_per_s, "steps/s"))
        figures.append(Figure(f"{GROUP}.{name}_cpu_s_per_1000", measured.plane_cpu_s_per_1000, _CPU_UNIT))
        db = measured.db_cpu_s_per_1000
        if db is not None:
            figures.append(Figure(f"{GROUP}.{name}_db_cpu_s_per_1000", db, _CPU_UNIT))
    sqlite1, pg1, pg2 = results[SQLITE1.name], results.get(PG1.name), results.get(PG2.name)
    if pg1 is not None:
        figures.append(
            Figure(
                f"{GROUP}.pg1_vs_sqlite1_steps",
                pg1.steps_per_s / sqlite1.steps_per_s,
                "ratio",
                PG1_VS_SQLITE1_STEPS_TARGET,
            )
        )
    if pg1 is not None and pg2 is not None:
        figures.append(
            Figure(
                f"{GROUP}.pg2_vs_pg1_cpu_per_step",
                pg2.plane_cpu_s_per_1000 / pg1.plane_cpu_s_per_1000,
                "ratio",
                PG2_VS_PG1_CPU_TARGET,
            )
        )
    setup = (
        f"{STEPS}-step no-op definition of the workflow group at {MANY} processes in flight on control-plane "
        f"children: sqlite1 = SQLite (fresh file), pg1 / pg2 = 1 / 2 replicas on a fresh PostgreSQL database "
        f"at {server_of(admin_url)}; one worker child per replica, starts round-robin over the replicas; "
        f"steps = 5 x process_completed events (one Bus subscription per replica); CPU = utime + stime of the "
        f"control-plane processes (db: of the database's backends); {load.duration_s:g} s after "
        f"{load.warmup_s:g} s warm-up per configuration"
    )
    if notes:
        setup += "; " + "; ".join(notes)
    return GroupResult(GROUP, setup, figures)
