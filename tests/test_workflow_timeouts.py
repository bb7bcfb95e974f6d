"""Workflows with real workers on the real clock: version routing, the outbox, Bus waits, heartbeats, lapses.

When timeouts, retries and timers fire is checked on a fake clock in tests/core/test_workflow_timing.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import pytest

from hms.mgmt.v1 import bus_pb2
from hms.mgmt.v1 import workflow_pb2 as pb
from hms_mgmt import Client, HistoryEventType, TaskContext
from hms_mgmt._workflow import struct
from hms_mgmt.types import Process, ProcessState
from tests.workflow_support import BUS_WAIT, Services, finish, next_tasks, wait_for_step

ROUTED = """
name: routed
steps:
  - id: pay
    task: {service: Pay, type: charge, version: ">=2.0,<3"}
"""


async def test_tasks_go_only_to_instances_whose_version_matches(client: Client) -> None:
    await client.workflow.apply(ROUTED)
    await client.registry.register("Pay", "127.0.0.1:1", instance_id="old", version="1.9.0")
    await client.registry.register("Pay", "127.0.0.1:2", instance_id="new", version="2.3.0")
    old = client.workflow.subscribe_tasks("Pay", "old", ["charge"], 5)
    new = client.workflow.subscribe_tasks("Pay", "new", ["charge"], 5)
    try:
        for stream in (old, new):
            ready = await stream.read()
            assert isinstance(ready, pb.SubscribeTasksResponse) and ready.ready
        process = await client.workflow.start("routed", {})
        async with asyncio.timeout(10):
            frame = await new.read()
        assert isinstance(frame, pb.SubscribeTasksResponse)
        (task,) = frame.tasks
        reply = await client.workflow.complete(task.task_token, {"by": "new"})
        done = await finish(client, process.id)
    finally:
        old.cancel()
        new.cancel()

    assert reply.result == pb.REPORT_RESULT_ACCEPTED
    assert done.state == ProcessState.COMPLETED


OUTBOX = """
name: outbox
steps:
  - id: charge
    task: {service: Pay, type: charge}
"""


async def test_the_outbox_is_published_exactly_when_the_completion_counts(client: Client) -> None:
    await client.workflow.apply(OUTBOX)
    await client.registry.register("Pay", "127.0.0.1:1", instance_id="p1")
    stream = client.workflow.subscribe_tasks("Pay", "p1", ["charge"], 1)
    try:
        async with client.bus.subscribe("payments.>") as events:
            process = await client.workflow.start("outbox", {})
            frame = await next_tasks(stream)
            token = frame.tasks[0].task_token
            receipt = bus_pb2.BusMessage(
                subject="payments.charged", data=json.dumps({"pid": process.id}).encode()
            )
            accepted = await client.workflow.complete(token, {"ok": True}, outbox=[receipt])
            repeated = await client.workflow.complete(token, {"ok": True}, outbox=[receipt])
            async with asyncio.timeout(5):
                delivery = await anext(events)
            await client.bus.publish("payments.marker", b"end")  # anything after the outbox arrives next
            async with asyncio.timeout(5):
                marker = await anext(events)
    finally:
        stream.cancel()

    assert (accepted.result, repeated.result) == (
        pb.REPORT_RESULT_ACCEPTED,
        pb.REPORT_RESULT_ALREADY_REPORTED,
    )
    assert json.loads(delivery.message.data) == {"pid": process.id}
    assert marker.message.subject == "payments.marker"  # the repeated completion published nothing


async def test_a_bus_message_resumes_the_process_it_correlates_with(client: Client) -> None:
    await client.workflow.apply(BUS_WAIT)
    await client.bus.publish(
        "inspection.early.result", json.dumps({"application_id": "a", "approved": False}).encode()
    )
    first = await client.workflow.start("inspection", {"application_id": "a"})
    second = await client.workflow.start("inspection", {"application_id": "b"})
    await wait_for_step(client, first.id, "result")
    await wait_for_step(client, second.id, "result")
    await client.bus.publish(
        "inspection.x.result", json.dumps({"application_id": "b", "approved": True}).encode()
    )
    await client.bus.publish(
        "inspection.y.result", json.dumps({"application_id": "a", "approved": True}).encode()
    )
    await client.bus.publish("unrelated.subject", json.dumps({"application_id": "a"}).encode())

    done_a, done_b = await finish(client, first.id), await finish(client, second.id)

    assert (done_a.state, dict(done_a.output)) == (ProcessState.COMPLETED, {"approved": True})
    assert (done_b.state, dict(done_b.output)) == (ProcessState.COMPLETED, {"approved": True})
    received = [
        e for e in await client.workflow.history(first.id) if e.type == HistoryEventType.SIGNAL_RECEIVED
    ]
    assert [dict(e.details)["subject"] for e in received] == ["inspection.y.result"]


BEATS = """
name: beats
steps:
  - id: long
    task: {service: Slow, type: long}
    heartbeat_timeout: 1s
    retry: {max_attempts: 1}
"""


async def test_the_sdk_heartbeats_keep_a_long_task_past_its_heartbeat_timeout(
    client: Client, services: Services
) -> None:
    # When heartbeats move the deadline, on a fake clock, is tests/core/test_workflow_timing.py's; this
    # is the SDK's heartbeat reaching the control plane, on the real clock.
    await client.workflow.apply(BEATS)

    async def long(task: TaskContext) -> dict[str, Any]:
        for n in range(3):  # 1.2 s of work in all, past the heartbeat timeout
            await asyncio.sleep(0.4)  # waits-on-purpose: time passing is what is under test
            await task.heartbeat({"done": n + 1})
        return {"attempt": task.attempt}

    services.behaviour["long"] = long
    await services.start("Slow", "long")
    process = await client.workflow.start("beats", {})
    done = await finish(client, process.id)

    assert done.state == ProcessState.COMPLETED
    step = done.steps[0]
    assert (step.attempts, dict(step.output)) == (1, {"attempt": 1.0})
    assert dict(step.heartbeat_details) == {"done": 3.0}


ONE_STEP = """
name: onestep
steps:
  - id: only
    task: {service: Batch, type: job}
"""


TaskStream = grpc.aio.UnaryStreamCall[pb.SubscribeTasksRequest, pb.SubscribeTasksResponse]


async def _three_tokens(client: Client) -> tuple[TaskStream, list[Process], list[str]]:
    """Three processes whose tasks a manual worker holds, and its task stream (for the caller to end)."""
    await client.workflow.apply(ONE_STEP)
    await client.registry.register("Batch", "127.0.0.1:1", instance_id="b1")
    tasks_stream = client.workflow.subscribe_tasks("Batch", "b1", ["job"], 10)
    processes = [await client.workflow.start("onestep", {"n": n}) for n in range(3)]
    tokens: list[str] = []
    async with asyncio.timeout(10):
        while len(tokens) < 3:
            frame = await tasks_stream.read()
            assert isinstance(frame, pb.SubscribeTasksResponse)
            tokens += [t.task_token for t in frame.tasks]
    return tasks_stream, processes, tokens


def _events(tokens: list[str]) -> list[pb.TaskEvent]:
    events = [pb.TaskEvent(task_token=t, completed=pb.TaskCompleted(output=struct({"t": t}))) for t in tokens]
    events.append(pb.TaskEvent(task_token=tokens[0], completed=pb.TaskCompleted()))  # a repeat: stale
    events.append(pb.TaskEvent(task_token="not-a-token", started=pb.TaskStarted()))  # invalid
    return events


async def test_one_report_stream_carries_many_tasks_events(client: Client) -> None:
    tasks_stream, processes, tokens = await _three_tokens(client)
    try:
        reports = client.workflow.report_stream()
        await reports.write(pb.ReportTaskEventsRequest(events=_events(tokens)))
        await reports.done_writing()
        answer = await reports
    finally:
        tasks_stream.cancel()
    finals = [await finish(client, p.id) for p in processes]

    assert (answer.accepted, answer.stale, answer.invalid) == (3, 1, 1)
    assert [v.field for v in answer.violations] == ["events[4].task_token"]
    assert {f.state for f in finals} == {ProcessState.COMPLETED}


async def test_every_batch_of_a_report_stream_is_answered_with_a_result_per_event(client: Client) -> None:
    tasks_stream, processes, tokens = await _three_tokens(client)
    reports = client.workflow.report_batches()
    try:
        async with asyncio.timeout(10):
            await reports.write(pb.ReportTaskEventBatchesRequest(batch_id=7, events=_events(tokens)))
            answer = await reports.read()
            await reports.write(pb.ReportTaskEventBatchesRequest(batch_id=8))  # no events: refused whole
            empty = await reports.read()
            await reports.done_writing()
            end = await reports.read()
    finally:
        reports.cancel()
        tasks_stream.cancel()
    finals = [await finish(client, p.id) for p in processes]

    assert isinstance(answer, pb.ReportTaskEventBatchesResponse) and answer.batch_id == 7
    assert list(answer.results) == [pb.REPORT_RESULT_ACCEPTED] * 3 + [
        pb.REPORT_RESULT_ALREADY_REPORTED,
        pb.REPORT_RESULT_INVALID,
    ]
    assert [v.field for v in answer.violations] == ["events[4].task_token"]
    assert isinstance(empty, pb.ReportTaskEventBatchesResponse) and empty.batch_id == 8
    assert (list(empty.results), [v.field for v in empty.violations]) == ([], ["events"])
    assert end is grpc.aio.EOF  # closed by the worker after its last answer: the stream ends OK
    assert {f.state for f in finals} == {ProcessState.COMPLETED}


NAP = """
name: nap
steps:
  - id: nap
    sleep: 200ms
"""


async def test_many_sleeping_processes_wake_together(client: Client) -> None:
    await client.workflow.apply(NAP)
    started = await asyncio.gather(*(client.workflow.start("nap", {"n": n}) for n in range(300)))

    finals = await asyncio.gather(*(finish(client, p.id) for p in started))

    assert {f.state for f in finals} == {ProcessState.COMPLETED}


async def test_a_worker_whose_lease_lapses_loses_its_tasks_at_once(client: Client) -> None:
    await client.workflow.apply(ONE_STEP)
    await client.registry.register("Batch", "127.0.0.1:1", instance_id="lapsing", ttl_s=1.0)  # never renewed
    doomed = client.workflow.subscribe_tasks("Batch", "lapsing", ["job"], 5)
    try:
        first = await doomed.read()
        assert isinstance(first, pb.SubscribeTasksResponse) and first.ready
        process = await client.workflow.start("onestep", {})
        async with asyncio.timeout(10):
            held = await doomed.read()
        assert isinstance(held, pb.SubscribeTasksResponse) and len(held.tasks) == 1
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async with asyncio.timeout(10):
                await doomed.read()  # the lease lapses after 1 s: the stream ends
    finally:
        doomed.cancel()
    await client.registry.register("Batch", "127.0.0.1:2", instance_id="healthy", ttl_s=30.0)
    rescuer = client.workflow.subscribe_tasks("Batch", "healthy", ["job"], 5)
    try:
        frame = await next_tasks(rescuer)
        reply = await client.workflow.complete(frame.tasks[0].task_token, {"by": "healthy"})
    finally:
        rescuer.cancel()

    assert ended.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "lease_expired" in (
        ended.value.details() or ""
    )
    assert frame.tasks[0].task_token == held.tasks[0].task_token  # the same attempt, requeued
    assert reply.result == pb.REPORT_RESULT_ACCEPTED
    assert (await finish(client, process.id)).state == ProcessState.COMPLETED
