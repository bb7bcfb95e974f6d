"""The parts of a process stored apart from its row: a large input, and the step runs of map items.

A process row is read and rewritten by every transition of the process. Two things could make it
large, and every transition cost in proportion: the input (a map over `input.buildings` has the
whole list in it) and the step runs of the map items running (up to max_concurrency of them). So:

- An input whose JSON exceeds INPUT_APART_BYTES goes, once, to `wf_process_inputs`; the record says
  `input_apart`. It never changes, so it is kept decoded in memory (bounded by bytes) and read from
  the table only when missing there. Smaller inputs stay in the record (older versions read those).
- A map item's step run (`<step id>#<item>`) is one row of `wf_item_runs`, read when a transition
  asks for that key (see models.StepRuns) and written only when it was read or created.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import orjson

from control_plane.models import (
    ACTIVE_STEP_STATES,
    ProcessRecord,
    StepRun,
    StepRuns,
    StepState,
    step_json,
    step_run,
)
from control_plane.storage.connection import Connection

# Inputs larger than this, as JSON, are stored apart from the process row.
INPUT_APART_BYTES = 8 * 1024
# Decoded inputs kept in memory, at most this many bytes of their JSON together.
_CACHE_BYTES = 64 * 1024 * 1024


class InputCache:
    """Decoded inputs stored apart, by process id, least recently used dropped first (thread-safe: the
    writer thread and the readers' threads both read records)."""

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._used = 0
        self._values: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, process_id: str) -> tuple[bool, Any]:
        with self._lock:
            entry = self._values.get(process_id)
            if entry is None:
                return False, None
            self._values.move_to_end(process_id)
            return True, entry[0]

    def put(self, process_id: str, value: Any, size: int) -> None:
        self.forget([process_id])
        if size > self._budget:
            return
        with self._lock:
            self._values[process_id] = (value, size)
            self._used += size
            while self._used > self._budget:
                _, (_, dropped) = self._values.popitem(last=False)
                self._used -= dropped

    def forget(self, process_ids: list[str]) -> None:
        with self._lock:
            for process_id in process_ids:
                entry = self._values.pop(process_id, None)
                if entry is not None:
                    self._used -= entry[1]


_INPUTS = InputCache(_CACHE_BYTES)


def record_of(conn: Connection, document: str | bytes, *, item_runs: bool) -> ProcessRecord:
    """A record from its row's JSON, with its input if stored apart; with `item_runs`, every map item's
    step run too (a record for reading), else none yet (a transition's: see `attach_item_runs`)."""
    raw = orjson.loads(document)
    if raw.get("input_apart"):
        raw["input"] = _input(conn, raw["id"])
    record = ProcessRecord.from_json(raw)
    if item_runs and _has_items(record):
        steps = record.steps
        assert isinstance(steps, StepRuns)
        for key, run in _all_item_runs(conn, record.id).items():
            if not dict.__contains__(steps, key):
                dict.__setitem__(steps, key, run)
    return record


def attach_item_runs(conn: Connection, record: ProcessRecord, current_steps: str) -> None:
    """Let a transition's record read its map items' step runs from `conn` as it asks for them
    (`current_steps`: the row's column, whose active items `active_steps` carries over)."""
    steps = record.steps
    if not isinstance(steps, StepRuns) or not _has_items(record):
        return
    steps.active_items = [key for key in current_steps.split(",") if "#" in key]
    process_id = record.id

    def fetch(key: str) -> StepRun | None:
        row = conn.execute(
            "SELECT run FROM wf_item_runs WHERE process_id = ? AND step_key = ?", (process_id, key)
        ).fetchone()
        return step_run(orjson.loads(row[0])) if row else None

    steps.attach(fetch, lambda: _all_item_runs(conn, process_id))


def save_parts(conn: Connection, record: ProcessRecord, document: dict[str, Any], *, new: bool) -> None:
    """Store what goes apart from the row of `record` (whose JSON `document` this takes it out of)."""
    if new:
        encoded = orjson.dumps(record.input, default=str)
        if len(encoded) > INPUT_APART_BYTES:
            conn.execute(
                "INSERT INTO wf_process_inputs (process_id, input) VALUES (?, ?)",
                (record.id, encoded.decode()),
            )
            _INPUTS.put(record.id, record.input, len(encoded))
            record.input_apart = True
            document["input_apart"] = True
    if record.input_apart:
        document.pop("input", None)
    steps = record.steps
    removed = steps.removed if isinstance(steps, StepRuns) else set()
    runs = [(key, run) for key, run in dict.items(steps) if "#" in key]
    gone = [(record.id, key) for key in removed if not dict.__contains__(steps, key)]
    if gone:
        conn.executemany("DELETE FROM wf_item_runs WHERE process_id = ? AND step_key = ?", gone)
    if runs:
        conn.executemany(
            "INSERT INTO wf_item_runs (process_id, step_key, state, run) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (process_id, step_key) DO UPDATE SET state = excluded.state, run = excluded.run",
            [
                (record.id, key, run.state.value, orjson.dumps(step_json(run), default=str).decode())
                for key, run in runs
            ],
        )
    if isinstance(steps, StepRuns):
        # As the row now says (should the transition save the record again).
        steps.active_items = [key for key, run in runs if run.state in ACTIVE_STEP_STATES] + [
            key for key in steps.active_items if key not in removed and not dict.__contains__(steps, key)
        ]
        steps.removed.clear()


def active_steps(record: ProcessRecord) -> list[str]:
    """The keys of the record's active steps, map items' included, reading none of theirs: an item's
    run not read by this transition has not changed, so it is active if the row listed it."""
    steps = record.steps
    active = [key for key, run in dict.items(steps) if run.state in ACTIVE_STEP_STATES]
    if isinstance(steps, StepRuns) and steps.active_items:
        active += [
            key
            for key in steps.active_items
            if key not in steps.removed and not dict.__contains__(steps, key)
        ]
    return active


def item_in_incident(conn: Connection, record: ProcessRecord) -> bool:
    """Whether a map item's step of the process is in INCIDENT (after `save_parts`: as stored now)."""
    if not _maps_running(record):
        return False
    row = conn.execute(
        "SELECT 1 FROM wf_item_runs WHERE process_id = ? AND state = 'incident' LIMIT 1", (record.id,)
    ).fetchone()
    return row is not None


def _has_items(record: ProcessRecord) -> bool:
    """Whether the record may have item runs stored apart: it has a map step that started items (a
    failed map leaves its items' runs, cancelled, as a failure leaves the other steps')."""
    return any(run.items_started for key, run in dict.items(record.steps) if "#" not in key)


def _maps_running(record: ProcessRecord) -> bool:
    """Whether a map step of the record runs items (whose steps may be in INCIDENT)."""
    return any(
        run.items_started and run.state is StepState.RUNNING
        for key, run in dict.items(record.steps)
        if "#" not in key
    )


def _all_item_runs(conn: Connection, process_id: str) -> dict[str, StepRun]:
    rows = conn.execute("SELECT step_key, run FROM wf_item_runs WHERE process_id = ?", (process_id,))
    return {key: step_run(orjson.loads(run)) for key, run in rows}


def _input(conn: Connection, process_id: str) -> Any:
    found, value = _INPUTS.get(process_id)
    if found:
        return value
    row = conn.execute("SELECT input FROM wf_process_inputs WHERE process_id = ?", (process_id,)).fetchone()
    if row is None:
        return None  # deleted with its process meanwhile (retention)
    value = orjson.loads(row[0])
    _INPUTS.put(process_id, value, len(row[0]))
    return value


def delete_parts(conn: Connection, process_ids: list[tuple[str]]) -> None:
    """Delete the parts of processes that go (retention)."""
    conn.executemany("DELETE FROM wf_process_inputs WHERE process_id = ?", process_ids)
    conn.executemany("DELETE FROM wf_item_runs WHERE process_id = ?", process_ids)
    _INPUTS.forget([process_id for (process_id,) in process_ids])
