"""OpenTelemetry tracing, configured the way OpenTelemetry is configured everywhere: by OTEL_* variables.

Off unless asked: `OTEL_TRACES_EXPORTER` (`otlp`, `console`, comma-separated; `none` is off) or an
OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) turns it on.
The rest is read by the OpenTelemetry SDK itself: the sampler (`OTEL_TRACES_SAMPLER`,
`OTEL_TRACES_SAMPLER_ARG`; parent-based always-on by default), the service name and resource
(`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`), the exporter's protocol, headers and timeouts
(`OTEL_EXPORTER_OTLP_*`) and the batch processor (`OTEL_BSP_*`). When off, nothing is installed and
the global tracer is OpenTelemetry's no-op one.

Spans whose ids must be the same whoever emits them and whenever (a step of a process that lives
for weeks, across restarts, see workflow_tracing) are made whole after the fact by `FinishedSpans`,
straight into the span processors: their ids, start and end are known when they are made, so the
SDK's live-span machinery (sampler per span, id generator, attribute copies, span end) would be
pure cost, paid on every step; the gRPC server spans are made the same way when each call ends. The
OTLP/gRPC exporter encodes with otlp_encoding (the request the SDK's encoder makes, field for field,
for a fraction of its CPU), and its batch processor takes finished spans already written as bytes:
no ReadableSpan is made for them unless another exporter (console, OTLP/HTTP) wants one.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import weakref
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from functools import lru_cache
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult, StaticSampler
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

if TYPE_CHECKING:
    from control_plane.observability.otlp_encoding import EncodingBatchSpanProcessor

PROPAGATOR = TraceContextTextMapPropagator()
SCOPE = "hms-mgmt"  # the instrumentation scope of the control plane's own spans
_provider: TracerProvider | None = None
_processors: tuple[SpanProcessor, ...] = ()
# Flushed at shutdown: their last spans may be waiting for a loop pass that will not come.
_made: weakref.WeakSet[FinishedSpans] = weakref.WeakSet()
# The most span bytes one entry of the batch processor's queue holds (a few spans of a process;
# 512 such entries, the processor's default export batch, make a request of about a megabyte).
_ENTRY_BYTES = 2048
NO_STATE = TraceState()
UNSET = Status()
_SAMPLE = Decision.RECORD_AND_SAMPLE  # (an Enum member looked up on its class is a Python call)
_SERVER = SpanKind.SERVER
# A version-00 traceparent and nothing else: what this control plane writes and what callers send.
_VERSION_00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


@lru_cache(maxsize=16_384)
def derived_span_id(*parts: object) -> int:
    """A span id (64 bits, never 0) that is a function of `parts` only: the same on every replica, every day.

    Remembered for a while: a process's span ids are asked for again at each of its transitions (a
    step's as its attempts' parent, the process's as every step's, an attempt's at dispatch and end).
    """
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
                from control_plane.observability.otlp_encoding import OTLPSpanExporter

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


def _batch(exporter: SpanExporter) -> BatchSpanProcessor:
    """The SDK's batch processor; for our OTLP exporter, one that also takes spans already encoded."""
    from control_plane.observability import otlp_encoding  # imported already if `exporter` is its

    if isinstance(exporter, otlp_encoding.OTLPSpanExporter):
        return otlp_encoding.EncodingBatchSpanProcessor(exporter)
    return BatchSpanProcessor(exporter)


def configure(default_service_name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Install the tracer provider the OTEL_* variables ask for (once per process); whether tracing is on.

    `default_service_name` names the process when neither OTEL_SERVICE_NAME nor a `service.name` in
    OTEL_RESOURCE_ATTRIBUTES does. Raises ValueError for an exporter or protocol it does not know.
    """
    global _provider, _processors
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
    provider = TracerProvider(resource=resource)
    processors = tuple(_batch(exporter) for exporter in _exporters(env))
    for processor in processors:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    _provider, _processors = provider, processors
    return True


def enabled() -> bool:
    """Whether `configure` installed a tracer provider in this process."""
    return _provider is not None


def shutdown() -> None:
    """Export what is buffered and stop the exporters (at process exit; a no-op when tracing is off)."""
    if _provider is not None:
        for spans in _made:
            spans.flush()
        _provider.shutdown()


def traceparent(context: SpanContext) -> str:
    """The W3C `traceparent` of `context`; empty for an invalid one."""
    if not context.is_valid:
        return ""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def current_traceparent() -> str:
    """The `traceparent` of the span current here; empty when there is none (always, tracing off)."""
    return traceparent(trace.get_current_span().get_span_context())


@lru_cache(maxsize=4096)
def parse_traceparent(value: str, state: str = "") -> SpanContext | None:
    """The remote span context a `traceparent` (and `tracestate`) names; None when it is not one.

    Remembered (span contexts are immutable): a process's traceparent is read at each of its
    transitions, tasks and published messages. Plain version-00 values are read here; anything else
    (another version, a tracestate) by OpenTelemetry's propagator, which knows every rule.
    """
    if not value:
        return None
    if not state and (match := _VERSION_00.fullmatch(value)) is not None:
        trace_id, span, flags = (int(group, 16) for group in match.groups())
        if not trace_id or not span:
            return None
        return SpanContext(
            trace_id, span, is_remote=True, trace_flags=TraceFlags(flags), trace_state=NO_STATE
        )
    carrier = {"traceparent": value, "tracestate": state} if state else {"traceparent": value}
    context = trace.get_current_span(PROPAGATOR.extract(carrier)).get_span_context()
    return context if context.is_valid else None


def child_context(parent: SpanContext, span: int) -> SpanContext:
    """The context of a span `span` in `parent`'s trace, with its sampling flags (it need not exist yet)."""
    return SpanContext(
        parent.trace_id,
        span,
        is_remote=True,
        trace_flags=parent.trace_flags,
        trace_state=NO_STATE,
    )


def as_parent(context: SpanContext) -> Context:
    """An OpenTelemetry context whose current span is `context` (to start children of it)."""
    return trace.set_span_in_context(NonRecordingSpan(context))


class FinishedSpans:
    """Spans made whole, start and end known, handed straight to the span processors.

    For spans that stand for something already over when they are made (a step, from the transition
    that ended it): what the SDK's Tracer does for a live span (a sampler call, an id, a copy of the
    attributes, a lock at its end) is skipped; the sampler is asked once per trace instead, which is
    the same answer for OpenTelemetry's samplers (parent-based, always on/off, trace id ratio). The
    spans, their ids, parents, attributes and scope are exactly what the SDK would export.
    """

    def __init__(self, provider: TracerProvider, processors: Sequence[SpanProcessor], scope: str) -> None:
        self._resource = provider.resource
        self._sampler = provider.sampler
        self._ids = provider.id_generator
        self._processors = tuple(processors)
        self._scope = InstrumentationScope(scope)
        self._decided: dict[tuple[int, int], bool] = {}
        self._root_decision = _constant_root_decision(self._sampler)
        # The processors that take spans already encoded for OTLP (written once, here) and the others,
        # which take ReadableSpans. otlp_encoding is loaded only if there are some of the first kind.
        self._encoding: tuple[EncodingBatchSpanProcessor, ...] = ()
        self._readable = self._processors
        if any(type(p).__name__ == "EncodingBatchSpanProcessor" for p in self._processors):
            from control_plane.observability import otlp_encoding

            self._encoding = tuple(
                p for p in self._processors if isinstance(p, otlp_encoding.EncodingBatchSpanProcessor)
            )
            self._readable = tuple(p for p in self._processors if p not in self._encoding)
            self._encoder = otlp_encoding.SpanEncoder()  # used from the event loop's thread only
            self._encoded = otlp_encoding.EncodedSpan
        self._held = 0
        self._hold = _Hold(self)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._pending_context: SpanContext | None = None
        self._flush_scheduled = False
        _made.add(self)
        # The trace_id field of the last trace a process's span was written in (its spans come in runs).
        self._trace_of: SpanContext | None = None
        self._trace = b""

    def sampled(self, root: SpanContext) -> bool:
        """Whether the spans of `root`'s trace, made as its descendants, are recorded (the sampler's word)."""
        key = (root.trace_id, root.span_id)
        decided = self._decided.get(key)
        if decided is None:
            decision = self._sampler.should_sample(as_parent(root), root.trace_id, "")
            decided = decision.decision is _SAMPLE
            if len(self._decided) >= 4096:
                self._decided.clear()  # a bound, not a cache policy: re-asking costs one call
            self._decided[key] = decided
        return decided

    def flush(self) -> None:
        """Queue the spans not handed to the batch processor yet (they would be at the loop's next pass)."""
        if not self._held:
            self._flush()

    def held(self) -> AbstractContextManager[None]:
        """Spans recorded inside are queued for export together when it ends: one entry of the batch
        processor's queue (its lock, its fork check, a system call) for the spans of a transition."""
        return self._hold

    def _enter(self) -> None:
        self._held += 1

    def _exit(self) -> None:
        self._held -= 1
        if not self._held and self._pending:
            self._hand_over()

    def _hand_over(self) -> None:
        """Queue the pending spans now if they are many, else once the event loop's current pass is over.

        A pass of a loaded loop settles a commit's transitions and ends many calls: their spans go to the
        batch processor as one entry (its queue's fork check, length checks and append once, not per
        transition or call). Entries stay small (`_ENTRY_BYTES`): the processor counts entries, not spans,
        towards its export batch, and an export request must stay far below a receiver's 4 MiB limit.
        """
        if self._pending_bytes >= _ENTRY_BYTES:
            self._flush()
        elif not self._flush_scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop here (a test, a thread): nothing would run the callback
                self._flush()
                return
            self._flush_scheduled = True
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._pending or self._pending_context is None:
            return
        encoded = self._encoded(self._pending_context, b"".join(self._pending), self._resource, self._scope)
        self._pending.clear()
        self._pending_bytes = 0
        for encoding in self._encoding:
            encoding.on_encoded(encoded)

    def server_span(self, name: str, parent: SpanContext | None) -> tuple[SpanContext, bool]:
        """The context of a new SERVER span `name`, child of `parent` (or a new trace's root), and
        whether it is recorded: the ids and the sampler's decision a Tracer's `start_span` makes."""
        if parent is None:
            trace_id = self._ids.generate_trace_id()
            decision = self._root_decision or self._sampler.should_sample(None, trace_id, name, _SERVER)
            sampled = decision.decision is _SAMPLE
            flags = TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT
            if self._ids.is_trace_id_random():
                flags |= TraceFlags.RANDOM_TRACE_ID
            state = decision.trace_state or NO_STATE
        else:
            trace_id, sampled = parent.trace_id, self.sampled(parent)
            flags = (TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT) | (
                parent.trace_flags & TraceFlags.RANDOM_TRACE_ID
            )
            state = parent.trace_state
        context = SpanContext(trace_id, self._ids.generate_span_id(), False, TraceFlags(flags), state)
        return context, sampled

    def record(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        start_ns: int,
        end_ns: int,
        attributes: Attributes,
        *,
        kind: SpanKind = SpanKind.INTERNAL,
        status: Status = UNSET,
        links: Sequence[Link] = (),
    ) -> None:
        """Hand the finished span `context` (child of `parent`) to the processors, to be exported."""
        processors = self._processors
        if self._encoding and context.trace_flags.sampled:
            written = self._encoder.written(
                context, parent, name, kind, start_ns, end_ns, attributes, links, status
            )
            if written is not None:  # else a value OTLP cannot carry: the SDK's encoder skips it, logging
                self._queue(written, context)
                processors = self._readable
        if processors:
            span = self._readable_span(
                name, context, parent, start_ns, end_ns, attributes, kind, status, links
            )
            for processor in processors:
                processor.on_end(span)

    def record_in_trace(
        self,
        name: str,
        root: SpanContext,
        span: int,
        parent: int,
        start_ns: int,
        end_ns: int,
        attributes: Attributes,
        *,
        kind: SpanKind = SpanKind.INTERNAL,
        status: Status = UNSET,
    ) -> None:
        """`record` of the span `span` of `root`'s trace, child of its span `parent`, both by id (the
        parent remote, as a derived id's span is): a process's spans, whose contexts are never needed as
        objects unless a processor takes ReadableSpans. `root` is sampled (`sampled(root)` said so).
        """
        processors = self._processors
        if self._encoding:
            if root is not self._trace_of:
                self._trace_of, self._trace = root, self._encoder.trace_field(root.trace_id)
            written = self._encoder.in_trace(
                self._trace, span, parent, True, name, kind, start_ns, end_ns, attributes, status
            )
            if written is not None:
                self._queue(written, root)
                processors = self._readable
        if processors:
            readable = self._readable_span(
                name,
                SpanContext(root.trace_id, span, False, root.trace_flags, NO_STATE),
                child_context(root, parent),
                start_ns,
                end_ns,
                attributes,
                kind,
                status,
                (),
            )
            for processor in processors:
                processor.on_end(readable)

    def _queue(self, written: bytes, context: SpanContext) -> None:
        """Queue a span written for OTLP (`context`: a sampled one of its trace, for the batch processor)."""
        self._pending.append(written)
        self._pending_bytes += len(written)
        self._pending_context = context
        if not self._held:
            self._hand_over()

    def _readable_span(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        start_ns: int,
        end_ns: int,
        attributes: Attributes,
        kind: SpanKind,
        status: Status,
        links: Sequence[Link],
    ) -> ReadableSpan:
        return ReadableSpan(
            name,
            context=context,
            parent=parent,
            resource=self._resource,
            attributes=attributes,
            links=links,
            kind=kind,
            status=status,
            start_time=start_ns,
            end_time=end_ns,
            instrumentation_scope=self._scope,
        )


class _Hold(AbstractContextManager[None]):
    """FinishedSpans.held(): a plain context manager, reused (this runs at every transition)."""

    __slots__ = ("_spans",)

    def __init__(self, spans: FinishedSpans) -> None:
        self._spans = spans

    def __enter__(self) -> None:
        self._spans._enter()

    def __exit__(self, *exc: object) -> None:
        self._spans._exit()


def _constant_root_decision(sampler: Sampler) -> SamplingResult | None:
    """What `sampler` decides for every new trace's root, if that is fixed (OpenTelemetry's always_on and
    always_off, alone or parent-based); None when it must be asked per trace (a trace id ratio, another).

    A server span with no caller's context is such a root: asking the sampler at each call (a result
    object, a look at the current context for a parent the call has not got) would give this same answer.
    """
    root = getattr(sampler, "_root", None) if isinstance(sampler, ParentBased) else sampler
    if isinstance(root, StaticSampler):
        return root.should_sample(None, 0, "")
    return None


def finished_spans(scope: str = SCOPE) -> FinishedSpans | None:
    """What makes finished spans of `scope` on the configured provider; None when tracing is off."""
    if _provider is None:
        return None
    return FinishedSpans(_provider, _processors, scope)
