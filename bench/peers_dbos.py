"""The peers group's DBOS Transact run: the workflow group's 5-step no-op workflow, closed loops, in one process.

DBOS is a library: the workflow runs in the process that calls it, its steps checkpointed in its
system database on PostgreSQL. So this child (run with the peers' own virtual environment, see
`bench.peers_install`) is both the engine and the caller:
`python -m bench.peers_dbos DATABASE_URL --in-flight 1 --in-flight 100 --warmup 1 --duration 5 --repeats 3`
launches DBOS on DATABASE_URL (a database of its own, created and dropped by the bench), logs
`dbos ready` to stderr, runs `--repeats` closed loops at each `--in-flight` (each caller awaiting
one workflow, then starting the next; `bench.harness.closed_loop_rate`, the load shape of every
other group), checks every workflow's output, and writes the rates as JSON to stdout.

The workflow `bench5`: five `@DBOS.step()`s in sequence, each returning its input plus a field
named after it (an async workflow of async steps, as DBOS runs them on the asyncio loop).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any, cast

from dbos import DBOS

from bench.figures import Load
from bench.harness import add_loop_options, loop_load, rates_by_count

logger = logging.getLogger("bench.peers_dbos")

STEPS = 5
START_INPUT = {"bench": "bench5"}
EXPECTED_OUTPUT = {**START_INPUT, **{f"s{n}": True for n in range(1, STEPS + 1)}}

Workflow = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def define() -> Workflow:
    """Register the steps and the workflow with DBOS (before launch); the workflow function."""

    async def step(value: dict[str, Any], name: str) -> dict[str, Any]:
        return {**value, name: True}

    durable_step = DBOS.step(name="noop")(step)

    async def bench5(value: dict[str, Any]) -> dict[str, Any]:
        for n in range(1, STEPS + 1):
            value = await durable_step(value, f"s{n}")
        return value

    return cast(Workflow, DBOS.workflow(name="bench5")(bench5))


async def measure(workflow: Workflow, load: Load, in_flight: list[int]) -> dict[str, list[dict[str, Any]]]:
    """`load.repeats` closed loops at each count of `in_flight`: rates (per_s, count, cpu_us) by count."""

    async def one_workflow() -> None:
        output = await workflow(dict(START_INPUT))
        if output != EXPECTED_OUTPUT:
            raise RuntimeError(f"workflow output {output!r}, not {EXPECTED_OUTPUT!r}")

    # This process is engine and caller at once: its CPU is DBOS's.
    return await rates_by_count(one_workflow, load, in_flight, "dbos", STEPS)


def main() -> None:
    """Entry point of the child process."""
    parser = argparse.ArgumentParser(prog="python -m bench.peers_dbos")
    parser.add_argument("database_url")
    add_loop_options(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    load = loop_load(args)
    DBOS(config={"name": "hms-bench-peers", "system_database_url": args.database_url})
    workflow = define()
    DBOS.launch()
    try:
        logger.info("dbos ready")
        rates = asyncio.run(measure(workflow, load, args.in_flight))
    finally:
        DBOS.destroy()
    json.dump(rates, sys.stdout)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
