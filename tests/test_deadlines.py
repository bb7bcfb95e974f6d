"""Keyed deadlines (core/deadlines.py): order, moves, and memory that follows what is live."""

from __future__ import annotations

import random

from control_plane.core.deadlines import Deadlines


def test_due_keys_come_out_earliest_first_and_only_once() -> None:
    deadlines: Deadlines[str] = Deadlines()
    for key, due in (("c", 3.0), ("a", 1.0), ("b", 2.0), ("d", 9.0)):
        deadlines.set(key, due)

    assert deadlines.next_due() == 1.0
    assert deadlines.pop_due(2.5) == ["a", "b"]
    assert deadlines.pop_due(2.5) == []
    assert deadlines.pop_due(10.0, limit=1) == ["c"]
    assert deadlines.pop_due(10.0) == ["d"]
    assert len(deadlines) == 0 and deadlines.next_due() is None


def test_a_moved_deadline_fires_at_its_new_time() -> None:
    deadlines: Deadlines[str] = Deadlines()
    assert deadlines.set("beat", 1.0)  # the earliest: a sleeper must wake
    assert not deadlines.set("beat", 5.0)  # later: the entry at 1.0 stays and is pushed again then
    assert deadlines.pop_due(1.0) == []
    assert deadlines.get("beat") == 5.0
    assert deadlines.set("beat", 0.5)  # earlier again
    assert deadlines.pop_due(0.5) == ["beat"]
    assert deadlines.pop_due(10.0) == []


def test_discarded_deadlines_never_come_out() -> None:
    deadlines: Deadlines[str] = Deadlines()
    deadlines.set("gone", 1.0)
    deadlines.set("kept", 2.0)
    deadlines.discard("gone")
    deadlines.discard("never-set")

    assert "gone" not in deadlines
    assert deadlines.next_due() == 2.0
    assert deadlines.pop_due(5.0) == ["kept"]


def test_memory_stays_within_twice_the_live_deadlines() -> None:
    """Discards and moves leave dead entries; they are dropped once they outnumber the live ones."""
    deadlines: Deadlines[int] = Deadlines()
    rng = random.Random(7)
    live: dict[int, float] = {}
    for step in range(50_000):
        key = rng.randrange(2_000)
        action = rng.random()
        if action < 0.4:
            due = rng.uniform(0, 1e6)
            deadlines.set(key, due)
            live[key] = due
        elif action < 0.8:
            deadlines.discard(key)
            live.pop(key, None)
        else:
            deadlines.set(key, rng.uniform(0, 1e6))  # moved earlier or later
            live[key] = deadlines.get(key) or 0.0
        assert deadlines.footprint <= 2 * len(deadlines) + 65, step
    assert len(deadlines) == len(live)
    popped = deadlines.pop_due(2e6)
    assert sorted(popped) == sorted(live)
    assert [live[k] for k in popped] == sorted(live.values())
    assert deadlines.footprint == 0
