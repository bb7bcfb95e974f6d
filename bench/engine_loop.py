"""The workflow group's engine run: `bench5` processes on the engine and its store alone, in one process, no gRPC.

The control plane's CPU per step in the workflow group is its gRPC traffic plus the engine and the
store; the protocol floor (`bench.floor_plane`) measures the first, this child the second:
`python -m bench.engine_loop --in-flight 100 --in-flight 1 --warmup 1 --duration 5 --repeats 3` starts
a control plane in this process (`control_plane.server.running`: SQLite, synchronous=FULL, a fresh
temporary directory, its gRPC server idle; the GIL switch interval and the collector set as `mgmt serve`
sets them), registers `bench5` and a worker instance, logs `engine
ready` to stderr, runs `--repeats` closed loops at each `--in-flight` (`bench.harness.closed_loop_rate`,
as every other group), and writes the rates as JSON to stdout. Processes are started with
`Workflows.start` and their tasks taken from a worker session (`Workflows.worker`) and completed with
`Workflows.complete`, as the servicers call them, each returning its input plus a field named after
its step; the last step's input must carry every earlier one's field. What this process spends is
the engine's, the store's and this thin driver's (the rate's CPU is this whole process, store writer
thread included).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.figures import Load
from bench.harness import add_loop_options, loop_load, rates_by_count
from bench.workflow import DEFINITION, FIVE_STEPS, SERVICE, START_INPUT, STEPS, TASK_TYPE
from control_plane.cli import SWITCH_INTERVAL_S, settle_collector
from control_plane.core.registry.registry import Registration
from control_plane.core.workflow.dispatch import WorkerSession
from control_plane.core.workflow.workflows import Workflows
from control_plane.models.workflow import TaskAttempt
from control_plane.server import running
from control_plane.settings import Settings

logger = logging.getLogger("bench.engine_loop")

INSTANCE = "engine-loop"
LAST_STEP = f"s{STEPS}"
LAST_INPUT = {**START_INPUT, **{f"s{n}": True for n in range(1, STEPS)}}


class Driver:
    """Starts processes, runs their tasks as a worker would, and tells each caller when its process ended."""

    def __init__(self, workflows: Workflows, session: WorkerSession) -> None:
        self._workflows = workflows
        self._session = session
        self._ends: dict[str, asyncio.Future[None]] = {}
        self._running: set[asyncio.Future[None]] = set()  # completions under way (the loop keeps weak refs)

    async def serve(self) -> None:
        """Take the session's tasks until cancelled; complete each in a task of its own."""
        while True:
            tasks, _ = await self._session.next_frame()
            for task in tasks:
                job = asyncio.ensure_future(self._complete(task))
                self._running.add(job)
                job.add_done_callback(self._running.discard)

    async def _complete(self, task: TaskAttempt) -> None:
        if task.step_id == LAST_STEP and task.input != LAST_INPUT:
            self._end(task.process_id, RuntimeError(f"{task.step_id} got {task.input!r}, not {LAST_INPUT!r}"))
            return
        token = self._workflows.wire_token(task.token, SERVICE)
        try:
            await self._workflows.complete(token, {**task.input, task.step_id: True}, [])
        except Exception as exc:
            self._end(task.process_id, exc)
            return
        if task.step_id == LAST_STEP:
            self._end(task.process_id, None)

    def _end(self, process_id: str, failure: Exception | None) -> None:
        end = self._ends.pop(process_id, None)
        if end is None:
            return
        if failure is None:
            end.set_result(None)
        else:
            end.set_exception(failure)

    async def one_process(self) -> None:
        """Start a process and return once its last step's completion has committed."""
        record, _ = await self._workflows.start(DEFINITION, 0, dict(START_INPUT), "")
        end = self._ends[record.id] = asyncio.get_running_loop().create_future()
        await end


async def measure(
    load: Load, in_flight: list[int], when_up: Callable[[], None] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """`load.repeats` closed loops at each count of `in_flight` on a fresh engine: rates by count.
    `when_up` is called once the control plane is up (the child settles its collector there)."""
    rates: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="hms-bench-engine-") as data_dir:
        settings = Settings(listen="127.0.0.1:0", data_dir=Path(data_dir), shutdown_grace_s=0.5)
        async with running(settings) as app:
            if when_up is not None:
                when_up()
            workflows = app.workflows
            await workflows.register_definition(FIVE_STEPS, validate_only=False)
            await app.registry.register(
                Registration(SERVICE, "127.0.0.1:1", instance_id=INSTANCE, ttl_s=3600)
            )
            async with workflows.worker(SERVICE, INSTANCE, [TASK_TYPE], 10_000) as session:
                driver = Driver(workflows, session)
                serving = asyncio.ensure_future(driver.serve())
                try:
                    logger.info("engine ready")
                    # This process is engine, store and driver at once.
                    rates = await rates_by_count(driver.one_process, load, in_flight, "engine", STEPS)
                finally:
                    serving.cancel()
                    await asyncio.gather(serving, return_exceptions=True)
    return rates


def main() -> None:
    """Entry point of the child process."""
    parser = argparse.ArgumentParser(prog="python -m bench.engine_loop")
    add_loop_options(parser)
    args = parser.parse_args()
    # The control plane's own INFO lines would drown the loops' (which come from bench.*).
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    logging.getLogger("bench").setLevel(logging.INFO)
    # As `mgmt serve` runs: its GIL switch interval, and its collector settled once it is up.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    rates = asyncio.run(measure(loop_load(args), args.in_flight, settle_collector))
    json.dump(rates, sys.stdout)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
