"""Schedule SQL shared by both backends: one row per schedule, written by compare-and-set on its revision."""

from __future__ import annotations

import orjson

from control_plane.models.schedule import ScheduleRecord
from control_plane.storage.connection import Connection

_COLUMNS = "record, revision"


def _buffered(record: ScheduleRecord) -> int:
    # A paused schedule starts nothing, not even what it buffered: the leader need not look at it.
    return int(record.buffered_nominal is not None and not record.paused)


def _record(row: tuple[str, int]) -> ScheduleRecord:
    return ScheduleRecord.from_json(orjson.loads(row[0]), int(row[1]))


def create(conn: Connection, record: ScheduleRecord, next_due: float | None) -> bool:
    """Insert a new schedule at revision 1; False when one with its id exists."""
    cursor = conn.execute(
        "INSERT INTO schedules (id, revision, next_due, buffered, record) VALUES (?, 1, ?, ?, ?) "
        "ON CONFLICT (id) DO NOTHING",
        (
            record.id,
            next_due,
            _buffered(record),
            orjson.dumps(record.to_json()).decode(),
        ),
    )
    return cursor.rowcount == 1


def update(conn: Connection, record: ScheduleRecord, next_due: float | None) -> bool:
    """Store `record` as the next revision, only if the stored one is still `record.revision`."""
    cursor = conn.execute(
        "UPDATE schedules SET revision = ?, next_due = ?, buffered = ?, record = ? WHERE id = ? AND revision = ?",
        (
            record.revision + 1,
            next_due,
            _buffered(record),
            orjson.dumps(record.to_json()).decode(),
            record.id,
            record.revision,
        ),
    )
    return cursor.rowcount == 1


def delete(conn: Connection, schedule_id: str) -> bool:
    """Remove a schedule; False when there was none."""
    return conn.execute("DELETE FROM schedules WHERE id = ?", (schedule_id,)).rowcount == 1


def get(conn: Connection, schedule_id: str) -> ScheduleRecord | None:
    """One schedule, or None."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM schedules WHERE id = ?", (schedule_id,)).fetchone()
    return _record(row) if row else None


def page(conn: Connection, after: str, limit: int) -> list[ScheduleRecord]:
    """Up to `limit` schedules with ids after `after`, by id."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM schedules WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
    ).fetchall()
    return [_record(r) for r in rows]


def due(conn: Connection, now: float, limit: int) -> tuple[list[ScheduleRecord], list[ScheduleRecord]]:
    """(Up to `limit` schedules due by `now`, earliest first; up to `limit` holding a buffered start)."""
    due_rows = conn.execute(
        f"SELECT {_COLUMNS} FROM schedules WHERE next_due <= ? ORDER BY next_due, id LIMIT ?", (now, limit)
    ).fetchall()
    buffered_rows = conn.execute(
        f"SELECT {_COLUMNS} FROM schedules WHERE buffered <> 0 AND NOT (next_due <= ?) ORDER BY id LIMIT ?",
        (now, limit),
    ).fetchall()
    return [_record(r) for r in due_rows], [_record(r) for r in buffered_rows]


def next_due(conn: Connection) -> tuple[float | None, bool]:
    """(The earliest due time of any schedule or None, whether any holds a buffered start)."""
    row = conn.execute("SELECT MIN(next_due), MAX(buffered) FROM schedules").fetchone()
    return (None if row is None or row[0] is None else float(row[0])), bool(row and row[1])
