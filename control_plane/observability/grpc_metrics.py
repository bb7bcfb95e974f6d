"""gRPC server metrics under the names of go-grpc-prometheus, so existing dashboards work unchanged.

grpc_server_started_total, grpc_server_handled_total (with grpc_code), grpc_server_handling_seconds,
grpc_server_msg_received_total and grpc_server_msg_sent_total, labelled by grpc_type, grpc_service
and grpc_method: a fixed set, bounded by the contract's methods and the status codes.

Each method's series are looked up once, when its handler is first wrapped; a call then costs a few
attribute updates (see instruments), and a streamed message one more, counted in the one wrapper
that the stream passes through.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from prometheus_client import CollectorRegistry

from control_plane.observability.grpc_handlers import CachingInterceptor
from control_plane.observability.instruments import Count, CounterFamily, HistogramFamily

# Seconds; from 0.5 ms (a Lookup) to a minute-long stream.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)
_LABELS = ("grpc_type", "grpc_service", "grpc_method")

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]


class GrpcServerMetrics:
    """The counters and histogram of every RPC, registered on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.started = CounterFamily("grpc_server_started_total", "RPCs started on the server.", _LABELS)
        self.handled = CounterFamily(
            "grpc_server_handled_total",
            "RPCs completed on the server, regardless of success or failure.",
            (*_LABELS, "grpc_code"),
        )
        self.handling = HistogramFamily(
            "grpc_server_handling_seconds",
            "Response latency of RPCs handled by the server (until the last message of a stream).",
            _LABELS,
            _BUCKETS,
        )
        self.received = CounterFamily(
            "grpc_server_msg_received_total", "Stream messages received from clients.", _LABELS
        )
        self.sent = CounterFamily("grpc_server_msg_sent_total", "Stream messages sent to clients.", _LABELS)
        for family in (self.started, self.handled, self.handling, self.received, self.sent):
            registry.register(family)

    def initialize(self, services: Iterable[ServiceDescriptor]) -> None:
        """Show every method of `services` from the start, at zero, as go-grpc-prometheus's Register
        does: a dashboard then shows 0 rather than nothing, and `rate()` counts a method's first calls.
        (Of the status codes, OK only: the others appear with the first call that ends with them.)"""
        for service in services:
            for method in service.methods:
                labels = (_descriptor_shape(method), service.full_name, method.name)
                for family in (self.started, self.handling, self.received, self.sent):
                    family.child(*labels)
                self.handled.child(*labels, "OK")


def _descriptor_shape(method: MethodDescriptor) -> str:
    if method.client_streaming and method.server_streaming:
        return "bidi_stream"
    if method.client_streaming:
        return "client_stream"
    if method.server_streaming:
        return "server_stream"
    return "unary"


def _shape(handler: Handler) -> str:
    if handler.request_streaming and handler.response_streaming:
        return "bidi_stream"
    if handler.request_streaming:
        return "client_stream"
    if handler.response_streaming:
        return "server_stream"
    return "unary"


def _code(context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None) -> str:
    """The status an RPC ended with, as go-grpc-prometheus names it ("OK", "NOT_FOUND", ...)."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if error is None:
        return "OK"
    if isinstance(error, grpc.aio.AbortError):
        return "UNKNOWN"  # aborted without a code that the context kept
    return "CANCELLED" if isinstance(error, asyncio.CancelledError) else "UNKNOWN"


class MetricsInterceptor(CachingInterceptor):
    """Wraps each method handler once (per method, cached) to count and time its calls."""

    def __init__(self, metrics: GrpcServerMetrics) -> None:
        super().__init__()
        self._metrics = metrics

    def _wrap(self, method: str, handler: Handler) -> Handler:
        service, _, name = method.lstrip("/").partition("/")
        labels = (_shape(handler), service, name)
        m = self._metrics
        started = m.started.child(*labels)
        handling = m.handling.child(*labels)
        received = m.received.child(*labels)
        sent = m.sent.child(*labels)
        handled: dict[str, Count] = {}

        def finish(
            context: grpc.aio.ServicerContext[Any, Any], begun: float, error: BaseException | None
        ) -> None:
            handling.observe(time.perf_counter() - begun)
            code = _code(context, error)
            cell = handled.get(code)
            if cell is None:
                cell = handled[code] = m.handled.child(*labels, code)
            cell.value += 1

        async def counted(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
            async for request in requests:
                received.value += 1
                yield request

        if not handler.request_streaming and not handler.response_streaming:
            inner_uu: Any = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                started.value += 1
                begun = time.perf_counter()
                try:
                    response = await inner_uu(request, context)
                except BaseException as exc:
                    finish(context, begun, exc)
                    raise
                finish(context, begun, None)
                return response

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer
            )

        if not handler.response_streaming:
            inner_su: Any = handler.stream_unary

            async def stream_unary(
                requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
            ) -> Any:
                started.value += 1
                begun = time.perf_counter()
                try:
                    response = await inner_su(counted(requests), context)
                except BaseException as exc:
                    finish(context, begun, exc)
                    raise
                finish(context, begun, None)
                return response

            return grpc.stream_unary_rpc_method_handler(
                stream_unary, handler.request_deserializer, handler.response_serializer
            )

        # Response streams: the handler's responses pass through this one generator, which counts them
        # (one generator between grpc.aio and the handler's, where there were two). A handler that
        # writes through its context instead (a coroutine: grpc's health Watch) is awaited, and what it
        # writes is not counted: counting it would mean wrapping the context of every call.
        request_streaming = handler.request_streaming
        inner_stream: Any = handler.stream_stream if request_streaming else handler.unary_stream

        async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            started.value += 1
            begun = time.perf_counter()
            try:
                result = inner_stream(counted(request) if request_streaming else request, context)
                if hasattr(result, "__aiter__"):
                    async for response in result:
                        sent.value += 1
                        yield response
                else:
                    await result
            except BaseException as exc:
                finish(context, begun, exc)
                raise
            finish(context, begun, None)

        if request_streaming:
            return grpc.stream_stream_rpc_method_handler(
                streaming, handler.request_deserializer, handler.response_serializer
            )
        return grpc.unary_stream_rpc_method_handler(
            streaming, handler.request_deserializer, handler.response_serializer
        )
