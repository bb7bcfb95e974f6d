"""Tracing over OTLP: the permit scenario as one trace per process, across services and a restart.

The processes under test export with the standard OTEL_* variables to an in-test OTLP receiver
(the collector's TraceService over gRPC, tests/otlp_support.py).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased
from opentelemetry.trace import get_current_span

from control_plane.observability.tracing import PROPAGATOR, FinishedSpans, parse_traceparent, wanted
from hms.mgmt.v1 import bus_pb2, bus_pb2_grpc, workflow_pb2_grpc
from hms.mgmt.v1 import workflow_pb2 as pb
from hms_mgmt import Client, ProcessState
from services.permit.demo import node_installed
from tests.conftest import ServerProcess
from tests.otlp_support import ReceivedSpan, otel_env, otlp_receiver

# The permit scenario with every Python task's first attempt failing (so each is retried exactly
# once), tracing configured from the environment as `python -m services.permit.demo` does.
PERMIT_CHILD = """
import asyncio
from control_plane.observability import tracing
from services.permit.demo import run_demo
from services.permit.runtime import Faults

assert tracing.configure("permit-demo")
try:
    asyncio.run(run_demo(lambda line: print(line, flush=True), faults=Faults(first_attempts=True)))
finally:
    tracing.shutdown()
"""
PYTHON_SERVICES = {"DocumentService", "PaymentService", "InspectionService"}
START = "hms.mgmt.v1.Workflow/StartProcess"


def test_tracing_is_off_unless_the_otel_variables_ask() -> None:
    assert not wanted({})
    assert not wanted({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"})
    assert wanted({"OTEL_TRACES_EXPORTER": "otlp"})
    assert wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"})
    assert wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"})
    assert not wanted({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"})
    assert not wanted({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"})


@pytest.mark.parametrize(
    "value",
    [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case: not W3C
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # invalid trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # invalid span id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # version 00 has no more
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future",  # a later version may
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473_-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        "garbage",
    ],
)
def test_a_traceparent_reads_as_opentelemetrys_propagator_reads_it(value: str) -> None:
    expected = get_current_span(PROPAGATOR.extract({"traceparent": value})).get_span_context()
    assert parse_traceparent(value) == (expected if expected.is_valid else None)


def test_finished_spans_follow_the_configured_sampler() -> None:
    def sampled(provider: TracerProvider, trace_id: int) -> bool:
        root = parse_traceparent(f"00-{trace_id:032x}-00f067aa0ba902b7-01")
        assert root is not None
        return FinishedSpans(provider, [], "hms-mgmt").sampled(root)

    assert sampled(TracerProvider(), 5)  # parent-based, always on: the sampled caller's choice
    assert not sampled(TracerProvider(sampler=ALWAYS_OFF), 5)
    half = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.5)))
    assert sampled(half, 5)  # a sampled remote parent decides under the parent-based sampler
    ratio = TracerProvider(sampler=TraceIdRatioBased(0.5))
    assert sampled(ratio, 1) and not sampled(ratio, (1 << 128) - 1)


def _index(spans: list[ReceivedSpan]) -> dict[tuple[str, str], ReceivedSpan]:
    return {(s.trace_id, s.span_id): s for s in spans}


def _parent(index: dict[tuple[str, str], ReceivedSpan], span: ReceivedSpan) -> ReceivedSpan:
    parent = index.get((span.trace_id, span.parent_span_id))
    assert parent is not None, f"{span.name} ({span.service}/{span.scope}) has no parent among the spans"
    return parent


def _of_process(spans: list[ReceivedSpan], process_id: str) -> Iterator[ReceivedSpan]:
    return (s for s in spans if s.attributes.get("mgmt.process_id") == process_id)


async def test_the_permit_scenario_is_one_trace_per_process_across_every_service() -> None:
    if not (shutil.which("node") and node_installed()):
        pytest.skip("node or services/notification/node_modules is missing: no Node service to trace")
    async with otlp_receiver() as receiver:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            PERMIT_CHILD,
            env={**os.environ, **otel_env(receiver), "PYTHONUNBUFFERED": "1"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        async with asyncio.timeout(150):
            output, _ = await child.communicate()
        assert child.returncode == 0, output.decode(errors="replace")
        # Each exporter flushed before its process exited; the Node service's too, before the demo's.
        spans = list(receiver.spans)

    index = _index(spans)
    processes = [s for s in spans if s.name == "process building_permit"]
    assert sorted(s.attributes["mgmt.state"] for s in processes) == ["compensated", "completed", "failed"]
    traces = {s.attributes["mgmt.process_id"]: s.trace_id for s in processes}
    assert len(set(traces.values())) == 3, "each process has a trace of its own"
    for process_id, trace_id in traces.items():
        assert {s.trace_id for s in _of_process(spans, process_id)} == {trace_id}
    for process in processes:
        # The StartProcess call (a new root: the demo's client sent no traceparent) is the process's parent.
        start = _parent(index, process)
        assert start.name == START and start.parent_span_id == ""
        assert start.service == "permit-demo"

    # Spans from the control plane, the three Python services and the Node service.
    assert {s.name for s in spans if s.scope == "hms-mgmt"} >= {START, "step validate", "task charge"}
    workers = [s for s in spans if "mgmt.worker.service" in s.attributes]
    assert {s.attributes["mgmt.worker.service"] for s in workers if s.scope == "hms-mgmt.sdk.worker"} == (
        PYTHON_SERVICES
    )
    node = [s for s in workers if s.service == "NotificationService"]
    assert node and all(s.name == "NotificationService sendDecision" for s in node)

    # Each worker span is the child of its attempt's span, itself the child of its step (or of the
    # step's compensation), itself the child of the process.
    for worker in workers:
        step_id, compensation = worker.attributes["mgmt.step_id"], worker.attributes["mgmt.compensation"]
        attempt = _parent(index, worker)
        assert attempt.name == (f"compensation task {step_id}" if compensation else f"task {step_id}")
        assert attempt.attributes["mgmt.attempt"] == worker.attributes["mgmt.attempt"]
        assert attempt.error == worker.error
        step = _parent(index, attempt)
        assert step.name == (f"compensate {step_id}" if compensation else f"step {step_id}")
        assert _parent(index, step).name == "process building_permit"

    # Retries: every first attempt of a Python task failed, and its retry is a span of its own.
    python_attempts = [
        _parent(index, w) for w in workers if w.attributes["mgmt.worker.service"] in PYTHON_SERVICES
    ]
    first = [a for a in python_attempts if a.attributes["mgmt.attempt"] == 1]
    assert first and all(a.error and a.attributes["mgmt.error_code"] == "TRANSIENT" for a in first)
    retries = [a for a in python_attempts if a.attributes["mgmt.retry"]]
    assert {a.attributes["mgmt.step_id"] for a in retries} >= {"validate", "charge", "assign", "schedule"}
    assert any(s.name == "backoff charge" for s in spans)

    # The refunded application: the failed schedule step, then the fee refunded by a compensation.
    refunded = next(s for s in processes if s.attributes["mgmt.state"] == "compensated")
    mine = list(_of_process(spans, refunded.attributes["mgmt.process_id"]))
    assert any(s.name == "step schedule" and s.error for s in mine)
    assert any(s.name == "compensate charge" and not s.error for s in mine)
    refund = [s for s in mine if s.name == "PaymentService refundFee"]
    assert sorted(s.attributes["mgmt.attempt"] for s in refund) == [1, 2]
    # The approved one received the inspector's signal while waiting.
    approved = next(s for s in processes if s.attributes["mgmt.state"] == "completed")
    assert any(
        s.name == "signal inspection_result"
        for s in _of_process(spans, approved.attributes["mgmt.process_id"])
    )


WAITING = """
name: traced_waiting
steps:
  - id: wait
    wait_signal: {name: go}
  - id: nap
    sleep: 10ms
"""
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


async def test_a_process_across_a_restart_is_still_one_trace_continuing_its_caller(
    server_process: Callable[..., Awaitable[ServerProcess]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with otlp_receiver() as receiver:
        for key, value in otel_env(receiver).items():
            monkeypatch.setenv(key, value)
        first = await server_process(data_dir=tmp_path / "data")
        async with Client(first.address) as client:
            await client.workflow.apply(WAITING)
            # A caller in a trace of its own: its traceparent rides in the call's metadata.
            stub = workflow_pb2_grpc.WorkflowStub(client.channel)
            started = await stub.StartProcess(
                pb.StartProcessRequest(definition="traced_waiting"),
                metadata=(("traceparent", f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"),),
            )
            process_id = started.process.id
        assert await first.stop() == 0

        second = await server_process(data_dir=tmp_path / "data")
        async with Client(second.address) as client:
            await client.workflow.signal(process_id, "go", {"ok": True})
            ended = await asyncio.wait_for(client.workflow.wait(process_id), 30)
            assert ended.state == ProcessState.COMPLETED
        assert await second.stop() == 0
        spans = list(receiver.spans)

    index = _index(spans)
    start = next(s for s in spans if s.name == START)
    assert (start.trace_id, start.parent_span_id) == (CALLER_TRACE, CALLER_SPAN)
    mine = list(_of_process(spans, process_id))
    assert {s.name for s in mine} >= {"process traced_waiting", "step wait", "signal go", "step nap"}
    # Emitted by the second control plane, all in the trace the first one's StartProcess call began.
    assert {s.trace_id for s in mine} == {CALLER_TRACE}
    process = next(s for s in mine if s.name == "process traced_waiting")
    assert _parent(index, process) == start
    for name in ("step wait", "step nap"):
        step = next(s for s in mine if s.name == name)
        assert _parent(index, step) == process
    wait = next(s for s in mine if s.name == "step wait")
    assert wait.start_ns < start.end_ns + 10**9 and wait.end_ns > wait.start_ns


# An application that traces: its SDK calls carry its current span as traceparent metadata.
CALLER_CHILD = """
import asyncio, sys
from opentelemetry import trace
from control_plane.observability import tracing
from hms_mgmt import Client, ProcessState

assert tracing.configure("caller")

async def main() -> None:
    with trace.get_tracer("caller").start_as_current_span("caller") as span:
        async with Client(sys.argv[1]) as client:
            await client.workflow.apply(sys.argv[2])
            process = await client.workflow.start("traced_waiting", {})
    context = span.get_span_context()
    print(process.id, format(context.trace_id, "032x"), format(context.span_id, "016x"))

try:
    asyncio.run(main())
finally:
    tracing.shutdown()
"""


async def test_the_python_sdk_sends_the_callers_span_with_its_calls(
    server_process: Callable[..., Awaitable[ServerProcess]], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with otlp_receiver() as receiver:
        for key, value in otel_env(receiver).items():
            monkeypatch.setenv(key, value)
        server = await server_process()
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CALLER_CHILD, server.address, WAITING, stdout=asyncio.subprocess.PIPE
        )
        async with asyncio.timeout(60):
            output, _ = await child.communicate()
        assert child.returncode == 0
        process_id, trace_id, span_id = output.decode().split()
        await receiver.wait_for(lambda spans: any(s.name == START for s in spans))
        assert await server.stop() == 0
        spans = list(receiver.spans)

    start = next(s for s in spans if s.name == START)
    assert (start.trace_id, start.parent_span_id) == (trace_id, span_id)
    caller = next(s for s in spans if s.name == "caller")
    assert (caller.service, caller.trace_id, caller.span_id) == ("caller", trace_id, span_id)
    assert {s.trace_id for s in _of_process(spans, process_id)} <= {trace_id}


async def test_a_cancelled_process_ends_the_spans_of_the_steps_it_stopped(
    server_process: Callable[..., Awaitable[ServerProcess]], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with otlp_receiver() as receiver:
        for key, value in otel_env(receiver).items():
            monkeypatch.setenv(key, value)
        server = await server_process()
        async with Client(server.address) as client:
            await client.workflow.apply(WAITING)
            process = await client.workflow.start("traced_waiting", {})
            await client.workflow.cancel(process.id, "changed my mind")
        assert await server.stop() == 0
        spans = list(receiver.spans)

    mine = {s.name: s for s in _of_process(spans, process.id)}
    assert mine["process traced_waiting"].attributes["mgmt.state"] == "cancelled"
    assert mine["step wait"].attributes["mgmt.cancelled"] is True
    assert mine["step wait"].parent_span_id == mine["process traced_waiting"].span_id
    assert "step nap" not in mine


async def test_bus_messages_carry_the_publishers_trace_and_deliveries_link_to_it(
    server_process: Callable[..., Awaitable[ServerProcess]], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with otlp_receiver() as receiver:
        for key, value in otel_env(receiver).items():
            monkeypatch.setenv(key, value)
        server = await server_process()
        async with Client(server.address) as client:
            bus = bus_pb2_grpc.BusStub(client.channel)
            subscription = bus.Subscribe(bus_pb2.SubscribeRequest(pattern="orders.>"))
            ready = await subscription.read()
            assert isinstance(ready, bus_pb2.SubscribeResponse) and ready.HasField("ready")
            await bus.Publish(
                bus_pb2.PublishRequest(message=bus_pb2.BusMessage(subject="orders.created", data=b"{}")),
                metadata=(("traceparent", f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"),),
            )
            frame = await asyncio.wait_for(subscription.read(), 10)
            assert isinstance(frame, bus_pb2.SubscribeResponse)
            subscription.cancel()
        header = frame.deliveries[0].message.headers["traceparent"]
        assert await server.stop() == 0
        spans = list(receiver.spans)

    publish = next(s for s in spans if s.name == "hms.mgmt.v1.Bus/Publish")
    assert (publish.trace_id, publish.parent_span_id) == (CALLER_TRACE, CALLER_SPAN)
    # The message carries the publishing call's span; the delivery links to it (a link, not a parent).
    assert header == f"00-{CALLER_TRACE}-{publish.span_id}-01"
    delivered = [s for s in spans if s.name == "deliver orders.>"]
    assert [s.links for s in delivered] == [((CALLER_TRACE, publish.span_id),)]
    assert delivered[0].trace_id != CALLER_TRACE
