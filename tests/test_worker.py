"""Worker reports and registrations against faults: a store that refuses writes for a while, a lapsed lease."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from control_plane.server import App
from control_plane.storage.base import WorkflowTx
from hms.mgmt.v1 import workflow_pb2 as pb
from hms_mgmt import Client, HistoryEventType, TaskContext, Worker
from hms_mgmt._workflow import struct
from hms_mgmt.types import ProcessState, StepState
from tests.test_sdk_failover import CLOSED, switches
from tests.workflow_support import RefusingStore, finish, next_tasks

T = TypeVar("T")

CHAIN = """
name: chain
steps:
""" + "".join(f"  - {{id: s{n}, task: {{service: Chain, type: step}}}}\n" for n in range(1, 4))

ONE_STEP = """
name: onestep
steps:
  - id: only
    task: {service: Batch, type: job}
"""


async def test_every_task_report_is_answered_and_resent_after_store_failure(
    server: App, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RefusingStore(server, monkeypatch)
    await client.workflow.apply(CHAIN)
    processes = [await client.workflow.start("chain", {"n": n}) for n in range(20)]
    runs: collections.Counter[tuple[str, str]] = collections.Counter()

    async def step(task: TaskContext) -> dict[str, Any]:
        runs[(task.process_id, task.step_id)] += 1
        if runs.total() == 10:
            store.refuse(30)  # the database goes away in the middle of a stream of completions
        return {"step": task.step_id}

    worker = Worker(client, "Chain", instance_id="chain-1", max_in_flight=8, drain_timeout_s=1.0)
    worker.task("step")(step)
    run = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(30):
            finals = [await client.workflow.wait(p.id) for p in processes]
        histories = [await client.workflow.history(p.id) for p in processes]
    finally:
        worker.stop()
        async with asyncio.timeout(10):
            await run

    assert store.refused == 30
    assert {f.state for f in finals} == {ProcessState.COMPLETED}
    for history in histories:
        completed = collections.Counter(
            e.step_id for e in history if e.type == HistoryEventType.STEP_COMPLETED
        )
        assert completed == {"s1": 1, "s2": 1, "s3": 1}
        assert not [e for e in history if e.type == HistoryEventType.TASK_FAILED]
    # The refused completions were sent again, not their tasks run again.
    assert set(runs.values()) == {1} and len(runs) == 60


async def test_a_report_the_store_refused_ends_the_stream_unavailable_and_counts_once_when_resent(
    server: App, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RefusingStore(server, monkeypatch)
    await client.workflow.apply(ONE_STEP)
    await client.registry.register("Batch", "127.0.0.1:1", instance_id="b1")
    tasks_stream = client.workflow.subscribe_tasks("Batch", "b1", ["job"], 10)
    processes = [await client.workflow.start("onestep", {"n": n}) for n in range(2)]
    try:
        tasks = list((await next_tasks(tasks_stream)).tasks)
        if len(tasks) < 2:
            tasks += (await next_tasks(tasks_stream)).tasks
        completions = [
            pb.TaskEvent(task_token=t.task_token, completed=pb.TaskCompleted(output=struct({"n": n})))
            for n, t in enumerate(tasks)
        ]
        store.refuse(1)
        broken = client.workflow.report_batches()
        await broken.write(pb.ReportTaskEventBatchesRequest(batch_id=1, events=completions[:1]))
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async with asyncio.timeout(10):
                await broken.read()
        unchanged = [await client.workflow.status(p.id) for p in processes]

        again = client.workflow.report_batches()
        await again.write(pb.ReportTaskEventBatchesRequest(batch_id=1, events=completions))
        async with asyncio.timeout(10):
            answer = await again.read()
        await again.write(pb.ReportTaskEventBatchesRequest(batch_id=2, events=completions[:1]))
        async with asyncio.timeout(10):
            repeat = await again.read()
        again.cancel()
    finally:
        tasks_stream.cancel()
    finals = [await finish(client, p.id) for p in processes]
    histories = [await client.workflow.history(p.id) for p in processes]

    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE  # not answered: the worker sends it again
    assert {p.state for p in unchanged} == {ProcessState.RUNNING}
    assert isinstance(answer, pb.ReportTaskEventBatchesResponse)
    assert isinstance(repeat, pb.ReportTaskEventBatchesResponse)
    assert (answer.batch_id, list(answer.results)) == (1, [pb.REPORT_RESULT_ACCEPTED] * 2)
    assert (repeat.batch_id, list(repeat.results)) == (2, [pb.REPORT_RESULT_ALREADY_REPORTED])
    assert {f.state for f in finals} == {ProcessState.COMPLETED}
    for history in histories:
        assert [e.type for e in history].count(HistoryEventType.STEP_COMPLETED) == 1


async def test_report_task_events_ends_with_the_store_failure_instead_of_an_answer(
    server: App, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RefusingStore(server, monkeypatch)
    await client.workflow.apply(ONE_STEP)
    await client.registry.register("Batch", "127.0.0.1:1", instance_id="b1")
    tasks_stream = client.workflow.subscribe_tasks("Batch", "b1", ["job"], 1)
    process = await client.workflow.start("onestep", {})
    try:
        token = (await next_tasks(tasks_stream)).tasks[0].task_token
        events = [pb.TaskEvent(task_token=token, completed=pb.TaskCompleted(output=struct({"ok": True})))]
        store.refuse(1)
        broken = client.workflow.report_stream()
        await broken.write(pb.ReportTaskEventsRequest(events=events))
        await broken.done_writing()
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async with asyncio.timeout(10):
                await broken  # no answer that would count the refused completion as seen
        unchanged = await client.workflow.status(process.id)
        again = client.workflow.report_stream()
        await again.write(pb.ReportTaskEventsRequest(events=events))
        await again.done_writing()
        async with asyncio.timeout(10):
            answer = await again
    finally:
        tasks_stream.cancel()
    final = await finish(client, process.id)

    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert unchanged.state == ProcessState.RUNNING
    assert (answer.accepted, answer.stale, answer.invalid) == (1, 0, 0)
    assert final.state == ProcessState.COMPLETED


class GatedStore:
    """Holds the next workflow transition's answer until `gate` opens; its commit goes ahead meanwhile,
    as the store writer's does whatever becomes of the caller.
    """

    def __init__(self, app: App, monkeypatch: pytest.MonkeyPatch) -> None:
        self._transact = app.store.wf_transact
        self._armed = False
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        monkeypatch.setattr(app.store, "wf_transact", self._wf_transact)

    def hold_next(self) -> None:
        self._armed = True

    async def _wf_transact(
        self,
        work: Callable[[WorkflowTx], T],
        *,
        now: float,
        follow: Callable[[T], None] | None = None,
        loads: str = "",
    ) -> T:
        committing = asyncio.ensure_future(self._transact(work, now=now, follow=follow, loads=loads))
        if self._armed:
            self._armed = False
            self.entered.set()
            await self.gate.wait()
        return await committing


async def test_a_completion_whose_caller_gave_up_during_its_commit_still_advances_the_process(
    server: App, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = GatedStore(server, monkeypatch)
    await client.workflow.apply(CHAIN.replace("Chain", "Batch"))
    await client.registry.register("Batch", "127.0.0.1:1", instance_id="b1")
    tasks_stream = client.workflow.subscribe_tasks("Batch", "b1", ["step"], 1)
    process = await client.workflow.start("chain", {})
    try:
        first = (await next_tasks(tasks_stream)).tasks[0]
        store.hold_next()
        # What a CompleteTask whose client gave up (a deadline) does to the engine's call: cancel it.
        reporting = asyncio.ensure_future(server.workflows.complete(first.task_token, {"n": 1}, []))
        async with asyncio.timeout(10):
            await store.entered.wait()
        reporting.cancel()
        await asyncio.wait({reporting})
        store.gate.set()
        # The completion committed: the worker's credit comes back and the next step's task follows.
        second = (await next_tasks(tasks_stream)).tasks[0]
    finally:
        tasks_stream.cancel()

    assert reporting.cancelled()
    assert (first.step_id, second.step_id) == ("s1", "s2")
    status = await client.workflow.status(process.id)
    assert [s.state for s in status.steps][:1] == [StepState.COMPLETED]


def _error_reason(error: grpc.aio.AioRpcError) -> str:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return str(info.reason)
    return ""


async def test_worker_with_lapsed_lease_is_told_to_register_again(
    server: App, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    await client.workflow.apply(ONE_STEP)
    await client.registry.register("Batch", "127.0.0.1:1", instance_id="lapsing", ttl_s=1.0)  # never renewed
    doomed = client.workflow.subscribe_tasks("Batch", "lapsing", ["job"], 5)
    again = None
    try:
        first = await doomed.read()
        assert isinstance(first, pb.SubscribeTasksResponse) and first.ready
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async with asyncio.timeout(10):
                await doomed.read()  # the lease lapses after 1 s: the stream ends
        again = client.workflow.subscribe_tasks("Batch", "lapsing", ["job"], 5)  # what a generic retry does
        with pytest.raises(grpc.aio.AioRpcError) as retried:
            async with asyncio.timeout(10):
                await again.read()
    finally:
        doomed.cancel()
        if again is not None:
            again.cancel()

    # The same answer both times, and not UNAVAILABLE (which says "try again", here or elsewhere).
    for error in (ended.value, retried.value):
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert _error_reason(error) == "NOT_REGISTERED"

    # An SDK Worker evicted from the registry (as a lapse does) registers again where it is, at once.
    caplog.set_level(logging.INFO, logger="hms_mgmt")
    async with Client([server.address, CLOSED]) as worker_client:
        worker = Worker(worker_client, "Batch", instance_id="evicted", drain_timeout_s=1.0)
        worker.task("job")(lambda task: _done())
        run = asyncio.create_task(worker.run())
        try:
            async with asyncio.timeout(10):
                await worker.ready.wait()
            await client.registry.deregister("Batch", "evicted")
            process = await client.workflow.start("onestep", {})
            final = await finish(client, process.id)
            instances = await client.registry.lookup("Batch")
        finally:
            worker.stop()
            async with asyncio.timeout(10):
                await run
        address = worker_client.address

    assert final.state == ProcessState.COMPLETED
    assert [i.instance_id for i in instances] == ["evicted"]
    assert address == server.address and switches(caplog) == []
    assert any("registering again" in r.getMessage() for r in caplog.records)


async def _done() -> dict[str, Any]:
    return {"done": True}
