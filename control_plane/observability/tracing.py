"""OpenTelemetry tracing, configured the way OpenTelemetry is configured everywhere: by OTEL_* variables.

Off unless asked: `OTEL_TRACES_EXPORTER` (`otlp`, `console`, comma-separated; `none` is off) or an
OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) turns it on.
The rest is read by the OpenTelemetry SDK itself: the sampler (`OTEL_TRACES_SAMPLER`,
`OTEL_TRACES_SAMPLER_ARG`; parent-based always-on by default), the service name and resource
(`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`), the exporter's protocol, headers and timeouts
(`OTEL_EXPORTER_OTLP_*`) and the batch processor (`OTEL_BSP_*`). When off, nothing is installed and
the global tracer is OpenTelemetry's no-op one.

Spans whose ids must be the same whoever emits them and whenever (a step of a process that lives
for weeks, across restarts, see workflow_tracing) are started under `span_id(...)`: the provider's
id generator hands out that id instead of a random one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

PROPAGATOR = TraceContextTextMapPropagator()
_forced_span_id: ContextVar[int] = ContextVar("forced_span_id", default=0)
_provider: TracerProvider | None = None


class _DerivedIds(RandomIdGenerator):
    """Random ids, except a span id asked for with `span_id(...)` around the span's start."""

    def generate_span_id(self) -> int:
        """The forced span id if one is set, else a random one."""
        forced = _forced_span_id.get()
        return forced if forced else super().generate_span_id()


@contextmanager
def span_id(value: int) -> Iterator[None]:
    """Spans started inside the block (on this module's provider) get `value` as their span id."""
    token = _forced_span_id.set(value)
    try:
        yield
    finally:
        _forced_span_id.reset(token)


def derived_span_id(*parts: object) -> int:
    """A span id (64 bits, never 0) that is a function of `parts` only: the same on every replica, every day."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest) or 1


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether the OTEL_* variables in `environ` ask for traces."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    )


# xds-protos (the mesh's Envoy types) ships an older copy of opentelemetry-proto's modules in the same
# folders; whichever package installs last owns the files, and the OTLP exporters need the newer ones.
_PROTO_CLASH = (
    "the OTLP exporter cannot load opentelemetry-proto's modules ({error}): xds-protos, installed after "
    "opentelemetry-proto, replaced them with its older copy. Put them back with: pip install --no-deps "
    "--force-reinstall opentelemetry-proto=={version}  (make install does this)"
)


def _exporters(environ: Mapping[str, str]) -> list[SpanExporter]:
    try:
        return _make_exporters(environ)
    except ImportError as error:
        from importlib.metadata import version

        raise RuntimeError(
            _PROTO_CLASH.format(error=error, version=version("opentelemetry-proto"))
        ) from error


def _make_exporters(environ: Mapping[str, str]) -> list[SpanExporter]:
    names = [n.strip() for n in environ.get("OTEL_TRACES_EXPORTER", "otlp").lower().split(",") if n.strip()]
    exporters: list[SpanExporter] = []
    for name in names:
        if name == "otlp":
            protocol = (
                environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "grpc"
            ).strip()
            if protocol == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

                exporters.append(OTLPSpanExporter())
            elif protocol == "http/protobuf":
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter as HttpSpanExporter,
                )

                exporters.append(HttpSpanExporter())
            else:
                raise ValueError(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL expects grpc or http/protobuf, got {protocol!r}"
                )
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name != "none":
            raise ValueError(f"OTEL_TRACES_EXPORTER expects otlp, console or none, got {name!r}")
    return exporters


def configure(default_service_name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Install the tracer provider the OTEL_* variables ask for (once per process); whether tracing is on.

    `default_service_name` names the process when neither OTEL_SERVICE_NAME nor a `service.name` in
    OTEL_RESOURCE_ATTRIBUTES does. Raises ValueError for an exporter or protocol it does not know.
    """
    global _provider
    env = os.environ if environ is None else environ
    if _provider is not None:
        return True
    if not wanted(env):
        return False
    named = env.get("OTEL_SERVICE_NAME", "").strip() or "service.name=" in env.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    resource = Resource.create({} if named else {SERVICE_NAME: default_service_name})
    # The sampler comes from OTEL_TRACES_SAMPLER / _ARG (the SDK reads them when given none).
    provider = TracerProvider(resource=resource, id_generator=_DerivedIds())
    for exporter in _exporters(env):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider
    return True


def enabled() -> bool:
    """Whether `configure` installed a tracer provider in this process."""
    return _provider is not None


def shutdown() -> None:
    """Export what is buffered and stop the exporters (at process exit; a no-op when tracing is off)."""
    if _provider is not None:
        _provider.shutdown()


def traceparent(context: SpanContext) -> str:
    """The W3C `traceparent` of `context`; empty for an invalid one."""
    if not context.is_valid:
        return ""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def current_traceparent() -> str:
    """The `traceparent` of the span current here; empty when there is none (always, tracing off)."""
    return traceparent(trace.get_current_span().get_span_context())


def parse_traceparent(value: str, state: str = "") -> SpanContext | None:
    """The remote span context a `traceparent` (and `tracestate`) names; None when it is not one."""
    if not value:
        return None
    carrier = {"traceparent": value, "tracestate": state} if state else {"traceparent": value}
    context = trace.get_current_span(PROPAGATOR.extract(carrier)).get_span_context()
    return context if context.is_valid else None


def child_context(parent: SpanContext, span: int) -> SpanContext:
    """The context of a span `span` in `parent`'s trace, with its sampling flags (it need not exist yet)."""
    return SpanContext(
        parent.trace_id,
        span,
        is_remote=True,
        trace_flags=TraceFlags(parent.trace_flags),
        trace_state=TraceState(),
    )


def as_parent(context: SpanContext) -> Context:
    """An OpenTelemetry context whose current span is `context` (to start children of it)."""
    return trace.set_span_in_context(NonRecordingSpan(context))
