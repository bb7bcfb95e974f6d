"""Helpers for workflow tests: SDK workers for test services, and waiting on processes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
import pytest

from control_plane.errors import Unavailable
from control_plane.server import App
from control_plane.storage.base import WorkflowTx
from hms.mgmt.v1 import workflow_pb2 as pb
from hms_mgmt import Client, HistoryEventType, TaskContext, Worker
from hms_mgmt.types import Process

T = TypeVar("T")

# Waits for an inspection result on the Bus, correlated by application id.
BUS_WAIT = """
name: inspection
steps:
  - id: result
    wait_signal:
      subject: "inspection.*.result"
      correlate: "message.application_id == input.application_id"
      timeout: 1h
output: {approved: "steps.result.output.approved"}
"""


async def next_tasks(
    stream: grpc.aio.UnaryStreamCall[pb.SubscribeTasksRequest, pb.SubscribeTasksResponse],
    timeout_s: float = 10.0,
) -> pb.SubscribeTasksResponse:
    """The next SubscribeTasks frame that carries tasks (the ready frame and empty ones are skipped)."""
    async with asyncio.timeout(timeout_s):
        while True:
            frame = await stream.read()
            assert isinstance(frame, pb.SubscribeTasksResponse)
            if frame.tasks:
                return frame


class Services:
    """Workers for the test services, recording every task they run."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.calls: list[tuple[str, str, int]] = []
        self.behaviour: dict[str, Callable[[TaskContext], Any]] = {}
        self.workers: list[Worker] = []
        self._runs: list[asyncio.Task[None]] = []

    async def start(self, service: str, *task_types: str, instance_id: str = "") -> Worker:
        worker = Worker(self.client, service, instance_id=instance_id, max_in_flight=8, drain_timeout_s=1.0)
        for task_type in task_types:
            worker.task(task_type)(self._handler(task_type))
        self.workers.append(worker)
        self._runs.append(asyncio.create_task(worker.run()))
        async with asyncio.timeout(10):
            await worker.ready.wait()
        return worker

    def _handler(self, task_type: str) -> Callable[[TaskContext], Any]:
        async def handle(task: TaskContext) -> dict[str, Any]:
            self.calls.append((task_type, task.process_id, task.attempt))
            behave = self.behaviour.get(task_type)
            result = behave(task) if behave else None
            if asyncio.iscoroutine(result):
                result = await result
            return result if isinstance(result, dict) else {"done": task_type}

        return handle

    async def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        await asyncio.gather(*self._runs, return_exceptions=True)

    def types(self, process_id: str) -> list[str]:
        return [t for t, p, _ in self.calls if p == process_id]


async def permit_services(services: Services, definition: str) -> None:
    await services.client.workflow.apply(definition)
    await services.start("Docs", "validate", "decide")
    await services.start("Pay", "charge", "refund")
    await services.start("Inspect", "schedule", "unschedule")
    services.behaviour["charge"] = lambda t: {"receipt": f"r-{t.input['amount']:.0f}"}
    services.behaviour["schedule"] = lambda t: {"slot": "2026-12-01T09:00"}
    services.behaviour["decide"] = lambda t: {"decision": "approved", "slot": t.input["slot"]}


async def wait_for_step(client: Client, process_id: str, step_id: str, *, scheduled: bool = False) -> None:
    """Follow the process's history until `step_id` was entered (or its task scheduled)."""
    wanted = HistoryEventType.TASK_SCHEDULED if scheduled else HistoryEventType.STEP_STARTED
    async with asyncio.timeout(10):
        async for frame in client.workflow.watch(process_id):
            if any(e.type == wanted and e.step_id == step_id for e in frame.events):
                return
    raise AssertionError(f"{step_id} never started")


async def finish(client: Client, process_id: str) -> Process:
    async with asyncio.timeout(20):
        return await client.workflow.wait(process_id)


class RefusingStore:
    """Makes the store refuse workflow transitions with UNAVAILABLE, as an unreachable database does:
    once told to, the `count` transitions after the next `after` ones.
    """

    def __init__(self, app: App, monkeypatch: pytest.MonkeyPatch) -> None:
        self._transact = app.store.wf_transact
        self._left = 0
        self._spared = 0
        self.refused = 0
        monkeypatch.setattr(app.store, "wf_transact", self._wf_transact)

    def refuse(self, count: int, *, after: int = 0) -> None:
        self._left, self._spared = count, after

    async def _wf_transact(
        self,
        work: Callable[[WorkflowTx], T],
        *,
        now: float,
        follow: Callable[[T], None] | None = None,
        loads: str = "",
    ) -> T:
        if self._spared > 0:
            self._spared -= 1
        elif self._left > 0:
            self._left -= 1
            self.refused += 1
            raise Unavailable("the store is unreachable: injected fault")
        return await self._transact(work, now=now, follow=follow, loads=loads)
