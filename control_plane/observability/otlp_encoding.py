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
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as SdkOTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind

_FIXED64 = struct.Struct("<Q").pack
_DOUBLE = struct.Struct("<d").pack
_FIXED32 = struct.Struct("<I").pack
_SMALL = [bytes((n,)) for n in range(128)]
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


class _Unsupported(Exception):
    """A value this encoder does not write: the SDK's encoder takes the whole batch."""


def _varint(value: int) -> bytes:
    if value < 128:
        if value < 0:
            value += 1 << 64  # int64: two's complement, ten bytes
        else:
            return _SMALL[value]
    out = bytearray()
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field (bytes, string or message) with its tag."""
    return tag + _varint(len(payload)) + payload


def _value(value: Any) -> bytes:
    """An AnyValue's payload (the oneof member is written even when it holds its default)."""
    if isinstance(value, str):
        return _field(b"\x0a", value.encode())
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        if not -(1 << 63) <= value < (1 << 63):
            raise _Unsupported(value)
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if value is None:
        return b""
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join(_field(b"\x0a", _value(item)) for item in value))
    if isinstance(value, Mapping):
        return _field(b"\x32", b"".join(_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items()))
    raise _Unsupported(value)


def _key_value(key: str, value: Any) -> bytes:
    """A KeyValue's payload."""
    return _field(b"\x0a", key.encode()) + _field(b"\x12", _value(value))


class SpanEncoder:
    """Writes export requests; remembers the encoded attributes it met lately (used from one thread)."""

    def __init__(self) -> None:
        self._attributes: dict[tuple[bytes, str, type, Any], bytes] = {}

    def request(self, spans: Sequence[ReadableSpan]) -> bytes:
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
            groups.setdefault(r, {}).setdefault(s, []).append(_field(b"\x12", self._span(span)))
        out = []
        for r, by_scope in groups.items():
            resource = resources[r]
            body = [_field(b"\x0a", self._attributes_of(resource.attributes, b"\x0a"))]
            for s, encoded in by_scope.items():
                scope = scopes[s]
                scope_spans = [_field(b"\x0a", _scope(scope)), *encoded]
                if scope is not None and scope.schema_url:
                    scope_spans.append(_field(b"\x1a", scope.schema_url.encode()))
                body.append(_field(b"\x12", b"".join(scope_spans)))
            if resource.schema_url:
                body.append(_field(b"\x1a", resource.schema_url.encode()))
            out.append(_field(b"\x0a", b"".join(body)))
        return b"".join(out)

    def _span(self, span: ReadableSpan) -> bytes:
        context = span.get_span_context()
        if context is None:
            raise _Unsupported(span)
        parent = span.parent
        parts = [
            b"\x0a\x10" + context.trace_id.to_bytes(16, "big"),
            b"\x12\x08" + context.span_id.to_bytes(8, "big"),
        ]
        if context.trace_state:
            parts.append(_field(b"\x1a", _trace_state(context).encode()))
        if parent is not None:
            parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
        if span.name:
            parts.append(_field(b"\x2a", span.name.encode()))
        parts.append(b"\x30" + _SMALL[_KINDS[span.kind]])
        if span.start_time:
            parts.append(b"\x39" + _FIXED64(span.start_time))
        if span.end_time:
            parts.append(b"\x41" + _FIXED64(span.end_time))
        if span.attributes:
            parts.append(self._attributes_of(span.attributes, b"\x4a"))
        if span.dropped_attributes:
            parts.append(b"\x50" + _varint(span.dropped_attributes))
        for event in span.events:
            parts.append(_field(b"\x5a", self._event(event)))
        if span.dropped_events:
            parts.append(b"\x60" + _varint(span.dropped_events))
        for link in span.links:
            parts.append(_field(b"\x6a", self._link(link)))
        if span.dropped_links:
            parts.append(b"\x70" + _varint(span.dropped_links))
        status = span.status
        if status is not None:
            code = status.status_code.value
            description = status.description
            parts.append(
                _field(
                    b"\x7a",
                    (_field(b"\x12", description.encode()) if description else b"")
                    + (b"\x18" + _SMALL[code] if code else b""),
                )
            )
        parts.append(b"\x85\x01" + _FIXED32(_flags(parent)))
        return b"".join(parts)

    def _attributes_of(self, attributes: Mapping[str, Any] | None, tag: bytes) -> bytes:
        """Each attribute as a `tag` field (a repeated KeyValue), from the bytes kept if it was met lately."""
        if not attributes:
            return b""
        cache = self._attributes
        parts = []
        for key, value in attributes.items():
            if not isinstance(value, str | int | float):
                parts.append(_field(tag, _key_value(key, value)))
                continue
            cache_key = (tag, key, type(value), value)
            encoded = cache.get(cache_key)
            if encoded is None:
                if len(cache) >= _CACHED_ATTRIBUTES:
                    cache.clear()  # a bound: what recurs is back after a span or two
                encoded = cache[cache_key] = _field(tag, _key_value(key, value))
            parts.append(encoded)
        return b"".join(parts)

    def _event(self, event: Event) -> bytes:
        parts = []
        if event.timestamp:
            parts.append(b"\x09" + _FIXED64(event.timestamp))
        if event.name:
            parts.append(_field(b"\x12", event.name.encode()))
        parts.append(self._attributes_of(event.attributes, b"\x1a"))
        if event.dropped_attributes:
            parts.append(b"\x20" + _varint(event.dropped_attributes))
        return b"".join(parts)

    def _link(self, link: Link) -> bytes:
        context = link.context
        parts = [
            b"\x0a\x10" + context.trace_id.to_bytes(16, "big"),
            b"\x12\x08" + context.span_id.to_bytes(8, "big"),
            self._attributes_of(link.attributes, b"\x22"),
        ]
        if link.dropped_attributes:
            parts.append(b"\x28" + _varint(link.dropped_attributes))
        parts.append(b"\x35" + _FIXED32(_flags(context)))
        return b"".join(parts)


def _flags(parent: SpanContext | None) -> int:
    return _HAS_IS_REMOTE | _IS_REMOTE if parent is not None and parent.is_remote else _HAS_IS_REMOTE


def _trace_state(context: SpanContext) -> str:
    return ",".join(f"{key}={value}" for key, value in context.trace_state.items())


def _scope(scope: InstrumentationScope | None) -> bytes:
    if scope is None:
        return b""
    parts = []
    if scope.name:
        parts.append(_field(b"\x0a", scope.name.encode()))
    if scope.version:
        parts.append(_field(b"\x12", scope.version.encode()))
    parts.extend(_field(b"\x1a", _key_value(k, v)) for k, v in (scope.attributes or {}).items())
    return b"".join(parts)


class OTLPSpanExporter(SdkOTLPSpanExporter):
    """The SDK's OTLP/gRPC span exporter, encoding with SpanEncoder (the same request, less CPU)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._encoder = SpanEncoder()

    def _translate_data(self, data: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        try:
            raw = self._encoder.request(data)
        except _Unsupported:
            return encode_spans(data)
        # Parsing is C (upb) and cheap; grpc then serializes the message as it would the SDK's.
        return ExportTraceServiceRequest.FromString(raw)
