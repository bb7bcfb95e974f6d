"""Search attributes: what a definition declares a process is about (`search_attributes`), as indexed values."""

from __future__ import annotations

from typing import Any

import orjson

from control_plane.core.workflow.definition import Definition
from control_plane.core.workflow.expressions import ExpressionError
from control_plane.models import EventType, HistoryEvent, ProcessRecord, StepState

# An indexed value longer than this is cut: the index is for finding, not for storing documents.
MAX_VALUE = 256
# Events after which an attribute may have changed: it reads the input and completed steps' outputs.
_CHANGING = frozenset({EventType.PROCESS_STARTED, EventType.STEP_COMPLETED})


def indexed(value: Any) -> str:
    """The text a value is indexed (and searched) by: a string as is, anything else as compact JSON."""
    text = value if isinstance(value, str) else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return text[:MAX_VALUE]


def attributes(definition: Definition, record: ProcessRecord) -> dict[str, str]:
    """The attributes of a process now; one whose expression cannot be evaluated yet is left out."""
    # Not the map items' runs: per item, no attribute can name them, and they are read on demand.
    steps = {
        sid: {"output": run.output}
        for sid, run in dict.items(record.steps)
        if run.state is StepState.COMPLETED and "#" not in sid
    }
    activation = {"input": record.input, "steps": steps}
    values: dict[str, str] = {}
    for name, expression in definition.search_attributes.items():
        try:
            value = expression.evaluate(activation)
        except ExpressionError:
            continue  # reads a step that has not completed (yet), or a field the input lacks
        if value is not None:
            values[name] = indexed(value)
    return values


def changes(
    definition: Definition, record: ProcessRecord, events: list[HistoryEvent]
) -> dict[str, str | None] | None:
    """What a transition changed in the indexed attributes (None for an attribute gone); None: nothing."""
    if not definition.search_attributes or not any(e.type in _CHANGING for e in events):
        return None
    now = attributes(definition, record)
    if now == record.search:
        return None
    changed: dict[str, str | None] = {k: v for k, v in now.items() if record.search.get(k) != v}
    changed.update({k: None for k in record.search if k not in now})
    record.search = now
    return changed
