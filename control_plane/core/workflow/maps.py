"""Map steps: the list a map step runs over, and how its items' step runs are named in a record.

A map step's items run inside the process, at most `max_concurrency` at once: an item's step run is
kept in the record under `<step id>#<item>` while the item runs, and dropped when the item ends (its
output then goes to the store's map items, apart from the record). So the record holds the running
items only, whatever the length of the list; and the store keeps even those in rows of their own,
read by a transition only when it looks one up by key (see models.StepRuns), so that an item's
transitions cost the same whatever `max_concurrency` is: code here looks items' runs up by key and
never walks the record's steps on an item's behalf.

The list is not stored either: it is the value of the step's `items` expression over what the step
saw when it started, which cannot change afterwards (it reads the input and earlier steps only), so
it is evaluated again when a replica or a restarted control plane needs an item it has not cached.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from control_plane.core.workflow.definition import Step
from control_plane.core.workflow.expressions import ExpressionError

# Most items in the list of one map step.
MAX_ITEMS = 100_000
# Lists kept in memory, by (process, step, when it started): those of the maps running now.
_CACHED = 64
_LISTS: OrderedDict[tuple[str, str, float], tuple[Any, ...]] = OrderedDict()


class MapItemsError(Exception):
    """The items expression failed, or its value is not a list of at most MAX_ITEMS."""


def item_key(step_id: str, item: int) -> str:
    """The key, in a record's steps, of step `step_id` run for item `item`."""
    return f"{step_id}#{item}"


def split_key(key: str) -> tuple[str, int | None]:
    """(step id, item) of a key; item None for a step that does not run per item."""
    step_id, mark, item = key.partition("#")
    return step_id, int(item) if mark else None


def items_of(
    process_id: str, step: Step, started_at: float, activation: Callable[[], Mapping[str, Any]]
) -> Sequence[Any]:
    """The list of a map step of a process, from the cache or evaluated over `activation()` (built
    only then: it walks the record's steps, which an item's transition must not pay for each time)."""
    key = (process_id, step.id, started_at)
    items = _LISTS.get(key)
    if items is not None:
        _LISTS.move_to_end(key)
        return items
    assert step.map is not None
    try:
        value = step.map.items.evaluate(activation())
    except ExpressionError as exc:
        raise MapItemsError(str(exc)) from None
    if not isinstance(value, list):
        raise MapItemsError(f"items {step.map.items.text!r} must be a list, got {type(value).__name__}")
    if len(value) > MAX_ITEMS:
        raise MapItemsError(f"items {step.map.items.text!r} has {len(value)} items (at most {MAX_ITEMS})")
    items = _LISTS[key] = tuple(value)
    while len(_LISTS) > _CACHED:
        _LISTS.popitem(last=False)
    return items
