"""Nominal times of a schedule spec: checking a spec, and the first nominal time after a moment.

Times are computed, never remembered in memory: every replica (and every restart) derives the same
nominal times, and the same jitter for each, from the stored spec alone.
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from control_plane.errors import FieldViolation
from control_plane.models.schedule import ScheduleSpec

MIN_INTERVAL_S = 1.0
MAX_JITTER_S = 86_400.0
# Cron fields: minute hour day-of-month month day-of-week (no seconds field, no year).
_CRON_FIELDS = 5
MAX_CRON = 256
# Nominal times counted one by one when skipped past the catch-up window; beyond, the count stops.
MAX_COUNTED = 10_000


def check_spec(spec: ScheduleSpec) -> list[FieldViolation]:
    """Every problem of a spec, each naming its field ("spec.cron", "spec.interval", ...)."""
    violations: list[FieldViolation] = []
    if bool(spec.cron) == bool(spec.interval_s):
        violations.append(FieldViolation("spec", "give exactly one of cron and interval"))
    if spec.cron:
        violations += _check_cron(spec)
    elif spec.time_zone:
        violations.append(FieldViolation("spec.time_zone", "applies to cron only"))
    if spec.interval_s:
        if spec.interval_s < MIN_INTERVAL_S:
            violations.append(FieldViolation("spec.interval", f"must be at least {MIN_INTERVAL_S:g} s"))
        if not _whole_ms(spec.interval_s) or not _whole_ms(spec.phase_s):
            violations.append(
                FieldViolation("spec.interval", "interval and phase must be whole milliseconds")
            )
        if not 0 <= spec.phase_s < spec.interval_s:
            violations.append(FieldViolation("spec.phase", "must be at least 0 and less than the interval"))
    elif spec.phase_s:
        violations.append(FieldViolation("spec.phase", "applies to an interval only"))
    if not 0 <= spec.jitter_s <= MAX_JITTER_S:
        violations.append(FieldViolation("spec.jitter", f"must be between 0 and {MAX_JITTER_S:g} s"))
    if spec.start_time is not None and spec.end_time is not None and spec.end_time <= spec.start_time:
        violations.append(FieldViolation("spec.end_time", "must be after start_time"))
    return violations


def _whole_ms(seconds: float) -> bool:
    return abs(seconds * 1000 - round(seconds * 1000)) < 1e-6


def _check_cron(spec: ScheduleSpec) -> list[FieldViolation]:
    violations: list[FieldViolation] = []
    if len(spec.cron) > MAX_CRON:
        return [FieldViolation("spec.cron", f"at most {MAX_CRON} characters")]
    if len(spec.cron.split()) != _CRON_FIELDS:
        violations.append(
            FieldViolation("spec.cron", "expected 5 fields: minute hour day-of-month month day-of-week")
        )
    else:
        try:
            CronSim(spec.cron, datetime.now(UTC))
        except CronSimError as exc:
            violations.append(FieldViolation("spec.cron", f"not a cron expression: {exc}"))
    if spec.time_zone:
        try:
            ZoneInfo(spec.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            violations.append(FieldViolation("spec.time_zone", "not an IANA time zone, e.g. Europe/Berlin"))
    return violations


def following(spec: ScheduleSpec, after: float) -> float | None:
    """The first nominal time strictly after `after` (within start and end time), or None when there is none."""
    if spec.start_time is not None and after < spec.start_time:
        # The start time itself may be a nominal time: look from just before it.
        after = math.nextafter(spec.start_time, -math.inf)
    found = _interval_after(spec, after) if spec.interval_s else _cron_after(spec, after)
    if found is None or (spec.end_time is not None and found > spec.end_time):
        return None
    return found


def _interval_after(spec: ScheduleSpec, after: float) -> float:
    # In whole milliseconds, so that adding intervals never drifts and every replica agrees to the bit.
    interval = round(spec.interval_s * 1000)
    anchor = round(((spec.start_time or 0.0) + spec.phase_s) * 1000)
    steps = (math.floor(after * 1000) - anchor) // interval + 1
    found = anchor + steps * interval
    while found / 1000 <= after:
        found += interval
    return found / 1000


def _cron_after(spec: ScheduleSpec, after: float) -> float | None:
    zone = ZoneInfo(spec.time_zone) if spec.time_zone else UTC
    try:
        return next(iter(CronSim(spec.cron, datetime.fromtimestamp(after, zone)))).timestamp()
    except StopIteration:  # an expression that never matches again (e.g. 30 February)
        return None


def count_between(spec: ScheduleSpec, first: float, before: float) -> tuple[int, float | None]:
    """How many nominal times from `first` (one of them) are before `before`, and the first one that is not.

    Counts one by one up to MAX_COUNTED (an interval's are counted at once); past that, jumps.
    """
    if spec.interval_s:
        nxt = following(spec, math.nextafter(before, -math.inf))
        if nxt is not None:
            return max(round((nxt - first) / spec.interval_s), 0), nxt
        # Past the end time: every nominal time from `first` to the end was skipped.
        end = spec.end_time if spec.end_time is not None else first
        return math.floor((end - first) / spec.interval_s + 1e-9) + 1, None
    count: int = 0
    current: float | None = first
    while current is not None and current < before and count < MAX_COUNTED:
        count, current = count + 1, following(spec, current)
    if current is not None and current < before:
        current = following(spec, math.nextafter(before, -math.inf))
    return count, current


def jitter(schedule_id: str, spec: ScheduleSpec, nominal: float) -> float:
    """The delay of the start of one nominal time: random-looking, the same on every replica."""
    if not spec.jitter_s:
        return 0.0
    digest = hashlib.sha256(f"{schedule_id}|{nominal!r}".encode()).digest()
    return spec.jitter_s * int.from_bytes(digest[:8], "big") / 2**64


def rfc3339(at: float) -> str:
    """`at` as RFC 3339 UTC with seconds ("2026-12-01T01:00:00Z"), milliseconds only when not whole."""
    moment = datetime.fromtimestamp(round(at * 1000) / 1000, UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond // 1000:03d}"
    return text + "Z"
