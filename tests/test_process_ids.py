"""Process ids are UUIDs of version 7: they sort by creation time and stay unguessable."""

from __future__ import annotations

import uuid

from control_plane.core.workflow.ids import new_process_id


def test_a_process_id_is_a_version_7_uuid_carrying_its_creation_millisecond() -> None:
    made = uuid.UUID(new_process_id(1_764_590_400.123_9))

    assert (made.version, made.variant) == (7, uuid.RFC_4122)
    assert made.int >> 80 == 1_764_590_400_123


def test_ids_sort_by_creation_time_and_differ_within_one_millisecond() -> None:
    # Two milliseconds apart: a float's rounding may move a time to the millisecond before, never to the
    # one of its neighbour.
    times = [1_700_000_000.0 + step * 0.002 for step in range(2_000)]
    ids = [new_process_id(t) for t in times]
    same_millisecond = {new_process_id(1_700_000_000.5) for _ in range(10_000)}

    assert ids == sorted(ids)
    assert len(same_millisecond) == 10_000
