"""A server span per RPC, continuing the caller's W3C `traceparent` metadata (OpenTelemetry semantics).

Installed only when tracing is on (see tracing.configure): with tracing off the server has no such
interceptor at all, so the cost is nil. The span's context is current while the handler runs, so
what the handler starts (a process, a published message) knows the caller's trace.

The span is made whole when the call ends (tracing.FinishedSpans), not started and ended through
the SDK's Tracer: its start, end, attributes and status are all known by then, and the SDK's live
span (a lock, a copy of the attributes, a lock again to set the status code and to end it) would be
paid on every call, a unary CompleteTask for every step of every process. The ids and the sampling
decision are the Tracer's (the provider's id generator and sampler). Each method's handler is
wrapped once, not once per call.
"""

from __future__ import annotations

import time
from asyncio import CancelledError
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode

from control_plane.observability.grpc_handlers import CachingInterceptor
from control_plane.observability.tracing import UNSET, FinishedSpans, parse_traceparent

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]

# The codes that make a server span an error (OpenTelemetry's gRPC semantic conventions).
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


def _caller(metadata: Iterable[tuple[str, Any]] | None) -> SpanContext | None:
    """The caller's span context from its `traceparent`/`tracestate` metadata; None when it sent none (or a bad one)."""
    parent = state = ""
    for key, value in metadata or ():
        if key == "traceparent" and isinstance(value, str):
            parent = value
        elif key == "tracestate" and isinstance(value, str):
            state = value
    return parse_traceparent(parent, state) if parent else None


class _Call:
    """One call's server span while it runs: its context (current in the handler) and when it began."""

    __slots__ = ("begun", "context", "parent", "recorded", "token")

    def __init__(self, spans: FinishedSpans, name: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.parent = _caller(context.invocation_metadata())
        self.context, self.recorded = spans.server_span(name, self.parent)
        self.begun = time.time_ns()
        self.token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(self.context)))


class _Method:
    """A served method's span name and attributes, and how a call of it ends its span."""

    def __init__(self, spans: FinishedSpans, method: str) -> None:
        service, _, name = method.lstrip("/").partition("/")
        self.name = f"{service}/{name}"
        self._attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
        self._spans = spans

    def begin(self, context: grpc.aio.ServicerContext[Any, Any]) -> _Call:
        return _Call(self._spans, self.name, context)

    def finish(
        self, call: _Call, context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None
    ) -> None:
        otel_context.detach(call.token)
        if not call.recorded:
            return
        code = context.code()
        if not isinstance(code, grpc.StatusCode):
            code = grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN
        status = UNSET
        if code in _SERVER_ERRORS:
            unexpected = error is not None and not isinstance(error, grpc.aio.AbortError | CancelledError)
            details = f"{type(error).__name__}: {error}" if unexpected else context.details()
            status = Status(StatusCode.ERROR, details or code.name)
        self._spans.record(
            self.name,
            call.context,
            call.parent,
            call.begun,
            time.time_ns(),
            {**self._attributes, "rpc.grpc.status_code": code.value[0]},
            kind=SpanKind.SERVER,
            status=status,
        )


class TracingInterceptor(CachingInterceptor):
    """Wraps each method's handler (once per method, cached) in a SERVER span per call, named `package.Service/Method`."""

    def __init__(self, spans: FinishedSpans) -> None:
        super().__init__()
        self._spans = spans

    def _wrap(self, method: str, handler: Handler) -> Handler:
        """The handler with its span (the caller's context is read from each call)."""
        return _wrap(_Method(self._spans, method), handler)


def _wrap(method: _Method, handler: Handler) -> Handler:
    begin, finish = method.begin, method.finish

    if not handler.request_streaming and not handler.response_streaming:
        inner_uu: Any = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            call = begin(context)
            try:
                response = await inner_uu(request, context)
            except BaseException as exc:
                finish(call, context, exc)
                raise
            finish(call, context, None)
            return response

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, handler.request_deserializer, handler.response_serializer
        )

    if not handler.response_streaming:
        inner_su: Any = handler.stream_unary

        async def stream_unary(
            requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
        ) -> Any:
            call = begin(context)
            try:
                response = await inner_su(requests, context)
            except BaseException as exc:
                finish(call, context, exc)
                raise
            finish(call, context, None)
            return response

        return grpc.stream_unary_rpc_method_handler(
            stream_unary, handler.request_deserializer, handler.response_serializer
        )

    # Response streams: the handler's responses pass through this one generator (one generator per
    # message between grpc.aio and the handler's, not two). A handler that writes through its context
    # instead (a coroutine: grpc's health Watch) is awaited.
    inner_stream: Any = handler.stream_stream if handler.request_streaming else handler.unary_stream

    async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        call = begin(context)
        try:
            result = inner_stream(request, context)
            if hasattr(result, "__aiter__"):
                async for response in result:
                    yield response
            else:
                await result
        except BaseException as exc:
            finish(call, context, exc)
            raise
        finish(call, context, None)

    if handler.request_streaming:
        return grpc.stream_stream_rpc_method_handler(
            streaming, handler.request_deserializer, handler.response_serializer
        )
    return grpc.unary_stream_rpc_method_handler(
        streaming, handler.request_deserializer, handler.response_serializer
    )
