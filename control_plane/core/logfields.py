"""Fields that log lines carry while a piece of work runs (process, step, attempt, service, ...).

The cores bind what they know around the work (`with bound(process_id=..., step_id=...)`); the log
formatter of the edge (control_plane.logs) adds the bound fields to every line written meanwhile,
so a JSON log can be filtered by process without each call repeating its ids. Plain contextvars:
asyncio tasks inherit the fields of the code that created them, and nothing leaks across tasks.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from types import MappingProxyType, TracebackType
from typing import Any

# The fields a log line may carry, in the order JSON lines show them.
FIELDS = ("process_id", "definition", "step_id", "attempt", "service", "instance_id", "trace_id", "span_id")

_EMPTY: MappingProxyType[str, Any] = MappingProxyType({})
_bound: ContextVar[MappingProxyType[str, Any]] = ContextVar("log_fields", default=_EMPTY)


def bound(**fields: Any) -> _Bound:
    """Add `fields` (those not None) to every log line written inside the block (`with bound(...)`)."""
    return _Bound(fields)


class _Bound:
    """The block of `bound`: a plain class, not a generator context manager, as it wraps every
    workflow transition (a profile at 100 transitions in flight showed the generator's cost)."""

    __slots__ = ("_fields", "_token")

    def __init__(self, fields: dict[str, Any]) -> None:
        self._fields = fields
        self._token: Token[MappingProxyType[str, Any]] | None = None

    def __enter__(self) -> None:
        given = {key: value for key, value in self._fields.items() if value is not None}
        self._token = _bound.set(MappingProxyType({**_bound.get(), **given}))

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._token is not None:
            _bound.reset(self._token)
            self._token = None


def current() -> MappingProxyType[str, Any]:
    """The fields bound where this is called."""
    return _bound.get()
