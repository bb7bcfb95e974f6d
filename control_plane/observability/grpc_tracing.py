"""A server span per RPC, continuing the caller's W3C `traceparent` metadata (OpenTelemetry semantics).

Installed only when tracing is on (see tracing.configure): with tracing off the server has no such
interceptor at all, so the cost is nil. The span is current while the handler runs, so what the
handler starts (a process, a published message) knows the caller's trace.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import Attributes

from control_plane.observability.tracing import as_parent, parse_traceparent

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
_CARRIED = ("traceparent", "tracestate")


def _caller(metadata: Sequence[tuple[str, str | bytes]] | None) -> Context | None:
    """The caller's context from its `traceparent`/`tracestate` metadata; None when it sent none (or a bad one)."""
    carrier = {key: value for key, value in metadata or () if key in _CARRIED and isinstance(value, str)}
    caller = parse_traceparent(carrier.get("traceparent", ""), carrier.get("tracestate", ""))
    return as_parent(caller) if caller is not None else None


class TracingInterceptor(grpc.aio.ServerInterceptor):
    """Wraps each call's handler in a SERVER span named `package.Service/Method`."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer
        self._methods: dict[str, tuple[str, Attributes]] = {}  # span name and attributes, by method

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        """The method's handler, wrapped for this call (it carries this call's metadata)."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        metadata = handler_call_details.invocation_metadata
        return self._wrap(method, handler, _caller(metadata))

    def _start(self, method: str, parent: Context | None) -> Span:
        named = self._methods.get(method)
        if named is None:
            service, _, name = method.lstrip("/").partition("/")
            attributes: Attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
            named = self._methods[method] = (f"{service}/{name}", attributes)
        # The SDK copies the attributes into the span: one dict per method serves every call.
        return self._tracer.start_span(named[0], context=parent, kind=SpanKind.SERVER, attributes=named[1])

    def _wrap(self, method: str, handler: Handler, parent: Context | None) -> Handler:
        start = self._start

        if not handler.request_streaming and not handler.response_streaming:
            inner_uu: Any = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                span = start(method, parent)
                with trace.use_span(span, end_on_exit=False):
                    try:
                        response = await inner_uu(request, context)
                    except BaseException as exc:
                        _finish(span, context, exc)
                        raise
                _finish(span, context, None)
                return response

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer
            )

        if not handler.request_streaming:
            inner_us: Any = handler.unary_stream

            async def unary_stream(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                span = start(method, parent)
                with trace.use_span(span, end_on_exit=False):
                    try:
                        async for response in _responses(inner_us(request, context)):
                            yield response
                    except BaseException as exc:
                        _finish(span, context, exc)
                        raise
                _finish(span, context, None)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, handler.request_deserializer, handler.response_serializer
            )

        if not handler.response_streaming:
            inner_su: Any = handler.stream_unary

            async def stream_unary(
                requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
            ) -> Any:
                span = start(method, parent)
                with trace.use_span(span, end_on_exit=False):
                    try:
                        response = await inner_su(requests, context)
                    except BaseException as exc:
                        _finish(span, context, exc)
                        raise
                _finish(span, context, None)
                return response

            return grpc.stream_unary_rpc_method_handler(
                stream_unary, handler.request_deserializer, handler.response_serializer
            )

        inner_ss: Any = handler.stream_stream

        async def stream_stream(
            requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            span = start(method, parent)
            with trace.use_span(span, end_on_exit=False):
                try:
                    async for response in _responses(inner_ss(requests, context)):
                        yield response
                except BaseException as exc:
                    _finish(span, context, exc)
                    raise
            _finish(span, context, None)

        return grpc.stream_stream_rpc_method_handler(
            stream_stream, handler.request_deserializer, handler.response_serializer
        )


def _finish(span: Span, context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None) -> None:
    code = context.code()
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code in _SERVER_ERRORS:
        span.set_status(Status(StatusCode.ERROR, context.details() or code.name))
    span.end()


async def _responses(result: Any) -> AsyncIterator[Any]:
    """A streaming handler's responses: it may be an async generator or a coroutine that writes."""
    if hasattr(result, "__aiter__"):
        async for response in result:
            yield response
    else:
        await result
