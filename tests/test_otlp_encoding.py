"""The control plane's OTLP encoder writes exactly the request the OpenTelemetry SDK's encoder builds.

Spans are made by the real SDK (live spans through a Tracer, finished ones through FinishedSpans),
with every kind of attribute value, events, links, statuses, trace states, remote and local
parents, two resources and two scopes; the bytes are parsed back and compared with `encode_spans`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from control_plane.observability.otlp_encoding import (
    EncodingBatchSpanProcessor,
    OTLPSpanExporter,
    SpanEncoder,
)
from control_plane.observability.tracing import FinishedSpans, as_parent, parse_traceparent


class _Kept(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def _provider(service: str, kept: _Kept, schema_url: str = "") -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}, schema_url=schema_url))
    provider.add_span_processor(SimpleSpanProcessor(kept))
    return provider


def _assert_same_request(spans: Sequence[ReadableSpan]) -> None:
    ours = ExportTraceServiceRequest.FromString(SpanEncoder().request(spans))
    assert ours == encode_spans(spans)


def test_every_shape_of_span_encodes_as_the_sdk_encodes_it() -> None:
    kept = _Kept()
    first, second = _provider("one", kept), _provider("two", kept, schema_url="https://example/1.0")
    remote = SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, True, TraceFlags(1))
    stated = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True, TraceFlags(1), TraceState([("k", "v")])
    )
    tracer = first.get_tracer("hms-mgmt")
    other = first.get_tracer("other", "1.2.3", schema_url="https://example/scope")
    values: dict[str, Any] = {
        "s": "text",
        "empty": "",
        "t": True,
        "f": False,
        "zero": 0,
        "n": 42,
        "big": 2**62,
        "negative": -7,
        "x": 1.5,
        "nan_free": -0.0,
        "strings": ("a", "b"),
        "ints": (1, -2, 300),
        "floats": (0.5,),
        "bools": (True, False),
        "unicode": "é漢",
    }
    with tracer.start_as_current_span("root", kind=SpanKind.SERVER, attributes=values) as root:
        root.add_event("happened", {"why": "because", "n": 3})
        root.add_event("bare")
        with tracer.start_as_current_span(
            "child",
            links=[Link(remote, {"messaging.message.id": "9"}), Link(stated)],
            kind=SpanKind.CONSUMER,
        ) as child:
            child.set_status(Status(StatusCode.ERROR, "it broke"))
    with other.start_as_current_span("remote child", context=as_parent(remote), kind=SpanKind.PRODUCER):
        pass
    with other.start_as_current_span("stated", context=as_parent(stated)) as ok:
        ok.set_status(Status(StatusCode.OK))
    second.get_tracer("hms-mgmt").start_span("elsewhere", kind=SpanKind.CLIENT).end()
    finished = FinishedSpans(first, [SimpleSpanProcessor(kept)], "hms-mgmt")
    parent = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    assert parent is not None
    finished.record(
        "step s1",
        SpanContext(parent.trace_id, 0x1234, False, parent.trace_flags),
        parent,
        1_000,
        2_000,
        {"mgmt.process_id": "p-1", "mgmt.attempts": 1},
        status=Status(StatusCode.ERROR, "failed"),
    )
    # Interleaved resources and scopes: grouped as the SDK groups them, in first-seen order.
    spans = kept.spans[::-1] + kept.spans
    assert len({id(s.resource) for s in spans}) == 2
    _assert_same_request(spans)
    _assert_same_request([])


_values = st.one_of(
    st.text(max_size=20),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.lists(st.text(max_size=5), max_size=3).map(tuple),
    st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=3).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.dictionaries(st.text(min_size=1, max_size=10), _values, max_size=6), min_size=1, max_size=4)
)
def test_any_attributes_encode_as_the_sdk_encodes_them(attribute_sets: list[dict[str, Any]]) -> None:
    kept = _Kept()
    tracer = _provider("svc", kept).get_tracer("hms-mgmt")
    encoder = SpanEncoder()  # one encoder throughout: its remembered attributes must not leak between spans
    for attributes in attribute_sets:
        tracer.start_span("span", attributes=attributes).end()
        ours = ExportTraceServiceRequest.FromString(encoder.request(kept.spans))
        assert ours == encode_spans(kept.spans)


def test_the_exporter_hands_grpc_the_sdk_request_and_falls_back_on_values_it_does_not_write() -> None:
    kept = _Kept()
    tracer = _provider("svc", kept).get_tracer("hms-mgmt")
    tracer.start_span("plain", attributes={"a": "b"}).end()
    exporter = OTLPSpanExporter(endpoint="http://127.0.0.1:9", insecure=True)
    try:
        assert exporter._translate_data(kept.spans) == encode_spans(kept.spans)
        # Attributes OpenTelemetry does not allow (an int past 64 bits) go through the SDK's encoder.
        odd = ReadableSpan("odd", kept.spans[0].context, attributes={"huge": 2**70})
        assert exporter._translate_data([odd]) is not None
    finally:
        exporter.shutdown()


class _Translated(OTLPSpanExporter):
    """Our exporter, keeping the requests it would send instead of sending them."""

    def __init__(self) -> None:
        super().__init__(endpoint="http://127.0.0.1:9", insecure=True)
        self.requests: list[ExportTraceServiceRequest] = []

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        self.requests.append(self._translate_data(spans))
        return SpanExportResult.SUCCESS


def test_finished_spans_written_once_export_as_the_sdk_encodes_them() -> None:
    kept, translated = _Kept(), _Translated()
    provider = _provider("mgmt", kept)
    encoding = EncodingBatchSpanProcessor(translated)
    assert isinstance(encoding, BatchSpanProcessor)
    # Beside it a processor of ReadableSpans (what a console exporter would get): the same spans.
    processors = [encoding, SimpleSpanProcessor(kept)]
    workflow, bus = (
        FinishedSpans(provider, processors, "hms-mgmt"),
        FinishedSpans(provider, processors, "bus"),
    )
    parent = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    assert parent is not None
    try:
        server, sampled = workflow.server_span("hms.mgmt.v1.Workflow/StartProcess", None)
        assert sampled and server.trace_flags.sampled and server.trace_id != parent.trace_id
        # Spans recorded in held() (the spans of one transition) are queued together when it ends.
        with workflow.held():
            workflow.record(
                "hms.mgmt.v1.Workflow/StartProcess",
                server,
                None,
                5,
                9,
                {"rpc.system": "grpc", "rpc.grpc.status_code": 0},
                kind=SpanKind.SERVER,
            )
            workflow.record(
                "step s1",
                SpanContext(parent.trace_id, 0x1234, False, parent.trace_flags),
                parent,
                1_000,
                2_000,
                {"mgmt.process_id": "p-1", "mgmt.attempts": 1, "mgmt.retry": False, "x": 0.5},
                status=Status(StatusCode.ERROR, "failed"),
                kind=SpanKind.PRODUCER,
            )
            encoding.force_flush()
            assert translated.requests == []
        bus.record(
            "deliver a.>",
            SpanContext(parent.trace_id, 0x99, False, parent.trace_flags),
            parent,
            3,
            3,
            {"messaging.system": "hms-mgmt"},
            kind=SpanKind.CONSUMER,
            links=[Link(parent, {"messaging.message.id": "7"})],
        )
        unsampled = SpanContext(parent.trace_id, 0x77, False, TraceFlags(0))
        workflow.record("not sampled", unsampled, parent, 1, 2, {})
        encoding.force_flush()
        assert len(kept.spans) == 3 and len(translated.requests) == 1  # the unsampled one neither
        assert translated.requests[0] == encode_spans(kept.spans)
    finally:
        encoding.shutdown()  # type: ignore[no-untyped-call]
