"""Fields that log lines carry while a piece of work runs (process, step, attempt, service, ...).

The cores bind what they know around the work (`with bound(process_id=..., step_id=...)`); the log
formatter of the edge (control_plane.logs) adds the bound fields to every line written meanwhile,
so a JSON log can be filtered by process without each call repeating its ids. Plain contextvars:
asyncio tasks inherit the fields of the code that created them, and nothing leaks across tasks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

# The fields a log line may carry, in the order JSON lines show them.
FIELDS = ("process_id", "definition", "step_id", "attempt", "service", "instance_id", "trace_id", "span_id")

_EMPTY: MappingProxyType[str, Any] = MappingProxyType({})
_bound: ContextVar[MappingProxyType[str, Any]] = ContextVar("log_fields", default=_EMPTY)


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add `fields` (those not None) to every log line written inside the block."""
    given = {key: value for key, value in fields.items() if value is not None}
    token = _bound.set(MappingProxyType({**_bound.get(), **given}))
    try:
        yield
    finally:
        _bound.reset(token)


def current() -> MappingProxyType[str, Any]:
    """The fields bound where this is called."""
    return _bound.get()
