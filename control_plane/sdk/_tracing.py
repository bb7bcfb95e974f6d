"""A worker's span per task, continuing the process's trace from the Task's `traceparent`.

The control plane puts its span of the attempt in `Task.traceparent`, so the span made here (and
everything the handler traces inside it) is that attempt's child. OpenTelemetry's API only: the
application configures the SDK and exporter (or not: then the API's tracer records nothing), and
without the `opentelemetry-api` package installed tasks simply run untraced.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from hms.mgmt.v1 import workflow_pb2 as pb

try:
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # pragma: no cover - tracing is optional for SDK users
    trace = None  # type: ignore[assignment]

_SCOPE = "hms-mgmt.sdk.worker"


@contextmanager
def task_span(task: pb.Task, service: str) -> Iterator[None]:
    """Run the block in a CONSUMER span named `<service> <task type>`, the child of the task's attempt."""
    if trace is None or not task.traceparent:
        yield
        return
    carrier = {"traceparent": task.traceparent}
    if task.tracestate:
        carrier["tracestate"] = task.tracestate
    parent = TraceContextTextMapPropagator().extract(carrier)
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
