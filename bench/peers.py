"""Peers group: the workflow group's 5-step no-op workflow on Restate and on DBOS Transact, in the same run.

Machines here differ by up to 2x from one day to the next, and by up to 30% from one minute to the
next, so the engine is compared with Restate in pairs: each of Restate's closed loops runs right after
the same loop on a control plane set up as the workflow group's (SDK worker child, ends seen on the
Bus), both kept running through the group, and `workflow.vs_restate_*` is the median of the pairs'
ratios. (Dividing the workflow group's figures by Restate's measured 12 minutes later, after the
million waiting processes, gave 1.28 and 1.09 in one run and 0.73 and 0.85 in the next on the same
code.) The peers are installed by `bench.peers_install` into the bench's cache folder.

The workflow, on each: five durable steps in sequence, each returning its input plus a field of
its own; the caller checks that the output carries the input and all five fields (as the workflow
group checks its processes'). Closed loops of 1 and 100 workflows in flight, 5 s after 1 s of
warm-up, the median of 3 (`--warmup`, `--duration`, `--repeats`), as the workflow group's.

- Restate: `restate-server` (npm `@restatedev/restate-server`, single node, default configuration,
  fresh base directory, TCP listeners on free ports of 127.0.0.1: never the defaults 8080/9070/5122)
  and the service `Bench5` on the Python SDK (`restate-sdk`) served by hypercorn in a child process
  of its own (`bench.peers_restate_app`), registered through the admin API. This process invokes
  `POST /Bench5/run` on the ingress and waits for the answer, over keep-alive HTTP/1.1 connections
  (one per workflow in flight). Each step is a `ctx.run_typed`, journaled by the server.
  `peers.restate_steps_per_s_1`, `peers.restate_steps_per_s_100`: 5 x workflows answered / s.
- DBOS: `dbos` in a child process (`bench.peers_dbos`) that is engine and caller at once (DBOS is
  a library), on a database of its own (`hms_bench_<random>`, created on MGMT_BENCH_POSTGRES_URL,
  default postgresql://postgres@127.0.0.1:5432/postgres, and dropped afterwards); each step an
  async `@DBOS.step()` of an async `@DBOS.workflow()`, called directly.
  `peers.dbos_steps_per_s_1`, `peers.dbos_steps_per_s_100`. Without a PostgreSQL server they are
  not measured, and the setup line says why.
- `peers.restate_cpu_us_per_step_100` (restate-server and the SDK service together) and
  `peers.dbos_cpu_us_per_step_100` (the DBOS process; PostgreSQL's backends not counted): CPU
  (user + system, /proc) per step in the median 100-in-flight run, to set beside
  `workflow.cp_cpu_us_per_step` (the control plane alone; its worker child not counted).
- `workflow.vs_restate_1`, `workflow.vs_restate_100` (targets >= 1.5 and >= 2.0, issue 18): the median
  over the pairs of the control plane's steps/s over Restate's in the same pair;
  `workflow.steps_per_s_1_beside_restate` and `_100_beside_restate`: the control plane's median in the
  pairs. `workflow.vs_dbos_1`, `workflow.vs_dbos_100`: those over DBOS's, measured right after, without
  targets.
- `workflow.floor_vs_restate_1`, `workflow.floor_vs_restate_100`: the protocol floor (bench.floor_plane, the
  same traffic with no engine and no store) against Restate: `workflow.vs_restate_*` divided by the
  workflow group's `workflow.steps_per_s_*_vs_floor` (the control plane against the floor a minute apart),
  so each link of the chain is a ratio of figures taken side by side. How far ahead of Restate these
  clients could be with a control plane that cost nothing but its gRPC traffic: the ceiling over
  `workflow.vs_restate_*`.
Durability as shipped: Restate's single node writes its log and state to RocksDB on its own
defaults; DBOS commits each step to PostgreSQL (synchronous_commit as the server is configured, on
by default); the control plane acknowledges a transition once fsynced (SQLite synchronous=FULL).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import re
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import http1, peers_install, workflow
from bench.figures import Figure, GroupResult, Load, RunContext, Target
from bench.harness import (
    Rate,
    child,
    closed_loop_rate,
    free_port,
    loop_arguments,
    loops_timeout_s,
    median_rate,
    median_rates,
)
from bench.peers_install import Peers
from bench.scale_postgres import DEFAULT_URL, URL_ENV, PostgresUnavailableError, scratch_database, server_of

logger = logging.getLogger(__name__)

GROUP = "peers"
STEPS = 5
IN_FLIGHT = (1, 100)
START_INPUT = {"bench": "bench5"}
EXPECTED_OUTPUT = {**START_INPUT, **{f"s{n}": True for n in range(1, STEPS + 1)}}
VS_RESTATE_TARGETS = {1: Target(1.5, at_least=True), 100: Target(2.0, at_least=True)}
RESTATE_PATH = "/Bench5/run"
_RESTATE_READY = re.compile(r"Admin API starting on")
_SERVICE_READY = re.compile(r"restate service listening on (\S+)")
_DBOS_READY = re.compile(r"dbos ready")
# The server answers invocations only once its partitions have leaders, a few seconds after start.
_FIRST_CALL_TIMEOUT_S = 60.0


def check_output(output: Any) -> None:
    """Raise unless a workflow's output is the input plus every step's field."""
    if output != EXPECTED_OUTPUT:
        raise RuntimeError(f"workflow output {output!r}, not {EXPECTED_OUTPUT!r}")


async def register_deployment(admin_port: int, service_port: int) -> None:
    """Register the SDK service's endpoint with the Restate server (discovery runs on this call)."""
    connection = http1.Connection("127.0.0.1", admin_port)
    try:
        await connection.post_json("/deployments", {"uri": f"http://127.0.0.1:{service_port}"})
    finally:
        await connection.close()


async def first_call(pool: http1.Pool) -> None:
    """One invocation that succeeds, retried while the server's partitions are still starting."""
    deadline = time.monotonic() + _FIRST_CALL_TIMEOUT_S
    while True:
        try:
            async with pool.connection() as connection:
                check_output(await connection.post_json(RESTATE_PATH, START_INPUT))
            return
        except (http1.HttpError, ConnectionError) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Restate did not run the workflow within {_FIRST_CALL_TIMEOUT_S:.0f} s"
                ) from exc
            await asyncio.sleep(0.2)


@dataclass(frozen=True, slots=True)
class Restate:
    """A running Restate server with the Bench5 service: one workflow per call, and the processes to time."""

    one_workflow: Callable[[], Awaitable[None]]
    pids: dict[str, int]


@contextlib.asynccontextmanager
async def restate(peers: Peers) -> AsyncIterator[Restate]:
    """A fresh Restate server with the Bench5 service registered and answering."""
    ingress, admin, fabric, service = free_port(), free_port(), free_port(), free_port()
    env = {
        "RESTATE_LISTEN_MODE": "tcp",
        "RESTATE_INGRESS__BIND_ADDRESS": f"127.0.0.1:{ingress}",
        "RESTATE_ADMIN__BIND_ADDRESS": f"127.0.0.1:{admin}",
        "RESTATE_BIND_ADDRESS": f"127.0.0.1:{fabric}",
        "RESTATE_ADVERTISED_ADDRESS": f"http://127.0.0.1:{fabric}/",
        "RESTATE_LOG_DISABLE_ANSI_CODES": "true",
    }
    with tempfile.TemporaryDirectory(prefix="hms-bench-restate-") as base:
        server_argv = [str(peers.restate_server), "--no-logo", "--base-dir", base, "--node-name", "bench"]
        service_argv = [str(peers.python), "-m", "bench.peers_restate_app", "--port", str(service)]
        # The service first, so that on exit the server stops first and closes its connections to it.
        async with (
            child("restate service", service_argv, _SERVICE_READY) as (app, _),
            child("restate-server", server_argv, _RESTATE_READY, merged=True, env=env, cwd=Path(base)) as (
                server,
                _,
            ),
        ):
            await register_deployment(admin, service)
            pool = http1.Pool("127.0.0.1", ingress)
            try:
                await first_call(pool)

                async def one_workflow() -> None:
                    async with pool.connection() as connection:
                        check_output(await connection.post_json(RESTATE_PATH, START_INPUT))

                yield Restate(one_workflow, {"restate-server": server.pid, "restate service": app.pid})
            finally:
                await pool.close()


@dataclass(frozen=True, slots=True)
class Pair:
    """One closed loop of the control plane and one of Restate right after it, at the same load."""

    ours: Rate
    restate: Rate

    @property
    def ratio(self) -> float:
        """The control plane's rate over Restate's."""
        return self.ours.per_s / self.restate.per_s if self.restate.per_s else 0.0


async def paired_rates(peers: Peers, load: Load) -> dict[int, list[Pair]]:
    """`load.repeats` pairs at each of `IN_FLIGHT`: a closed loop on a control plane (the workflow group's
    setup: SDK worker child, ends seen on the Bus), then the same loop on Restate, both kept running."""
    pairs: dict[int, list[Pair]] = {count: [] for count in IN_FLIGHT}
    async with restate(peers) as peer, workflow.loaded_plane() as ours:
        for repeat in range(1, load.repeats + 1):
            for count in IN_FLIGHT:
                shape = dataclasses.replace(load, in_flight=count)
                phase = await workflow.closed_loop(ours.stub, ours.tracker, shape, ours.pids)
                theirs = await closed_loop_rate(peer.one_workflow, shape, peer.pids)
                pair = Pair(phase.processes, theirs)
                pairs[count].append(pair)
                logger.info(
                    "%d in flight (%d of %d): control plane %.0f steps/s, then restate %.0f steps/s (%.3f); %s",
                    count,
                    repeat,
                    load.repeats,
                    pair.ours.per_s * STEPS,
                    pair.restate.per_s * STEPS,
                    pair.ratio,
                    theirs.cpu_note(),
                )
    return pairs


async def dbos_rates(peers: Peers, load: Load, admin_url: str) -> dict[int, Rate]:
    """The median rate (workflows/s) at each of `IN_FLIGHT` of DBOS on a fresh database."""
    async with scratch_database(admin_url) as database:
        argv = [str(peers.python), "-m", "bench.peers_dbos", database.url, *loop_arguments(load, IN_FLIGHT)]
        async with child("dbos", argv, _DBOS_READY, stdout=True) as (process, _):
            output = await process.output(loops_timeout_s(load, IN_FLIGHT, 120))
            log = process.tail()
    for line in log.splitlines():
        if line.startswith("bench.peers_dbos:"):
            logger.info("dbos: %s", line.partition(":")[2].strip())
    return median_rates(output, IN_FLIGHT)


def cpu_per_step(peer: str, rate: Rate, processes: tuple[str, ...]) -> list[Figure]:
    """`peers.<peer>_cpu_us_per_step_100`: the CPU of the peer's `processes` per step (none without /proc)."""
    spent = [rate.cpu_us.get(name) for name in processes]
    if any(us is None for us in spent):
        return []
    total = sum(us for us in spent if us is not None)
    return [Figure(f"peers.{peer}_cpu_us_per_step_{IN_FLIGHT[-1]}", total / STEPS, "us")]


async def run(context: RunContext) -> GroupResult:
    """Install the peers if need be, measure Restate then DBOS, and compare with this run's workflow group."""
    load = context.load
    peers = await peers_install.ensure()
    figures: list[Figure] = []

    pairs = await paired_rates(peers, load)
    ours: dict[int, float] = {}
    restate_rates = {count: median_rate([pair.restate for pair in runs]) for count, runs in pairs.items()}
    for count, rate in restate_rates.items():
        steps = rate.per_s * STEPS
        if not steps:
            raise RuntimeError(f"Restate completed no workflow in the window at {count} in flight")
        logger.info("restate %d in flight: median %.0f steps/s; %s", count, steps, rate.cpu_note())
        figures.append(Figure(f"peers.restate_steps_per_s_{count}", steps, "steps/s"))
        ours[count] = median_rate([pair.ours for pair in pairs[count]]).per_s * STEPS
        figures.append(Figure(f"workflow.steps_per_s_{count}_beside_restate", ours[count], "steps/s"))
    figures += cpu_per_step("restate", restate_rates[IN_FLIGHT[-1]], ("restate-server", "restate service"))
    admin_url = os.environ.get(URL_ENV, DEFAULT_URL)
    dbos_note = f"DBOS on PostgreSQL {server_of(admin_url)} (a database of its own)"
    dbos: dict[int, Rate] = {}
    try:
        dbos = await dbos_rates(peers, load, admin_url)
    except PostgresUnavailableError as exc:
        logger.warning("DBOS not measured: %s", exc)
        dbos_note = f"DBOS not measured: {exc}"
    for count, rate in dbos.items():
        steps = rate.per_s * STEPS
        logger.info("dbos %d in flight: median %.0f steps/s; %s", count, steps, rate.cpu_note())
        figures.append(Figure(f"peers.dbos_steps_per_s_{count}", steps, "steps/s"))
    if dbos:
        figures += cpu_per_step("dbos", dbos[IN_FLIGHT[-1]], ("dbos",))
    for count, runs in pairs.items():
        vs_restate = statistics.median(pair.ratio for pair in runs)
        figures.append(Figure(f"workflow.vs_restate_{count}", vs_restate, "ratio", VS_RESTATE_TARGETS[count]))
        vs_floor = context.measured.get(f"workflow.steps_per_s_{count}_vs_floor")
        if vs_floor is not None and vs_floor.value:
            figures.append(Figure(f"workflow.floor_vs_restate_{count}", vs_restate / vs_floor.value, "ratio"))
    for count, rate in dbos.items():
        if not rate.per_s:
            raise RuntimeError(f"DBOS completed no workflow in the window at {count} in flight")
        figures.append(Figure(f"workflow.vs_dbos_{count}", ours[count] / (rate.per_s * STEPS), "ratio"))
    setup = (
        f"the workflow group's 5-step no-op workflow (output checked) on Restate {peers_install.NPM} "
        f"(single node, fresh dir; Python SDK under hypercorn in a child; invoked over HTTP/1.1 on the "
        f"ingress) and {dbos_note}; closed loops at {' and '.join(map(str, IN_FLIGHT))} in flight, "
        f"{load.repeats} each, {load.duration_s:g} s after {load.warmup_s:g} s warm-up; each of Restate's "
        f"right after the same loop on a control plane (vs_restate_* = median of the pairs' ratios); "
        f"DBOS's after those (vs_dbos_* = the pairs' control-plane median / DBOS's median)"
    )
    return GroupResult(GROUP, setup, figures)
