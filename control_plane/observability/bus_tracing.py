"""Bus messages in traces: a publisher's trace rides in the message's `traceparent` header, and each
frame delivered to a subscriber is a span linked to the traces of the messages it carries.

A link, not a parent: one frame carries messages of many traces, and a message is delivered many
times (to each consumer, again after a nack); OpenTelemetry's messaging conventions link them.
Called only when tracing is on (see tracing.enabled). A delivery span stands for a frame already
handed over, so it is made finished (tracing.FinishedSpans), a child of the Subscribe call's span.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.trace import Link, SpanContext, SpanKind
from opentelemetry.util.types import Attributes

from control_plane.core.bus.consumer import Batch
from control_plane.core.limits import MAX_HEADERS
from control_plane.models import OutgoingMessage
from control_plane.observability.tracing import (
    FinishedSpans,
    current_traceparent,
    finished_spans,
    parse_traceparent,
)

TRACEPARENT = "traceparent"
SCOPE = "hms-mgmt.bus"
_tracer = trace.get_tracer(SCOPE)
_finished: list[FinishedSpans] = []  # made on first use, once tracing is configured


def carry_trace(messages: Sequence[OutgoingMessage]) -> list[OutgoingMessage]:
    """`messages`, each with the current span's `traceparent` header where it had none (and has room)."""
    parent = current_traceparent()
    if not parent:
        return list(messages)
    return [
        m
        if TRACEPARENT in m.headers or len(m.headers) >= MAX_HEADERS
        else m._replace(headers={**m.headers, TRACEPARENT: parent})
        for m in messages
    ]


def delivered(batch: Batch, pattern: str) -> None:
    """A span for one delivered frame, linked to the publishers' traces of its messages (if any had one)."""
    links = []
    for delivery in batch.deliveries:
        header = delivery.message.headers.get(TRACEPARENT)
        context = parse_traceparent(header) if header else None
        if context is not None:
            links.append(Link(context, {"messaging.message.id": str(delivery.message.sequence)}))
    if not links:
        return
    first = batch.deliveries[0]
    attributes: Attributes = {
        "messaging.system": "hms-mgmt",
        "messaging.operation.type": "deliver",
        "messaging.consumer.group.name": first.consumer,
        "messaging.batch.message_count": len(batch.deliveries),
    }
    name = f"deliver {pattern}"
    parent = trace.get_current_span().get_span_context()
    if not _finished and (made := finished_spans(SCOPE)) is not None:
        _finished.append(made)
    if not parent.is_valid or not _finished:
        # Outside a traced call (not how the Bus servicer calls it): a span of a trace of its own.
        with _tracer.start_as_current_span(name, kind=SpanKind.CONSUMER, links=links, attributes=attributes):
            return
    finished = _finished[0]
    if not parent.trace_flags.sampled or not finished.sampled(parent):
        return
    now = time.time_ns()
    span = random.getrandbits(64) or 1
    finished.record(
        name,
        SpanContext(parent.trace_id, span, False, parent.trace_flags, parent.trace_state),
        parent,
        now,
        now,
        attributes,
        kind=SpanKind.CONSUMER,
        links=links,
    )
