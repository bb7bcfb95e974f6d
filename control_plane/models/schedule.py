"""Schedules: what starts processes on a calendar, and the state that makes each nominal time start once."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class OverlapPolicy(StrEnum):
    """What a nominal time does while the schedule's previous start still runs."""

    SKIP = "skip"
    BUFFER_ONE = "buffer_one"
    ALLOW_ALL = "allow_all"


class TriggerOutcome(StrEnum):
    """What became of a trigger (or of a nominal time)."""

    STARTED = "started"
    SKIPPED = "skipped"
    BUFFERED = "buffered"


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """When a schedule fires: a cron expression in a time zone, or a fixed interval (seconds)."""

    cron: str = ""
    time_zone: str = ""
    interval_s: float = 0.0
    phase_s: float = 0.0
    jitter_s: float = 0.0
    start_time: float | None = None
    end_time: float | None = None


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    """A schedule as stored: its configuration and where it is, updated by compare-and-set on `revision`."""

    id: str
    spec: ScheduleSpec
    definition: str
    version: int  # 0: the latest at each start
    input: dict[str, Any]
    overlap: OverlapPolicy
    catchup_window_s: float
    created_at: float
    paused: bool = False
    note: str = ""
    # The next nominal time not yet handled; None once the schedule has ended (past its end time).
    next_nominal: float | None = None
    # BUFFER_ONE: the nominal time (and business key) held back until the previous start ends.
    buffered_nominal: float | None = None
    buffered_key: str = ""
    last_process_id: str = ""
    last_nominal: float | None = None
    last_error: str = ""
    started: int = 0
    skipped_overlaps: int = 0
    missed_catchup: int = 0
    revision: int = 0

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-compatible dict (revision aside: it is a column of its own)."""
        raw = dataclasses.asdict(self)
        del raw["revision"]
        return raw

    @classmethod
    def from_json(cls, raw: dict[str, Any], revision: int) -> ScheduleRecord:
        """Rebuild a record stored by `to_json`."""
        spec = ScheduleSpec(**raw.pop("spec"))
        return cls(**{**raw, "spec": spec, "overlap": OverlapPolicy(raw["overlap"]), "revision": revision})
