"""Crash safety: processes survive SIGKILLs of the control plane, each step completing exactly once."""

from __future__ import annotations

import asyncio
import collections
import signal
from collections.abc import Awaitable, Callable

import pytest

from hms_mgmt import Client, HistoryEventType, ProcessState, TaskContext, TaskFailure, Worker
from tests.conftest import ServerProcess
from tests.ports import free_port
from tests.test_workflow_operations import until_incident

Start = Callable[..., Awaitable[ServerProcess]]

FIVE_STEPS = """
name: five
steps:
""" + "".join(f"  - {{id: s{n}, task: {{service: Crash, type: noop}}}}\n" for n in range(1, 6))

PROCESSES = 200

# A called definition, and one with a call step and a map step among tasks.
CHILD = """
name: child
steps:
  - {id: k1, task: {service: Crash, type: noop}}
  - {id: k2, task: {service: Crash, type: noop}}
"""
COMPOSITE = """
name: composite
steps:
  - {id: c1, task: {service: Crash, type: noop}}
  - id: sub
    call: {definition: child, version: ">=1", input: {n: "input.n"}}
  - id: each
    map:
      items: "input.xs"
      max_concurrency: 4
      steps:
        - {id: m1, task: {service: Crash, type: noop}, input: {x: "item"}}
        - {id: m2, task: {service: Crash, type: noop}, input: {x: "item"}}
  - {id: c2, task: {service: Crash, type: noop}}
"""
COMPOSITES = 30
ITEMS = 8
# Step s3 fails for good until the service is fixed: an incident, retried between two SIGKILLs.
WITH_INCIDENT = """
name: five_incident
on_failure: incident
steps:
  - {id: s1, task: {service: Crash, type: noop}}
  - {id: s2, task: {service: Crash, type: noop}}
  - {id: s3, task: {service: Crash, type: flaky}}
  - {id: s4, task: {service: Crash, type: noop}}
  - {id: s5, task: {service: Crash, type: noop}}
"""
INCIDENTS = 20


@pytest.mark.timeout(180)
async def test_processes_finish_exactly_once_through_three_sigkills(server_process: Start) -> None:
    listen = f"127.0.0.1:{free_port()}"
    plane = await server_process("--listen", listen)
    handled = 0
    progress = asyncio.Event()
    fixed = False

    async def flaky(task: TaskContext) -> dict[str, str]:
        if not fixed:
            raise TaskFailure("DOWN", "the service is down", non_retryable=True)
        return {"step": task.step_id}

    async def noop(task: TaskContext) -> dict[str, str]:
        nonlocal handled
        handled += 1
        progress.set()
        return {"step": task.step_id}

    async with Client(listen) as client:
        await client.workflow.apply(FIVE_STEPS)
        await client.workflow.apply(CHILD)
        await client.workflow.apply(COMPOSITE)
        await client.workflow.apply(WITH_INCIDENT)
        workers = [
            Worker(client, "Crash", max_in_flight=32, ttl_s=3.0, drain_timeout_s=1.0) for _ in range(2)
        ]
        for worker in workers:
            worker.task("noop")(noop)
            worker.task("flaky")(flaky)
        runs = [asyncio.create_task(w.run()) for w in workers]
        try:
            stuck = [(await client.workflow.start("five_incident", {"n": n})).id for n in range(INCIDENTS)]
            ids = [(await client.workflow.start("five", {"n": n})).id for n in range(PROCESSES)]
            composites = [
                (await client.workflow.start("composite", {"n": n, "xs": list(range(ITEMS))})).id
                for n in range(COMPOSITES)
            ]
            for kill, fraction in enumerate((0.2, 0.5, 0.8)):
                async with asyncio.timeout(60):
                    while handled < fraction * PROCESSES * 5:
                        progress.clear()
                        await progress.wait()
                await plane.stop(signal.SIGKILL)
                plane = await server_process("--listen", listen)
                await client.wait_ready(30)
                if kill == 0:
                    # Every incident open (across the first kill), then each retried: the retried
                    # steps run while the next kills come.
                    for pid in stuck:
                        await until_incident(client, pid, "s3", timeout_s=60)
                    fixed = True
                    for pid in stuck:
                        await client.workflow.retry_step(pid, "s3", "the service is back")
            async with asyncio.timeout(90):
                finals = [await client.workflow.wait(pid) for pid in [*ids, *stuck]]
                composed = [await client.workflow.wait(pid) for pid in composites]
                children = [await client.workflow.list(parent_process_id=pid) for pid in composites]
                child_finals = [await client.workflow.wait(c[0].id) for c in children if c]
            histories = [await client.workflow.history(pid) for pid in [*ids, *stuck]]
            composed_histories = [await client.workflow.history(pid) for pid in composites]
            child_histories = [await client.workflow.history(c.id) for c in child_finals]
        finally:
            for worker in workers:
                worker.stop()
            await asyncio.gather(*runs, return_exceptions=True)

    assert {p.state for p in finals} == {ProcessState.COMPLETED}
    for history in histories:
        completed = collections.Counter(
            e.step_id for e in history if e.type == HistoryEventType.STEP_COMPLETED
        )
        assert completed == {f"s{n}": 1 for n in range(1, 6)}
        assert [e.sequence for e in history] == list(range(1, len(history) + 1))
    # A call step starts exactly one child, whatever the kills; every step of both, and every item's
    # steps, complete exactly once.
    assert {p.state for p in composed} == {ProcessState.COMPLETED}
    assert [len(c) for c in children] == [1] * COMPOSITES
    assert {p.state for p in child_finals} == {ProcessState.COMPLETED}
    items = {f"{step}#{i}": 1 for step in ("m1", "m2") for i in range(ITEMS)}
    for history in composed_histories:
        completed = collections.Counter(
            e.step_id for e in history if e.type == HistoryEventType.STEP_COMPLETED
        )
        assert completed == {"c1": 1, "sub": 1, "each": 1, "c2": 1, **items}
        assert [e.sequence for e in history] == list(range(1, len(history) + 1))
    for history in child_histories:
        completed = collections.Counter(
            e.step_id for e in history if e.type == HistoryEventType.STEP_COMPLETED
        )
        assert completed == {"k1": 1, "k2": 1}
    for history in histories[PROCESSES:]:
        kinds = collections.Counter(e.type for e in history)
        assert kinds[HistoryEventType.STEP_INCIDENT] == 1
        assert kinds[HistoryEventType.STEP_RETRY_REQUESTED] == 1
