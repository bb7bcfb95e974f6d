"""The serving process sets its start-up objects aside from the cyclic collector and collects less often."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from control_plane.cli import settle_collector


@pytest.fixture
def collector() -> Iterator[None]:
    """Whatever the test does to the collector is undone after it."""
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_settle_collector_freezes_what_lives_and_widens_young_collections(collector: None) -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    kept = [object() for _ in range(10)]  # alive at the call: set aside, no longer walked
    _, middle, old = gc.get_threshold()

    settle_collector()

    assert gc.get_freeze_count() > len(kept)
    assert gc.get_threshold() == (20_000, middle, old)
    # Garbage made afterwards is still collected: a cycle disappears in a collection.
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
