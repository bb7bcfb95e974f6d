"""No-op workers of the workflow group, in a child process of their own, on the SDK's `Worker`.

`python -m bench.workflow_clients ADDRESS --service Bench --task-type noop --instances 1
--max-in-flight 200` runs `--instances` SDK workers on one connection. Each registers in the
Registry, keeps its lease, subscribes with SubscribeTasks and reports every task completed (its
output is its input plus a field named after its step) on its ReportTaskEventBatches stream, as a user's
worker does. Once every worker has its
`ready` frame it logs `workers ready` to stderr; on SIGTERM or SIGINT it drains, deregisters and
logs how many tasks it ran.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from hms_mgmt import Client, TaskContext, Worker

logger = logging.getLogger("bench.workflow_clients")

_READY_TIMEOUT_S = 30.0


def step_output(task: TaskContext) -> dict[str, Any]:
    """A no-op step's output: its input plus a field named after the step (the peers' steps do the same)."""
    return {**task.input, task.step_id: True}


async def serve(address: str, service: str, task_type: str, instances: int, max_in_flight: int) -> int:
    """Run the workers until SIGTERM or SIGINT; returns the number of tasks they ran."""
    ran = 0

    async def noop(task: TaskContext) -> dict[str, Any]:
        nonlocal ran
        ran += 1
        return step_output(task)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with Client(address) as client:
        await client.wait_ready()
        workers = [
            Worker(client, service, max_in_flight=max_in_flight, drain_timeout_s=1.0)
            for _ in range(instances)
        ]
        for worker in workers:
            worker.task(task_type)(noop)
        async with asyncio.TaskGroup() as tasks:
            for worker in workers:
                tasks.create_task(worker.run())
            async with asyncio.timeout(_READY_TIMEOUT_S):
                for worker in workers:
                    await worker.ready.wait()
            logger.info(
                "workers ready: %d x %s/%s, max in flight %d", instances, service, task_type, max_in_flight
            )
            await stop.wait()
            for worker in workers:
                worker.stop()
    return ran


def main() -> None:
    """Entry point of the child process."""
    parser = argparse.ArgumentParser(prog="python -m bench.workflow_clients")
    parser.add_argument("address")
    parser.add_argument("--service", default="Bench")
    parser.add_argument("--task-type", default="noop")
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--max-in-flight", type=int, default=200)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    ran = asyncio.run(serve(args.address, args.service, args.task_type, args.instances, args.max_in_flight))
    logger.info("workers stopped after %d tasks", ran)


if __name__ == "__main__":
    main()
