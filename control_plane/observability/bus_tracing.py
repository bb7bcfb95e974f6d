"""Bus messages in traces: a publisher's trace rides in the message's `traceparent` header, and each
frame delivered to a subscriber is a span linked to the traces of the messages it carries.

A link, not a parent: one frame carries messages of many traces, and a message is delivered many
times (to each consumer, again after a nack); OpenTelemetry's messaging conventions link them.
Called only when tracing is on (see tracing.enabled).
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind

from control_plane.core.bus.consumer import Batch
from control_plane.core.limits import MAX_HEADERS
from control_plane.models import OutgoingMessage
from control_plane.observability.tracing import current_traceparent, parse_traceparent

TRACEPARENT = "traceparent"
_tracer = trace.get_tracer("hms-mgmt.bus")


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
    with _tracer.start_as_current_span(
        f"deliver {pattern}",
        kind=SpanKind.CONSUMER,
        links=links,
        attributes={
            "messaging.system": "hms-mgmt",
            "messaging.operation.type": "deliver",
            "messaging.consumer.group.name": first.consumer,
            "messaging.batch.message_count": len(batch.deliveries),
        },
    ):
        pass
