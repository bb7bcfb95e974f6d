"""OTLP trace export requests written straight to protobuf wire bytes: what the SDK's encoder makes, for less CPU.

The OpenTelemetry SDK's encoder (opentelemetry-exporter-otlp-proto-common's `encode_spans`) builds
a protobuf object per span, attribute, value and link, and hashes the resource (a JSON dump) per
span. It runs on the batch processor's thread, which competes for the GIL with the event loop: with
every step of every process traced, it was a tenth of the control plane's CPU. This writes the
same `ExportTraceServiceRequest` (same fields, same grouping by resource and scope, same order) as
bytes, keeping the bytes of attributes seen lately (a process's id, definition and step names recur
in every span of the process). tests/test_otlp_encoding.py holds it to the SDK's output.

`OTLPSpanExporter` is the SDK's OTLP/gRPC exporter (its OTEL_EXPORTER_OTLP_* configuration, retries
and timeouts) with this encoder; a span this does not know how to write (an attribute of a type
outside OpenTelemetry's) goes through the SDK's encoder, which logs and skips what it cannot write.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, cast

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as SdkOTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode

from control_plane.observability.tracing import UNSET
from control_plane.protowire import SMALL, field, varint

_FIXED64 = struct.Struct("<Q").pack
_DOUBLE = struct.Struct("<d").pack
_FIXED32 = struct.Struct("<I").pack
# Span.flags: the parent's is-remote bit is known (always, from this SDK), and whether it is set.
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
_KINDS = {
    SpanKind.INTERNAL: 1,
    SpanKind.SERVER: 2,
    SpanKind.CLIENT: 3,
    SpanKind.PRODUCER: 4,
    SpanKind.CONSUMER: 5,
}
_CACHED_ATTRIBUTES = 16_384
_CACHED_NAMES = 4096
_CACHEABLE = frozenset({str, int, float, bool})
# The kind field by the SpanKind's id (an Enum hashes in Python), and the flags field by whether the
# parent is remote: constants of every span.
_KIND_FIELDS = {id(kind): b"\x30" + SMALL[number] for kind, number in _KINDS.items()}
_TIMES = struct.Struct("<BQBQ").pack
# A Span's span_id field, or its span_id and parent_span_id fields: each a two-byte tag (0x12 0x08,
# 0x22 0x08) and eight bytes, big-endian as the SDK writes ids.
_IDS = struct.Struct(">HQ").pack
_IDS_PARENT = struct.Struct(">HQHQ").pack
_UNSET_STATUS = b"\x7a\x00"
# A Link's trace_id (tag, 128 bits as two halves) and span_id fields.
_LINK_IDS = struct.Struct(">HQQHQ").pack
_LOW_64 = (1 << 64) - 1
_UNBOUNDED = frozenset({dict, tuple, list, MappingProxyType})
# Spans whose fields are read directly (the same values their properties return, without the calls).
_PLAIN_SPANS = frozenset({ReadableSpan, SdkSpan})


class _Unsupported(Exception):
    """A value this encoder does not write: the SDK's encoder takes the whole batch."""


def _value(value: Any) -> bytes:
    """An AnyValue's payload (the oneof member is written even when it holds its default)."""
    if isinstance(value, str):
        return field(b"\x0a", value.encode())
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        if not -(1 << 63) <= value < (1 << 63):
            raise _Unsupported(value)
        return b"\x18" + varint(value)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, bytes):
        return field(b"\x3a", value)
    if value is None:
        return b""
    if isinstance(value, Sequence):
        return field(b"\x2a", b"".join(field(b"\x0a", _value(item)) for item in value))
    if isinstance(value, Mapping):
        return field(b"\x32", b"".join(field(b"\x0a", _key_value(str(k), v)) for k, v in value.items()))
    raise _Unsupported(value)


def _key_value(key: str, value: Any) -> bytes:
    """A KeyValue's payload."""
    return field(b"\x0a", key.encode()) + field(b"\x12", _value(value))


class EncodedSpan:
    """Finished spans (one or a few, of one resource and scope) already written as ScopeSpans' `spans`
    fields, with what groups them in a request.

    What tracing.FinishedSpans hands a batch processor whose exporter is `OTLPSpanExporter`: each span
    is written once, in the thread that made it, and never exists as a ReadableSpan; the spans that
    one transition ends share one entry of the processor's queue. `context` (a sampled span's) is
    there for the batch processor, which reads its sampled flag.
    """

    __slots__ = ("context", "instrumentation_scope", "payload", "resource")

    def __init__(
        self, context: SpanContext, payload: bytes, resource: Resource, scope: InstrumentationScope
    ) -> None:
        self.context = context
        self.payload = payload
        self.resource = resource
        self.instrumentation_scope = scope


class SpanEncoder:
    """Writes export requests; remembers the encoded attributes it met lately (used from one thread)."""

    def __init__(self) -> None:
        self._attributes: dict[tuple[bytes, str, type, Any], bytes] = {}
        self._names: dict[str, bytes] = {}

    def request(self, spans: Sequence[ReadableSpan | EncodedSpan]) -> bytes:
        """An ExportTraceServiceRequest of `spans`, grouped by resource, then scope, as the SDK groups them.

        Raises _Unsupported for a span holding a value of a type OpenTelemetry does not allow.
        """
        # Resources and scopes by identity first (one comparison per distinct object, not a hash per
        # span), merged with an equal one met before, as the SDK's dict keyed by them would.
        resources: list[Resource] = []
        canonical: dict[int, int] = {}
        groups: dict[int, dict[int, list[bytes]]] = {}
        scopes: list[InstrumentationScope | None] = []
        canonical_scope: dict[int, int] = {}
        for span in spans:
            resource = span.resource
            r = canonical.get(id(resource))
            if r is None:
                r = next((i for i, known in enumerate(resources) if known == resource), len(resources))
                if r == len(resources):
                    resources.append(resource)
                canonical[id(resource)] = r
            scope = span.instrumentation_scope or None
            s = canonical_scope.get(id(scope))
            if s is None:
                s = next((i for i, known in enumerate(scopes) if known == scope), len(scopes))
                if s == len(scopes):
                    scopes.append(scope)
                canonical_scope[id(scope)] = s
            written = span.payload if isinstance(span, EncodedSpan) else field(b"\x12", self._span(span))
            groups.setdefault(r, {}).setdefault(s, []).append(written)
        out = []
        for r, by_scope in groups.items():
            resource = resources[r]
            body = [field(b"\x0a", self._attributes_of(resource.attributes, b"\x0a"))]
            for s, encoded in by_scope.items():
                scope = scopes[s]
                scope_spans = [field(b"\x0a", _scope(scope)), *encoded]
                if scope is not None and scope.schema_url:
                    scope_spans.append(field(b"\x1a", scope.schema_url.encode()))
                body.append(field(b"\x12", b"".join(scope_spans)))
            if resource.schema_url:
                body.append(field(b"\x1a", resource.schema_url.encode()))
            out.append(field(b"\x0a", b"".join(body)))
        return b"".join(out)

    def _span(self, span: ReadableSpan) -> bytes:
        if type(span) in _PLAIN_SPANS:
            # The SDK's own spans, read from their fields: its properties (and the ABC isinstance checks
            # behind each dropped_* count) cost more than the writing, once per span per field.
            context, parent, name, kind = span._context, span._parent, span._name, span._kind
            start, end, attributes, events = span._start_time, span._end_time, span._attributes, span._events
            links, status = span._links, span._status
        else:
            context, parent, name, kind = span.get_span_context(), span.parent, span.name, span.kind
            start, end, attributes, events = span.start_time, span.end_time, span.attributes, span.events
            links, status = span.links, span.status
        if context is None:
            raise _Unsupported(span)
        return self.span(
            context,
            parent,
            name,
            kind,
            start,
            end,
            attributes,
            events,
            links,
            status,
            _dropped(attributes),
            _dropped(events),
            _dropped(links),
        )

    def written(
        self,
        context: SpanContext,
        parent: SpanContext | None,
        name: str,
        kind: SpanKind,
        start: int,
        end: int,
        attributes: Mapping[str, Any] | None,
        links: Sequence[Link],
        status: Status,
    ) -> bytes | None:
        """A finished span written once as a ScopeSpans' `spans` field; None if it holds a value OTLP does
        not allow (the SDK's encoder then gets it as a ReadableSpan, and skips what it cannot write)."""
        if not links and not context.trace_state and start and end:
            return self.in_trace(
                self.trace_field(context.trace_id),
                context.span_id,
                None if parent is None else parent.span_id,
                parent is not None and parent.is_remote,
                name,
                kind,
                start,
                end,
                attributes,
                status,
            )
        try:
            return field(
                b"\x12", self.span(context, parent, name, kind, start, end, attributes, (), links, status)
            )
        except _Unsupported:
            return None

    @staticmethod
    def trace_field(trace_id: int) -> bytes:
        """A Span's `trace_id` field (what `in_trace` takes: a trace's spans can share it)."""
        return b"\x0a\x10" + trace_id.to_bytes(16, "big")

    def in_trace(
        self,
        trace: bytes,
        span_id: int,
        parent_id: int | None,
        remote_parent: bool,
        name: str,
        kind: SpanKind,
        start: int,
        end: int,
        attributes: Mapping[str, Any] | None,
        status: Status,
    ) -> bytes | None:
        """`written` for the common shape, from plain values: no trace state, events or links, start and
        end set. The span's context need not exist as an object (the workflow's spans, by derived id).

        One frame and one join per span: this runs for every span the control plane makes.
        """
        try:
            written_attributes = self._attributes_of(attributes, b"\x4a") if attributes else b""
        except _Unsupported:
            return None
        written_name = self._names.get(name)
        if written_name is None:
            if len(self._names) >= _CACHED_NAMES:
                self._names.clear()
            written_name = self._names[name] = field(b"\x2a", name.encode()) if name else b""
        body = b"".join(
            (
                trace,
                _IDS(0x1208, span_id)
                if parent_id is None
                else _IDS_PARENT(0x1208, span_id, 0x2208, parent_id),
                written_name,
                _KIND_FIELDS[id(kind)],
                _TIMES(0x39, start, 0x41, end),
                written_attributes,
                _UNSET_STATUS if status is UNSET else _status(status),
                _REMOTE_FLAGS if remote_parent else _LOCAL_FLAGS,
            )
        )
        return b"\x12" + varint(len(body)) + body

    def span(
        self,
        context: SpanContext,
        parent: SpanContext | None,
        name: str,
        kind: SpanKind,
        start: int | None,
        end: int | None,
        attributes: Mapping[str, Any] | None,
        events: Sequence[Event] = (),
        links: Sequence[Link] = (),
        status: Status | None = None,
        dropped_attributes: int = 0,
        dropped_events: int = 0,
        dropped_links: int = 0,
    ) -> bytes:
        """A Span message's payload from its fields (what `_span` reads off a ReadableSpan).

        Written for the shapes the control plane makes a few thousand times a second: the enums are
        looked up by identity (an Enum's hash and `.value` are Python calls) and names are remembered.
        """
        parts = [
            b"\x0a\x10"
            + context.trace_id.to_bytes(16, "big")
            + b"\x12\x08"
            + context.span_id.to_bytes(8, "big")
        ]
        if context.trace_state:
            parts.append(field(b"\x1a", _trace_state(context).encode()))
        if parent is not None:
            parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
        if name:
            written = self._names.get(name)
            if written is None:
                if len(self._names) >= _CACHED_NAMES:
                    self._names.clear()
                written = self._names[name] = field(b"\x2a", name.encode())
            parts.append(written)
        parts.append(_KIND_FIELDS[id(kind)])
        if start and end:
            parts.append(_TIMES(0x39, start, 0x41, end))
        else:
            if start:
                parts.append(b"\x39" + _FIXED64(start))
            if end:
                parts.append(b"\x41" + _FIXED64(end))
        if attributes:
            parts.append(self._attributes_of(attributes, b"\x4a"))
        if dropped_attributes:
            parts.append(b"\x50" + varint(dropped_attributes))
        for event in events:
            parts.append(field(b"\x5a", self._event(event)))
        if dropped_events:
            parts.append(b"\x60" + varint(dropped_events))
        for link in links:
            parts.append(field(b"\x6a", self._link(link)))
        if dropped_links:
            parts.append(b"\x70" + varint(dropped_links))
        if status is not None:
            parts.append(_status(status))
        parts.append(_REMOTE_FLAGS if parent is not None and parent.is_remote else _LOCAL_FLAGS)
        return b"".join(parts)

    def _attributes_of(self, attributes: Mapping[str, Any] | None, tag: bytes) -> bytes:
        """Each attribute as a `tag` field (a repeated KeyValue), from the bytes kept if it was met lately."""
        if not attributes:
            return b""
        cache = self._attributes
        parts = []
        for key, value in attributes.items():
            if type(value) not in _CACHEABLE:  # (a str subclass, an enum, is written, not remembered)
                parts.append(field(tag, _key_value(key, value)))
                continue
            cache_key = (tag, key, type(value), value)
            encoded = cache.get(cache_key)
            if encoded is None:
                if len(cache) >= _CACHED_ATTRIBUTES:
                    cache.clear()  # a bound: what recurs is back after a span or two
                encoded = cache[cache_key] = field(tag, _key_value(key, value))
            parts.append(encoded)
        return b"".join(parts)

    def _event(self, event: Event) -> bytes:
        parts = []
        if event.timestamp:
            parts.append(b"\x09" + _FIXED64(event.timestamp))
        if event.name:
            parts.append(field(b"\x12", event.name.encode()))
        parts.append(self._attributes_of(event.attributes, b"\x1a"))
        if event.dropped_attributes:
            parts.append(b"\x20" + varint(event.dropped_attributes))
        return b"".join(parts)

    def _link(self, link: Link) -> bytes:
        context, attributes = link.context, link.attributes
        trace_id = context.trace_id
        parts = [
            _LINK_IDS(0x0A10, trace_id >> 64, trace_id & _LOW_64, 0x1208, context.span_id),
            # Not remembered: a link's attributes are usually its message's own (an id), met once.
            b"".join([field(b"\x22", _key_value(k, v)) for k, v in attributes.items()])
            if attributes
            else b"",
        ]
        if dropped := _dropped(attributes):
            parts.append(b"\x28" + varint(dropped))
        parts.append(_REMOTE_LINK_FLAGS if context.is_remote else _LOCAL_LINK_FLAGS)
        return b"".join(parts)


def _dropped(values: object) -> int:
    """What a span's attributes, events or links dropped: a BoundedAttributes' or BoundedList's count, as
    the SDK's `dropped_*` properties say (0 for a plain dict or sequence, checked first: it is cheaper)."""
    if values is None or type(values) in _UNBOUNDED:
        return 0
    if isinstance(values, BoundedAttributes | BoundedList):
        return values.dropped
    return 0


def _status(status: Status) -> bytes:
    """A Span's `status` field."""
    status_code, description = status.status_code, status.description
    if status_code is StatusCode.UNSET and not description:
        return _UNSET_STATUS
    code = 2 if status_code is StatusCode.ERROR else 1 if status_code is StatusCode.OK else 0
    return field(
        b"\x7a",
        (field(b"\x12", description.encode()) if description else b"")
        + (b"\x18" + SMALL[code] if code else b""),
    )


# Span.flags and Link.flags: whether the parent (linked span) is remote is known, and if it is.
_LOCAL_FLAGS = b"\x85\x01" + _FIXED32(_HAS_IS_REMOTE)
_LOCAL_LINK_FLAGS = b"\x35" + _FIXED32(_HAS_IS_REMOTE)
_REMOTE_LINK_FLAGS = b"\x35" + _FIXED32(_HAS_IS_REMOTE | _IS_REMOTE)
_REMOTE_FLAGS = b"\x85\x01" + _FIXED32(_HAS_IS_REMOTE | _IS_REMOTE)


def _trace_state(context: SpanContext) -> str:
    return ",".join(f"{key}={value}" for key, value in context.trace_state.items())


def _scope(scope: InstrumentationScope | None) -> bytes:
    if scope is None:
        return b""
    parts = []
    if scope.name:
        parts.append(field(b"\x0a", scope.name.encode()))
    if scope.version:
        parts.append(field(b"\x12", scope.version.encode()))
    parts.extend(field(b"\x1a", _key_value(k, v)) for k, v in (scope.attributes or {}).items())
    return b"".join(parts)


class EncodingBatchSpanProcessor(BatchSpanProcessor):
    """The SDK's batch processor in front of `OTLPSpanExporter`, taking spans already written as well.

    tracing.FinishedSpans hands it EncodedSpans: queued, batched and exported as the ReadableSpans
    beside them are (the batch processor reads nothing of a span but its context's sampled flag, and
    the exporter's encoder passes their bytes through).
    """

    def __init__(self, exporter: OTLPSpanExporter) -> None:
        super().__init__(exporter)

    def on_encoded(self, span: EncodedSpan) -> None:
        """Queue `span` for export."""
        self.on_end(cast(ReadableSpan, span))


class OTLPSpanExporter(SdkOTLPSpanExporter):
    """The SDK's OTLP/gRPC span exporter, encoding with SpanEncoder (the same request, less CPU)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._encoder = SpanEncoder()

    def _translate_data(self, data: Sequence[ReadableSpan | EncodedSpan]) -> ExportTraceServiceRequest:
        try:
            raw = self._encoder.request(data)
        except _Unsupported:
            # The SDK's encoder for the spans this one cannot write; those written already, as they are.
            written = [span for span in data if isinstance(span, EncodedSpan)]
            request = ExportTraceServiceRequest.FromString(self._encoder.request(written))
            request.MergeFrom(encode_spans([span for span in data if not isinstance(span, EncodedSpan)]))
            return request
        # Parsing is C (upb) and cheap; grpc then serializes the message as it would the SDK's.
        return ExportTraceServiceRequest.FromString(raw)
