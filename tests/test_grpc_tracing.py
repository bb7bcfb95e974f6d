"""The server span of each RPC, made finished when the call ends (grpc_tracing through FinishedSpans).

A real grpc.aio server on 127.0.0.1:0 with the tracing interceptor, raw-bytes methods that report
the trace current in the handler; spans are kept by a processor on a real SDK provider.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import grpc.aio
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

from control_plane.observability.grpc_tracing import TracingInterceptor
from control_plane.observability.tracing import FinishedSpans, current_traceparent
from tests.wire_support import raw

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class _Kept(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


async def _current(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    return current_traceparent().encode()


async def _missing(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
    raise AssertionError("abort returns no more")


async def _broken(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    raise RuntimeError("it broke")


async def _stream(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
    for _ in range(3):
        yield current_traceparent().encode()


async def _serve(provider: TracerProvider, kept: _Kept) -> tuple[grpc.aio.Server, grpc.aio.Channel]:
    spans = FinishedSpans(provider, [SimpleSpanProcessor(kept)], "hms-mgmt")
    server = grpc.aio.server(interceptors=[TracingInterceptor(spans)])
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Svc",
                {
                    "Current": grpc.unary_unary_rpc_method_handler(_current),
                    "Missing": grpc.unary_unary_rpc_method_handler(_missing),
                    "Broken": grpc.unary_unary_rpc_method_handler(_broken),
                    "Stream": grpc.unary_stream_rpc_method_handler(_stream),
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, grpc.aio.insecure_channel(f"127.0.0.1:{port}")


async def test_a_server_span_continues_the_callers_trace_and_is_current_in_the_handler() -> None:
    kept = _Kept()
    server, channel = await _serve(TracerProvider(resource=Resource.create({})), kept)
    try:
        current = channel.unary_unary("/test.Svc/Current", raw, raw)
        seen = (await current(b"", metadata=(("traceparent", CALLER),))).decode()
        root_seen = (await current(b"")).decode()
        streamed = [r.decode() async for r in channel.unary_stream("/test.Svc/Stream", raw, raw)(b"")]
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await channel.unary_unary("/test.Svc/Missing", raw, raw)(b"")
        assert missing.value.code() is grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as broken:
            await channel.unary_unary("/test.Svc/Broken", raw, raw)(b"")
        assert broken.value.code() is grpc.StatusCode.UNKNOWN
    finally:
        await channel.close()
        await server.stop(None)
    by_name = {span.name: span for span in kept.spans}
    assert len(kept.spans) == 5 and all(span.kind is SpanKind.SERVER for span in kept.spans)

    currents = [span for span in kept.spans if span.name == "test.Svc/Current"]
    continued = next(span for span in currents if span.parent is not None)
    assert continued.parent is not None and continued.parent.is_remote
    assert continued.context is not None
    assert (continued.context.trace_id, continued.parent.span_id) == (
        0x4BF92F3577B34DA6A3CE929D0E0E4736,
        0x00F067AA0BA902B7,
    )
    # The handler saw the server span as its current span.
    assert seen == f"00-{continued.context.trace_id:032x}-{continued.context.span_id:016x}-01"
    new_root = next(span for span in currents if span.parent is None)
    assert new_root.context is not None and new_root.context.trace_id != continued.context.trace_id
    assert root_seen.split("-")[1:3] == [
        f"{new_root.context.trace_id:032x}",
        f"{new_root.context.span_id:016x}",
    ]
    assert dict(continued.attributes or {}) == {
        "rpc.system": "grpc",
        "rpc.service": "test.Svc",
        "rpc.method": "Current",
        "rpc.grpc.status_code": 0,
    }
    assert continued.start_time is not None and continued.end_time is not None
    assert continued.start_time <= continued.end_time

    stream = by_name["test.Svc/Stream"]
    assert stream.context is not None and len(set(streamed)) == 1
    assert streamed[0].split("-")[2] == f"{stream.context.span_id:016x}"
    # NOT_FOUND is the caller's error, not the server's; an exception the handler let out is.
    assert by_name["test.Svc/Missing"].status.status_code is StatusCode.UNSET
    assert (by_name["test.Svc/Missing"].attributes or {})["rpc.grpc.status_code"] == 5
    assert by_name["test.Svc/Broken"].status.status_code is StatusCode.ERROR
    assert by_name["test.Svc/Broken"].status.description == "RuntimeError: it broke"


async def test_the_sampler_decides_a_server_span_and_an_unsampled_trace_still_propagates() -> None:
    kept = _Kept()
    server, channel = await _serve(TracerProvider(sampler=ALWAYS_OFF), kept)
    try:
        seen = (await channel.unary_unary("/test.Svc/Current", raw, raw)(b"")).decode()
    finally:
        await channel.close()
        await server.stop(None)
    assert kept.spans == []
    assert not int(seen.split("-")[3], 16) & 1  # a context the handler passes on, not sampled
