"""A local OTLP receiver for the traced benchmark: the collector's TraceService over gRPC, counting spans.

It decodes every export (as a collector would) and keeps only the count, so a long run holds no
spans in memory. It runs in the bench driver's event loop, on 127.0.0.1:0.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


@dataclass
class Sink:
    """Where the sink listens and how many spans it has received."""

    address: str = ""
    spans: int = 0

    def environment(self) -> dict[str, str]:
        """The standard OTEL_* variables that send every span of a process here."""
        return {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{self.address}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_TRACES_SAMPLER": "always_on",
        }


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    async def Export(
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._sink.spans += sum(
            len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans
        )
        return trace_service_pb2.ExportTraceServiceResponse()


@asynccontextmanager
async def otlp_sink() -> AsyncIterator[Sink]:
    """A TraceService on 127.0.0.1:0 until the block exits."""
    sink = Sink()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(sink), server)
    sink.address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    try:
        yield sink
    finally:
        await server.stop(None)
