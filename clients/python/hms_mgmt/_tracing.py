"""Tracing in the SDK: callers' spans go along with their calls, and a worker's span per task continues
the process's trace from the Task's `traceparent`.

The control plane puts its span of the attempt in `Task.traceparent`, so the span made here (and
everything the handler traces inside it) is that attempt's child. OpenTelemetry's API only: the
application configures the SDK and exporter (or not: then the API's tracer records nothing), and
without the `opentelemetry-api` package installed tasks simply run untraced.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import grpc.aio

from hms.mgmt.v1 import workflow_pb2 as pb

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # pragma: no cover - tracing is optional for SDK users
    trace = None  # type: ignore[assignment]

_SCOPE = "hms-mgmt.sdk.worker"
# One propagator for every task and call (it holds nothing per use).
_PROPAGATOR = TraceContextTextMapPropagator() if trace is not None else None


@contextmanager
def task_span(task: pb.Task, service: str) -> Iterator[None]:
    """Run the block in a CONSUMER span named `<service> <task type>`, the child of the task's attempt."""
    if trace is None or not task.traceparent:
        yield
        return
    carrier = {"traceparent": task.traceparent}
    if task.tracestate:
        carrier["tracestate"] = task.tracestate
    parent = _PROPAGATOR.extract(carrier) if _PROPAGATOR is not None else None
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        # No tracing SDK configured, so no span would be recorded: making the attempt's context
        # current is all a span would do (the handler's own calls carry the process's trace on), and
        # costs a fraction of starting a non-recording span with its attributes.
        token = otel_context.attach(parent) if parent is not None else None
        try:
            yield
        finally:
            if token is not None:
                otel_context.detach(token)
        return
    with trace.get_tracer(_SCOPE).start_as_current_span(
        f"{service} {task.task_type}",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "mgmt.worker.service": service,
            "mgmt.process_id": task.process_id,
            "mgmt.step_id": task.step_id,
            "mgmt.attempt": task.attempt,
            "mgmt.compensation": task.compensation,
        },
    ):
        yield


def _with_context(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    """`details` with the current span's traceparent (and tracestate) added to its metadata, if any."""
    carrier: dict[str, str] = {}
    if _PROPAGATOR is not None:
        _PROPAGATOR.inject(carrier)
    if not carrier:
        return details
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    for key, value in carrier.items():
        metadata[key] = value
    return details._replace(metadata=metadata)  # type: ignore[attr-defined,no-any-return]


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(_with_context(client_call_details), request)


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(_with_context(client_call_details), request)


class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_with_context(client_call_details), request_iterator)


class _StreamStream(grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_with_context(client_call_details), request_iterator)


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """Interceptors that send the caller's current span as `traceparent` metadata with every call.

    None unless the application installed an OpenTelemetry tracer provider before connecting: an
    untraced client pays nothing per call.
    """
    if trace is None or isinstance(
        trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider
    ):
        return []
    return [_UnaryUnary(), _UnaryStream(), _StreamUnary(), _StreamStream()]
