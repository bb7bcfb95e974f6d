"""Every limit the .proto comments document, tried at the limit (accepted) and just past it (refused).

The numbers here are typed from the proto comments, not imported from core/limits.py: the test checks
the code against the documentation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, struct_pb2

from control_plane.server import App
from hms.mgmt.v1 import bus_pb2, registry_pb2, workflow_pb2
from tests.wire_support import ONE_TASK, Stubs, violations

KIB, MIB = 1024, 1024 * 1024
HOUR, DAY, YEAR = 3600, 86400, 365 * 86400


@dataclass(frozen=True)
class InBand:
    """A refusal answered inside a response (PublishStream, ReportTaskEvents), with its fields."""

    fields: list[str]


Call = Callable[[Stubs, Any], Awaitable[Any]]


@dataclass(frozen=True)
class Limit:
    """A documented limit: `at` is accepted, `past` refused naming `field`."""

    name: str
    field: str
    at: Any
    past: Any
    call: Call
    code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT


def json_of(size: int) -> struct_pb2.Struct:
    """A Struct whose compact JSON text is exactly `size` bytes: {"s":"xxx..."}."""
    message = struct_pb2.Struct()
    message.fields["s"].string_value = "x" * (size - len('{"s":""}'))
    return message


def seconds(value: float) -> duration_pb2.Duration:
    whole = int(value)
    return duration_pb2.Duration(seconds=whole, nanos=round((value - whole) * 1e9))


async def first(stream: grpc.aio.UnaryStreamCall[Any, Any]) -> Any:
    """The first frame of a server stream (then the stream is cancelled)."""
    try:
        async with asyncio.timeout(10):
            return await stream.read()
    finally:
        stream.cancel()


# -- registry --------------------------------------------------------------------------------------


def register(stubs: Stubs, ttl: duration_pb2.Duration | None = None, **instance: Any) -> Awaitable[Any]:
    fields = {"service": "svc", "address": "127.0.0.1:9000", **instance}
    request = registry_pb2.RegisterRequest(instance=registry_pb2.ServiceInstance(**fields))
    if ttl is not None:
        request.ttl.CopyFrom(ttl)
    return stubs.registry.Register(request)


REGISTRY = [
    Limit("service name", "instance.service", 128, 129, lambda s, n: register(s, service="s" * n)),
    Limit("instance id", "instance.instance_id", 128, 129, lambda s, n: register(s, instance_id="i" * n)),
    Limit("tags", "instance.tags", 32, 33, lambda s, n: register(s, tags=[f"t{i}" for i in range(n)])),
    Limit("tag length", "instance.tags[0]", 64, 65, lambda s, n: register(s, tags=["t" * n])),
    Limit(
        "metadata entries",
        "instance.metadata",
        64,
        65,
        lambda s, n: register(s, metadata={f"k{i}": "v" for i in range(n)}),
    ),
    Limit(
        "metadata key",
        "instance.metadata['kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk']",
        128,
        129,
        lambda s, n: register(s, metadata={"k" * n: "v"}),
    ),
    Limit(
        "metadata value",
        "instance.metadata['k']",
        1024,
        1025,
        lambda s, n: register(s, metadata={"k": "v" * n}),
    ),
    Limit("version", "instance.version", 64, 65, lambda s, n: register(s, version="1" * n)),
    Limit("ttl at most 1h", "ttl", HOUR, HOUR + 1, lambda s, v: register(s, ttl=seconds(v))),
    Limit("ttl at least 1s", "ttl", 1, 0.999, lambda s, v: register(s, ttl=seconds(v))),
    Limit(
        "probe interval at most 1h",
        "instance.probe.interval",
        HOUR,
        HOUR + 1,
        lambda s, v: register(s, probe=registry_pb2.HealthProbe(interval=seconds(v))),
    ),
    Limit(
        "probe interval at least 100ms",
        "instance.probe.interval",
        0.1,
        0.099,
        lambda s, v: register(s, probe=registry_pb2.HealthProbe(interval=seconds(v), timeout=seconds(0.05))),
    ),
    Limit(
        "probe threshold",
        "instance.probe.threshold",
        10,
        11,
        lambda s, n: register(s, probe=registry_pb2.HealthProbe(threshold=n)),
    ),
]

# -- bus -------------------------------------------------------------------------------------------


def publish(stubs: Stubs, **message: Any) -> Awaitable[Any]:
    fields = {"subject": "orders.eu", "data": b"x", **message}
    return stubs.bus.Publish(bus_pb2.PublishRequest(message=bus_pb2.BusMessage(**fields)))


async def publish_stream(stubs: Stubs, messages: list[bus_pb2.BusMessage]) -> Any:
    async def requests() -> AsyncIterator[bus_pb2.PublishStreamRequest]:
        yield bus_pb2.PublishStreamRequest(batch_id=1, messages=messages)

    stream = stubs.bus.PublishStream(requests())
    async with asyncio.timeout(10):
        answers = [answer async for answer in stream]
    if answers and answers[0].violations:
        return InBand([v.field for v in answers[0].violations])
    return answers


def of_encoded_size(size: int) -> list[bus_pb2.BusMessage]:
    """Five messages whose PublishStreamRequest (batch_id 1) encodes to exactly `size` bytes."""
    messages = [bus_pb2.BusMessage(subject="orders.eu", data=b"x" * (size // 5 - 32)) for _ in range(5)]
    request = bus_pb2.PublishStreamRequest(batch_id=1, messages=messages)
    last = request.messages[-1]
    while gap := size - request.ByteSize():  # the last message takes up the difference
        last.data = b"x" * (len(last.data) + gap)
    return list(request.messages)


def of_weight(size: int) -> list[bus_pb2.BusMessage]:
    """Five messages on "orders.eu" whose data and subjects together weigh exactly `size` characters."""
    subject = "orders.eu"
    each = size // 5 - len(subject)
    messages = [bus_pb2.BusMessage(subject=subject, data=b"x" * each) for _ in range(5)]
    messages[-1].data = b"x" * (size - 4 * (each + len(subject)) - len(subject))
    return messages


def subscribe(stubs: Stubs, **request: Any) -> Awaitable[Any]:
    fields = {"pattern": "orders.>", **request}
    return first(stubs.bus.Subscribe(bus_pb2.SubscribeRequest(**fields)))


async def delivery(stubs: Stubs) -> str:
    """A delivery id of an explicitly acked subscription (left open: its consumer stays)."""
    stream = stubs.bus.Subscribe(
        bus_pb2.SubscribeRequest(pattern="acks.>", ack_mode=bus_pb2.ACK_MODE_EXPLICIT)
    )
    await stream.read()
    await stubs.bus.Publish(bus_pb2.PublishRequest(message=bus_pb2.BusMessage(subject="acks.1", data=b"1")))
    async with asyncio.timeout(10):
        frame = await stream.read()
    assert isinstance(frame, bus_pb2.SubscribeResponse)
    return frame.deliveries[0].delivery_id


async def ack(stubs: Stubs, count: int = 1, **item: Any) -> Any:
    delivery_id = await delivery(stubs)
    items = [bus_pb2.AckItem(delivery_id=delivery_id, **item) for _ in range(count)]
    return await stubs.bus.Ack(bus_pb2.AckRequest(items=items))


async def nack(stubs: Stubs, count: int = 1, delay: duration_pb2.Duration | None = None) -> Any:
    delivery_id = await delivery(stubs)
    request = bus_pb2.NackRequest(delivery_ids=[delivery_id] * count)
    if delay is not None:
        request.delay.CopyFrom(delay)
    return await stubs.bus.Nack(request)


def retention(stubs: Stubs, max_age_s: int) -> Awaitable[Any]:
    policy = bus_pb2.RetentionPolicy(subject_prefix="audit", max_age=duration_pb2.Duration(seconds=max_age_s))
    return stubs.bus.SetRetention(bus_pb2.SetRetentionRequest(policy=policy))


EXPLICIT = bus_pb2.ACK_MODE_EXPLICIT

BUS = [
    Limit("data", "message.data", MIB, MIB + 1, lambda s, n: publish(s, data=b"x" * n)),
    Limit(
        "headers",
        "message.headers",
        64,
        65,
        lambda s, n: publish(s, headers={f"h{i}": "v" for i in range(n)}),
    ),
    Limit("header key", "message.headers", 128, 129, lambda s, n: publish(s, headers={"k" * n: "v"})),
    Limit(
        "header value", "message.headers['k']", 4096, 4097, lambda s, n: publish(s, headers={"k": "v" * n})
    ),
    Limit("content type", "message.content_type", 128, 129, lambda s, n: publish(s, content_type="c" * n)),
    Limit("message id", "message.message_id", 128, 129, lambda s, n: publish(s, message_id="m" * n)),
    Limit("subject length", "message.subject", 255, 256, lambda s, n: publish(s, subject="s" * n)),
    Limit("subject tokens", "message.subject", 16, 17, lambda s, n: publish(s, subject=".".join("t" * n))),
    Limit(
        "batch messages",
        "messages",
        1000,
        1001,
        lambda s, n: publish_stream(s, [bus_pb2.BusMessage(subject="orders.eu", data=b"x")] * n),
    ),
    Limit(
        "batch weight (data, subjects, headers, content types, ids)",
        "messages",
        4 * MIB,
        4 * MIB + 1,
        lambda s, n: publish_stream(s, of_weight(n)),
    ),
    Limit("durable name", "durable", 128, 129, lambda s, n: subscribe(s, durable="d" * n)),
    Limit("queue group", "queue_group", 128, 129, lambda s, n: subscribe(s, queue_group="q" * n)),
    Limit(
        "ack wait at most 12h",
        "ack_wait",
        12 * HOUR,
        12 * HOUR + 1,
        lambda s, v: subscribe(s, ack_mode=EXPLICIT, ack_wait=seconds(v)),
    ),
    Limit(
        "ack wait at least 1s",
        "ack_wait",
        1,
        0.999,
        lambda s, v: subscribe(s, ack_mode=EXPLICIT, ack_wait=seconds(v)),
    ),
    Limit(
        "max deliveries",
        "max_deliveries",
        100,
        101,
        lambda s, n: subscribe(s, ack_mode=EXPLICIT, max_deliveries=n),
    ),
    Limit(
        "max in flight (explicit)",
        "max_in_flight",
        10_000,
        10_001,
        lambda s, n: subscribe(s, ack_mode=EXPLICIT, max_in_flight=n),
    ),
    Limit(
        "max in flight (none)", "max_in_flight", 100_000, 100_001, lambda s, n: subscribe(s, max_in_flight=n)
    ),
    Limit(
        "backoff entries",
        "backoff",
        16,
        17,
        lambda s, n: subscribe(s, ack_mode=EXPLICIT, backoff=[seconds(1)] * n),
    ),
    Limit(
        "backoff entry",
        "backoff[0]",
        HOUR,
        HOUR + 1,
        lambda s, v: subscribe(s, ack_mode=EXPLICIT, backoff=[seconds(v)]),
    ),
    Limit("max batch", "max_batch", 1000, 1001, lambda s, n: subscribe(s, max_batch=n)),
    Limit("ack items", "items", 10_000, 10_001, lambda s, n: ack(s, n)),
    Limit("ack reason", "items[0].reason", 1024, 1025, lambda s, n: ack(s, reason="r" * n)),
    Limit(
        "ack delay",
        "items[0].delay",
        12 * HOUR,
        12 * HOUR + 1,
        lambda s, v: ack(s, action=bus_pb2.ACK_ACTION_NACK, delay=seconds(v)),
    ),
    Limit("nack ids", "delivery_ids", 10_000, 10_001, lambda s, n: nack(s, n)),
    Limit("nack delay", "delay", 12 * HOUR, 12 * HOUR + 1, lambda s, v: nack(s, delay=seconds(v))),
    Limit(
        "subjects page",
        "page_size",
        1000,
        1001,
        lambda s, n: s.bus.ListSubjects(bus_pb2.ListSubjectsRequest(page_size=n)),
    ),
    Limit(
        "consumers page",
        "page_size",
        1000,
        1001,
        lambda s, n: s.bus.ListConsumers(bus_pb2.ListConsumersRequest(page_size=n)),
    ),
    Limit("retention age", "policy.max_age", 100 * YEAR, 100 * YEAR + 1, retention),
]

# -- workflow --------------------------------------------------------------------------------------


def source_of(size: int) -> str:
    """ONE_TASK padded with a YAML comment to exactly `size` bytes."""
    return ONE_TASK + "#" + "x" * (size - len(ONE_TASK) - 2) + "\n"


async def start(stubs: Stubs, **request: Any) -> Any:
    await stubs.process()
    return await stubs.workflow.StartProcess(
        workflow_pb2.StartProcessRequest(definition="one_task", **request)
    )


async def signal(stubs: Stubs, **request: Any) -> Any:
    fields = {"name": "go", **request}
    return await stubs.workflow.SignalProcess(
        workflow_pb2.SignalProcessRequest(process_id=await stubs.process(), **fields)
    )


async def cancel(stubs: Stubs, reason: str) -> Any:
    process_id = await stubs.process()
    return await stubs.workflow.CancelProcess(
        workflow_pb2.CancelProcessRequest(process_id=process_id, reason=reason)
    )


async def complete(stubs: Stubs, **request: Any) -> Any:
    return await stubs.workflow.CompleteTask(
        workflow_pb2.CompleteTaskRequest(task_token=await stubs.task_token(), **request)
    )


async def fail(stubs: Stubs, **request: Any) -> Any:
    fields = {"error_code": "E", **request}
    return await stubs.workflow.FailTask(
        workflow_pb2.FailTaskRequest(task_token=await stubs.task_token(), **fields)
    )


async def heartbeat(stubs: Stubs, details: struct_pb2.Struct) -> Any:
    event = workflow_pb2.TaskEvent(
        task_token=await stubs.task_token(), heartbeat=workflow_pb2.TaskHeartbeat(details=details)
    )
    answer = await stubs.workflow.ReportTaskEvents(
        iter([workflow_pb2.ReportTaskEventsRequest(events=[event])])
    )
    if answer.invalid:
        return InBand([v.field for v in answer.violations])
    assert answer.accepted == 1
    return answer


async def report_frame(stubs: Stubs, count: int) -> Any:
    """One ReportTaskEvents frame of `count` started events."""
    event = workflow_pb2.TaskEvent(task_token=await stubs.task_token(), started=workflow_pb2.TaskStarted())
    frame = workflow_pb2.ReportTaskEventsRequest(events=[event] * count)
    answer = await stubs.workflow.ReportTaskEvents(iter([frame]))
    return InBand([v.field for v in answer.violations]) if answer.invalid else answer


async def report_batch(stubs: Stubs, count: int) -> Any:
    """One ReportTaskEventBatches request of `count` started events."""
    event = workflow_pb2.TaskEvent(task_token=await stubs.task_token(), started=workflow_pb2.TaskStarted())
    request = workflow_pb2.ReportTaskEventBatchesRequest(batch_id=1, events=[event] * count)
    stream = stubs.workflow.ReportTaskEventBatches(iter([request]))
    async with asyncio.timeout(10):
        answers = [answer async for answer in stream]
    if any(answer.violations for answer in answers):
        return InBand([v.field for answer in answers for v in answer.violations])
    return answers


async def subscribe_tasks(stubs: Stubs, **request: Any) -> Any:
    await stubs.registry.Register(
        registry_pb2.RegisterRequest(
            instance=registry_pb2.ServiceInstance(service="Worker", instance_id="w-2", address="127.0.0.1:9")
        )
    )
    fields = {"service": "Worker", "instance_id": "w-2", **request}
    return await first(stubs.workflow.SubscribeTasks(workflow_pb2.SubscribeTasksRequest(**fields)))


async def history(stubs: Stubs, size: int) -> Any:
    process_id = await stubs.process()
    return await stubs.workflow.GetHistory(
        workflow_pb2.GetHistoryRequest(process_id=process_id, page_size=size)
    )


def outbox(n: int) -> list[bus_pb2.BusMessage]:
    return [bus_pb2.BusMessage(subject="orders.eu", data=b"x")] * n


WORKFLOW = [
    Limit(
        "definition source",
        "source",
        MIB,
        MIB + 1,
        lambda s, n: s.workflow.RegisterDefinition(
            workflow_pb2.RegisterDefinitionRequest(source=source_of(n))
        ),
    ),
    Limit("business key", "business_key", 256, 257, lambda s, n: start(s, business_key="k" * n)),
    Limit("process input", "input", MIB, MIB + 1, lambda s, n: start(s, input=json_of(n))),
    Limit("signal name", "name", 128, 129, lambda s, n: signal(s, name="n" * n)),
    Limit("signal id", "signal_id", 128, 129, lambda s, n: signal(s, signal_id="i" * n)),
    Limit("signal payload", "payload", MIB, MIB + 1, lambda s, n: signal(s, payload=json_of(n))),
    Limit("cancel reason", "reason", 1024, 1025, lambda s, n: cancel(s, "r" * n)),
    Limit("task output", "output", MIB, MIB + 1, lambda s, n: complete(s, output=json_of(n))),
    Limit("outbox", "outbox", 100, 101, lambda s, n: complete(s, outbox=outbox(n))),
    Limit("failure details", "details", 64 * KIB, 64 * KIB + 1, lambda s, n: fail(s, details=json_of(n))),
    Limit("error code", "error_code", 128, 129, lambda s, n: fail(s, error_code="E" * n)),
    Limit("error message", "message", 4096, 4097, lambda s, n: fail(s, message="m" * n)),
    Limit(
        "heartbeat details",
        "events[0].details",
        64 * KIB,
        64 * KIB + 1,
        lambda s, n: heartbeat(s, json_of(n)),
    ),
    Limit("events per frame", "events", 1000, 1001, report_frame),
    Limit("events per batch", "events", 1000, 1001, report_batch),
    Limit(
        "task types",
        "task_types",
        256,
        257,
        lambda s, n: subscribe_tasks(s, task_types=[f"t{i}" for i in range(n)]),
    ),
    Limit(
        "tasks in flight", "max_in_flight", 10_000, 10_001, lambda s, n: subscribe_tasks(s, max_in_flight=n)
    ),
    Limit(
        "definitions page",
        "page_size",
        1000,
        1001,
        lambda s, n: s.workflow.ListDefinitions(workflow_pb2.ListDefinitionsRequest(page_size=n)),
    ),
    Limit(
        "processes page",
        "page_size",
        1000,
        1001,
        lambda s, n: s.workflow.ListProcesses(workflow_pb2.ListProcessesRequest(page_size=n)),
    ),
    Limit("history page", "page_size", 1000, 1001, history),
]

LIMITS = REGISTRY + BUS + WORKFLOW


@pytest.fixture
async def stubs(server: App) -> AsyncIterator[Stubs]:
    async with grpc.aio.insecure_channel(server.address) as channel:
        s = Stubs.on(channel)
        yield s
        s.close()


async def outcome(call: Awaitable[Any]) -> tuple[grpc.StatusCode, list[str]]:
    """How a call ended: its code and the fields it named (OK and none when accepted)."""
    try:
        answer = await call
    except grpc.aio.AioRpcError as error:
        return error.code(), violations(error)
    if isinstance(answer, InBand):
        return grpc.StatusCode.INVALID_ARGUMENT, answer.fields
    return grpc.StatusCode.OK, []


@pytest.mark.parametrize("limit", LIMITS, ids=[limit.name for limit in LIMITS])
async def test_documented_size_limits_enforced_at_limit_and_limit_plus_one(
    stubs: Stubs, limit: Limit
) -> None:
    at_limit = await outcome(limit.call(stubs, limit.at))
    past_limit = await outcome(limit.call(stubs, limit.past))

    assert at_limit == (grpc.StatusCode.OK, [])
    if limit.code == grpc.StatusCode.INVALID_ARGUMENT:
        assert past_limit == (limit.code, [limit.field])
    else:
        assert past_limit[0] == limit.code
