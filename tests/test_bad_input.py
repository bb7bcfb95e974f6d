"""Malformed requests get a clean status naming the field, and a refused request stores nothing."""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from control_plane import errors
from control_plane.server import App, running
from control_plane.settings import Settings
from hms.mgmt.v1 import bus_pb2, registry_pb2, workflow_pb2
from tests.wire_support import Stubs, delimited, error_info, nested_struct, raw, serving, violations

Refusal = tuple[grpc.StatusCode, list[str], str]


@pytest.fixture
async def stubs(server: App) -> AsyncIterator[Stubs]:
    async with grpc.aio.insecure_channel(server.address) as channel:
        s = Stubs.on(channel)
        yield s
        s.close()


async def refusal(call: Awaitable[Any]) -> Refusal:
    """The status code, BadRequest fields and message of a call that must fail."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code(), violations(caught.value), caught.value.details() or ""


def struct(**fields: Any) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    for key, value in fields.items():
        if isinstance(value, float):
            message.fields[key].number_value = value
        else:
            message.fields[key].string_value = value
    return message


# -- bytes that are not protobuf -----------------------------------------------------------------

GARBAGE = b"\xff\xff\xff\xff"  # a field tag that never ends


async def _one(stream: Any) -> Any:
    async for item in stream:
        return item
    return None


async def _garbage_stream() -> AsyncIterator[bytes]:
    yield GARBAGE


async def test_non_protobuf_bytes_get_invalid_argument(stubs: Stubs) -> None:
    channel = stubs.channel
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "unary": lambda: channel.unary_unary("/hms.mgmt.v1.Bus/Publish", raw, raw)(GARBAGE),
        "server stream": lambda: _one(channel.unary_stream("/hms.mgmt.v1.Bus/Subscribe", raw, raw)(GARBAGE)),
        "client stream": lambda: channel.stream_unary("/hms.mgmt.v1.Workflow/ReportTaskEvents", raw, raw)(
            _garbage_stream()
        ),
        "bidirectional": lambda: _one(
            channel.stream_stream("/hms.mgmt.v1.Registry/KeepAlive", raw, raw)(_garbage_stream())
        ),
        "health (not ours)": lambda: channel.unary_unary("/grpc.health.v1.Health/Check", raw, raw)(GARBAGE),
        "reflection (not ours)": lambda: _one(
            channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", raw, raw)(
                _garbage_stream()
            )
        ),
    }

    answers = {shape: (await refusal(call()))[0] for shape, call in calls.items()}

    assert answers == dict.fromkeys(calls, grpc.StatusCode.INVALID_ARGUMENT)
    assert await serving(channel)


async def test_invalid_utf8_string_is_refused_naming_the_field(stubs: Stubs) -> None:
    # StartProcessRequest.definition (field 1) as bytes that are not UTF-8.
    call = stubs.channel.unary_unary("/hms.mgmt.v1.Workflow/StartProcess", raw, raw)(
        delimited(1, b"\xff\xfe")
    )

    code, fields, _ = await refusal(call)

    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["definition"])


# -- JSON values (Struct) ------------------------------------------------------------------------


async def test_struct_nested_past_depth_limit_refused(stubs: Stubs) -> None:
    await stubs.process()  # registers one_task
    start = stubs.channel.unary_unary("/hms.mgmt.v1.Workflow/StartProcess", raw, raw)

    def request(depth: int) -> bytes:
        return delimited(1, b"one_task") + delimited(3, nested_struct(depth))

    past_protobuf = await refusal(start(request(60)))  # the parser itself gives up past 100 levels
    past_json = await refusal(start(request(21)))
    at_limit = await start(request(20))

    assert past_protobuf[:2] == (grpc.StatusCode.INVALID_ARGUMENT, [past_protobuf[1][0]])
    assert past_protobuf[1][0].startswith("input.a.a.a")
    assert past_json[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert past_json[1] == ["input" + ".a" * 20]
    assert workflow_pb2.StartProcessResponse.FromString(at_limit).process.id


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
async def test_nan_and_infinity_in_structs_refused(stubs: Stubs, bad: float) -> None:
    process_id = await stubs.process()
    token = await stubs.task_token()
    wf = stubs.workflow

    start = await refusal(
        wf.StartProcess(workflow_pb2.StartProcessRequest(definition="one_task", input=struct(total=bad)))
    )
    signal = await refusal(
        wf.SignalProcess(
            workflow_pb2.SignalProcessRequest(process_id=process_id, name="s", payload=struct(x=bad))
        )
    )
    complete = await refusal(
        wf.CompleteTask(workflow_pb2.CompleteTaskRequest(task_token=token, output=struct(x=bad)))
    )
    fail = await refusal(
        wf.FailTask(workflow_pb2.FailTaskRequest(task_token=token, error_code="E", details=struct(x=bad)))
    )
    heartbeat = workflow_pb2.TaskEvent(
        task_token=token, heartbeat=workflow_pb2.TaskHeartbeat(details=struct(x=bad))
    )
    reported = await wf.ReportTaskEvents(iter([workflow_pb2.ReportTaskEventsRequest(events=[heartbeat])]))
    history = await wf.GetHistory(workflow_pb2.GetHistoryRequest(process_id=process_id))

    invalid = grpc.StatusCode.INVALID_ARGUMENT
    assert start[:2] == (invalid, ["input.total"])
    assert signal[:2] == (invalid, ["payload.x"])
    assert complete[:2] == (invalid, ["output.x"])
    assert fail[:2] == (invalid, ["details.x"])
    # Counted as refused, not silently dropped.
    assert (reported.accepted, reported.invalid) == (0, 1)
    assert [v.field for v in reported.violations] == ["events[0].details.x"]
    assert [e.type for e in history.events][-1] == workflow_pb2.HISTORY_EVENT_TYPE_TASK_SCHEDULED


# -- timestamps, durations, page tokens ----------------------------------------------------------


@pytest.mark.parametrize(
    "stamp",
    [
        timestamp_pb2.Timestamp(seconds=10**15),
        timestamp_pb2.Timestamp(seconds=-(10**12)),
        timestamp_pb2.Timestamp(nanos=-1),
    ],
    ids=["after year 9999", "before year 1", "negative nanos"],
)
async def test_timestamp_out_of_range_refused(stubs: Stubs, stamp: timestamp_pb2.Timestamp) -> None:
    request = bus_pb2.SubscribeRequest(
        pattern="orders.>", start=bus_pb2.START_POSITION_FROM_TIME, start_time=stamp
    )

    code, fields, _ = await refusal(_one(stubs.bus.Subscribe(request)))

    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["start_time"])


def _token(text: str) -> str:
    """A page token carrying `text` (the JSON array [listing, *position]), forged by hand."""
    return base64.urlsafe_b64encode(text.encode()).decode()


async def test_page_token_beyond_64_bits_refused(stubs: Stubs) -> None:
    process_id = await stubs.process()
    wf = stubs.workflow

    answers = [
        await refusal(
            wf.GetHistory(
                workflow_pb2.GetHistoryRequest(
                    process_id=process_id, page_token=_token(f'["history",{2**64}]')
                )
            )
        ),
        await refusal(
            wf.GetHistory(
                workflow_pb2.GetHistoryRequest(
                    process_id=process_id, page_token=_token(f'["history",{2**63}]')
                )
            )
        ),
        await refusal(
            wf.ListProcesses(workflow_pb2.ListProcessesRequest(page_token=_token('["processes",1e999,"x"]')))
        ),
        await refusal(
            wf.ListProcesses(workflow_pb2.ListProcessesRequest(page_token=_token('["processes",NaN,"x"]')))
        ),
    ]
    last_valid = await wf.GetHistory(
        workflow_pb2.GetHistoryRequest(process_id=process_id, page_token=_token(f'["history",{2**63 - 1}]'))
    )

    assert [a[:2] for a in answers] == [(grpc.StatusCode.INVALID_ARGUMENT, ["page_token"])] * 4
    assert list(last_valid.events) == []


TOO_LONG = duration_pb2.Duration(seconds=10**12)  # past a Duration's ±10,000 years
MIXED_SIGNS = duration_pb2.Duration(seconds=5, nanos=-1)


@pytest.mark.parametrize("bad", [TOO_LONG, MIXED_SIGNS], ids=["too long", "mixed signs"])
async def test_duration_too_large_refused(stubs: Stubs, bad: duration_pb2.Duration) -> None:
    instance = registry_pb2.ServiceInstance(service="svc", address="127.0.0.1:1")
    probed = registry_pb2.ServiceInstance(
        service="svc", address="127.0.0.1:1", probe=registry_pb2.HealthProbe(interval=bad)
    )
    calls: list[tuple[Awaitable[Any], str]] = [
        (stubs.registry.Register(registry_pb2.RegisterRequest(instance=instance, ttl=bad)), "ttl"),
        (stubs.registry.Register(registry_pb2.RegisterRequest(instance=probed)), "instance.probe.interval"),
        (_one(stubs.bus.Subscribe(bus_pb2.SubscribeRequest(pattern="a", ack_wait=bad))), "ack_wait"),
        (_one(stubs.bus.Subscribe(bus_pb2.SubscribeRequest(pattern="a", backoff=[bad]))), "backoff[0]"),
        (
            stubs.bus.Ack(bus_pb2.AckRequest(items=[bus_pb2.AckItem(delivery_id="d", delay=bad)])),
            "items[0].delay",
        ),
        (stubs.bus.Nack(bus_pb2.NackRequest(delivery_ids=["d"], delay=bad)), "delay"),
        (
            stubs.bus.SetRetention(
                bus_pb2.SetRetentionRequest(policy=bus_pb2.RetentionPolicy(subject_prefix="a", max_age=bad))
            ),
            "policy.max_age",
        ),
    ]

    for call, field in calls:
        code, fields, _ = await refusal(call)
        assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, [field])
    assert await serving(stubs.channel)


# -- a refused request stores nothing ------------------------------------------------------------


async def _retention_state(
    stubs: Stubs,
) -> tuple[bus_pb2.ListRetentionResponse, bus_pb2.ListSubjectsResponse]:
    return (
        await stubs.bus.ListRetention(bus_pb2.ListRetentionRequest()),
        await stubs.bus.ListSubjects(bus_pb2.ListSubjectsRequest()),
    )


@pytest.mark.parametrize(
    "max_age",
    [TOO_LONG, duration_pb2.Duration(seconds=315_576_000_000, nanos=999_999_999)],
    ids=["past a Duration", "the longest Duration"],
)
async def test_failed_set_retention_stores_nothing(
    settings: Settings, max_age: duration_pb2.Duration
) -> None:
    policy = bus_pb2.RetentionPolicy(subject_prefix="audit", max_age=max_age)
    async with running(settings) as app, grpc.aio.insecure_channel(app.address) as channel:
        stubs = Stubs.on(channel)
        await stubs.bus.Publish(
            bus_pb2.PublishRequest(message=bus_pb2.BusMessage(subject="audit.x", data=b"1"))
        )
        before = await _retention_state(stubs)
        code, fields, _ = await refusal(stubs.bus.SetRetention(bus_pb2.SetRetentionRequest(policy=policy)))
        after = await _retention_state(stubs)
    async with running(settings) as app, grpc.aio.insecure_channel(app.address) as channel:
        restarted = await _retention_state(Stubs.on(channel))

    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["policy.max_age"])
    assert after == before
    assert restarted == before


async def test_empty_set_retention_refused(stubs: Stubs) -> None:
    before = await stubs.bus.ListRetention(bus_pb2.ListRetentionRequest())

    code, fields, _ = await refusal(stubs.bus.SetRetention(bus_pb2.SetRetentionRequest()))
    after = await stubs.bus.ListRetention(bus_pb2.ListRetentionRequest())

    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["policy"])
    assert after == before
    assert before.policies[0].max_age.seconds == 7 * 86400  # the default still applies


async def test_unknown_enum_values_refused(stubs: Stubs) -> None:
    subscription = stubs.bus.Subscribe(
        bus_pb2.SubscribeRequest(
            pattern="orders.>", start=bus_pb2.START_POSITION_ALL, ack_mode=bus_pb2.ACK_MODE_EXPLICIT
        )
    )
    ready = await subscription.read()
    assert isinstance(ready, bus_pb2.SubscribeResponse)
    await stubs.bus.Publish(bus_pb2.PublishRequest(message=bus_pb2.BusMessage(subject="orders.1", data=b"1")))
    delivered = await subscription.read()
    assert isinstance(delivered, bus_pb2.SubscribeResponse)
    delivery_id = delivered.deliveries[0].delivery_id
    consumer = ready.ready.consumer.name

    ack = await refusal(
        stubs.bus.Ack(bus_pb2.AckRequest(items=[bus_pb2.AckItem(delivery_id=delivery_id, action=99)]))  # type: ignore[arg-type]
    )
    still = await stubs.bus.GetConsumerInfo(bus_pb2.GetConsumerInfoRequest(name=consumer))
    start = await refusal(_one(stubs.bus.Subscribe(bus_pb2.SubscribeRequest(pattern="a", start=9))))  # type: ignore[arg-type]
    mode = await refusal(_one(stubs.bus.Subscribe(bus_pb2.SubscribeRequest(pattern="a", ack_mode=7))))  # type: ignore[arg-type]
    states = await refusal(
        stubs.workflow.ListProcesses(
            workflow_pb2.ListProcessesRequest(states=[workflow_pb2.PROCESS_STATE_RUNNING, 42])  # type: ignore[list-item]
        )
    )
    unspecified = await refusal(
        stubs.workflow.ListProcesses(
            workflow_pb2.ListProcessesRequest(states=[workflow_pb2.PROCESS_STATE_UNSPECIFIED])
        )
    )
    subscription.cancel()

    invalid = grpc.StatusCode.INVALID_ARGUMENT
    assert ack[:2] == (invalid, ["items[0].action"])
    assert still.consumer.num_ack_pending == 1  # not acked
    assert start[:2] == (invalid, ["start"])
    assert mode[:2] == (invalid, ["ack_mode"])
    assert states[:2] == (invalid, ["states[1]"])
    assert unspecified[:2] == (invalid, ["states[0]"])


async def test_non_ascii_text_in_ids_refused_cleanly(stubs: Stubs) -> None:
    # Found by the property test: hmac.compare_digest raises TypeError on non-ASCII text, and
    # "²".isdigit() is true while int("²") raises: both answered INTERNAL.
    token = (await stubs.task_token()).rpartition(".")[0] + ".é"
    address = registry_pb2.ServiceInstance(service="svc", address="127.0.0.1:²")

    complete = await refusal(stubs.workflow.CompleteTask(workflow_pb2.CompleteTaskRequest(task_token=token)))
    acks = [
        await refusal(stubs.bus.Ack(bus_pb2.AckRequest(items=[bus_pb2.AckItem(delivery_id=delivery_id)])))
        for delivery_id in ("consumer/1/1.é", "consumer/²/1.tag", "consumer/1/².tag")
    ]
    register = await refusal(stubs.registry.Register(registry_pb2.RegisterRequest(instance=address)))

    invalid = grpc.StatusCode.INVALID_ARGUMENT
    assert complete[:2] == (invalid, ["task_token"])
    assert [a[:2] for a in acks] == [(invalid, ["items[0].delivery_id"])] * 3
    assert register[:2] == (invalid, ["instance.address"])


# -- what errors quote ---------------------------------------------------------------------------


async def test_error_messages_quote_short_prefix(stubs: Stubs) -> None:
    long_id = "p" * 10_000
    long_address = "h" * 250 + ".example:x"

    with pytest.raises(grpc.aio.AioRpcError) as not_found:
        await stubs.workflow.GetProcess(workflow_pb2.GetProcessRequest(process_id=long_id))
    code, fields, message = await refusal(
        stubs.registry.Register(
            registry_pb2.RegisterRequest(
                instance=registry_pb2.ServiceInstance(service="svc", address=long_address)
            )
        )
    )

    assert not_found.value.code() == grpc.StatusCode.NOT_FOUND
    assert len(not_found.value.details() or "") < 200
    assert "(10000 characters)" in (not_found.value.details() or "")
    assert len(error_info(not_found.value).metadata["key"]) <= 128
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["instance.address"])
    assert len(message) < 200


async def test_unmapped_domain_error_answers_internal_not_unknown(
    server: App, stubs: Stubs, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> None:
        raise errors.ControlPlaneError("no status of its own")

    monkeypatch.setattr(server.bus, "retention", broken)

    with caplog.at_level(logging.ERROR):
        code, _, _ = await refusal(stubs.bus.ListRetention(bus_pb2.ListRetentionRequest()))

    assert code == grpc.StatusCode.INTERNAL
    assert "unexpected error in RPC" in caplog.text
    assert await serving(stubs.channel)
