"""The workflow's SQL: run on a connection by a backend, never by the core."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import orjson

from control_plane.models import (
    DefinitionVersion,
    EventType,
    HistoryEvent,
    Incident,
    OutgoingMessage,
    ProcessRecord,
    ProcessSearch,
    ProcessState,
    StepState,
    StoredMessage,
    TaskAttempt,
)
from control_plane.storage import sql_bus
from control_plane.storage.connection import Connection, KeyedWrites
from control_plane.storage.sql_process_parts import (
    active_steps,
    attach_item_runs,
    delete_parts,
    item_in_incident,
    record_of,
    save_parts,
)


def _dumps(value: Any) -> str:
    # orjson: records, history and tasks are (de)serialised on every transition, several times faster
    # than the json module.
    return orjson.dumps(value, default=str).decode()


# The unique index on (definition, business_key) is partial (WHERE business_key <> ''): a query may use
# it only when its own WHERE implies that, which `business_key = ?` alone does not (the planner cannot
# see the parameter). Without the second term SQLite scanned every process on each keyed StartProcess.
FIND_BY_KEY = (
    "SELECT record FROM wf_processes WHERE definition = ? AND business_key = ? AND business_key <> ''"
)

_INSERT_HISTORY = (
    "INSERT INTO wf_history (process_id, sequence, time, type, step_id, attempt, state, details) VALUES "
)
_HISTORY_WIDTH = 8
_INSERT_PROCESS = (
    "INSERT INTO wf_processes (id, definition, version, business_key, state, created_at, updated_at, "
    "record, ended_at, current_steps, incident, parent_id) VALUES "
)
_PROCESS_WIDTH = 12
_UPDATE_PROCESS = (
    "UPDATE wf_processes SET state = ?, updated_at = ?, record = ?, ended_at = ?, current_steps = ?, "
    "incident = ? WHERE id = ?"
)
# The same for a transition that leaves the indexed columns (state, ended_at) as they are: most steps.
# SQLite rewrites an index entry for every indexed column an UPDATE sets, changed or not: setting the
# same state again cost a step a delete and an insert in wf_processes_by_state and one more page
# written to the WAL per commit (2 -> 1 frames and 25 -> 17 us an update and commit alone, measured).
_UPDATE_PROCESS_SAME_STATE = (
    "UPDATE wf_processes SET updated_at = ?, record = ?, current_steps = ?, incident = ? WHERE id = ?"
)
# The same for several processes at once (PostgreSQL), as a connection that defers them sends it.
_UPDATE_PROCESSES = KeyedWrites(
    "UPDATE wf_processes SET state = v.state, updated_at = v.updated_at, record = v.record, "
    "ended_at = v.ended_at, current_steps = v.current_steps, incident = v.incident FROM (VALUES ",
    ") AS v (state, updated_at, record, ended_at, current_steps, incident, id) WHERE wf_processes.id = v.id",
    7,
)
# Timers are only deleted so (set_timer writes at once, after sending these deletions: it names the table).
_TIMERS = KeyedWrites(
    "INSERT INTO wf_timers (process_id, name, due_at) VALUES ",
    " ON CONFLICT (process_id, name) DO UPDATE SET due_at = excluded.due_at",
    3,
    "DELETE FROM wf_timers WHERE (process_id, name) IN (SELECT * FROM unnest(?::text[], ?::text[]))",
)
# (A token is one task attempt's, of one process, service and type: what the upsert leaves alone is
# what the row already says, so a deferred write may delete the row first and insert it whole.)
_TASKS = KeyedWrites(
    "INSERT INTO wf_tasks (token, process_id, task, owner, service, task_type) VALUES ",
    " ON CONFLICT (token) DO UPDATE SET task = excluded.task, owner = excluded.owner",
    6,
    "DELETE FROM wf_tasks WHERE token = ANY(?)",
)
# One row at a time, where writes are not deferred (SQLite).
_UPSERT_TASK = _TASKS.write + "(?, ?, ?, ?, ?, ?)" + _TASKS.suffix


class SqlWorkflowTx:
    """The workflow's view of one store transaction (see storage.base.WorkflowTx)."""

    def __init__(
        self,
        conn: Connection,
        now: float,
        *,
        owner: str = "",
        lock_row: str = "",
        ahead: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        self._conn = conn
        # Process rows (record, current_steps) the writer read ahead, locked, for this batch's transitions.
        self._ahead = ahead
        self.now = now
        self.published: list[StoredMessage] = []
        self._owner = owner
        # " FOR UPDATE" where other replicas may run a transition of the same process concurrently: the
        # second waits for the first to commit and then reads what it wrote, so no update is lost.
        self._lock_row = lock_row
        self._loaded: list[ProcessRecord] = []  # records whose map items' runs are read on demand
        # (state, ended_at) as each process's row holds them in this transaction, as read or written by it.
        self._indexed: dict[str, tuple[str, float]] = {}

    def load(self, process_id: str) -> ProcessRecord | None:
        """The process (locked for this transaction where replicas share the store), or None.

        Its map items' step runs are read from the store as the transition asks for them, until
        `close` (see models.StepRuns)."""
        row = self._ahead.pop(process_id, None) if self._ahead else None
        if row is None:
            row = self._conn.execute(
                "SELECT record, current_steps, state, ended_at FROM wf_processes "
                f"WHERE id = ?{self._lock_row}",
                (process_id,),
            ).fetchone()
            if row is None:
                return None
            self._indexed[process_id] = (row[2], row[3])
        record = record_of(self._conn, row[0], item_runs=False)
        attach_item_runs(self._conn, record, row[1])
        self._loaded.append(record)
        return record

    def close(self) -> None:
        """The transaction ends: records it loaded read nothing more from it."""
        for record in self._loaded:
            detach = getattr(record.steps, "detach", None)
            if detach is not None:
                detach()
        self._loaded.clear()

    def peek(self, process_id: str) -> ProcessRecord | None:
        """Another process as stored, not locked (a call step reads its child's outcome), or None."""
        row = self._conn.execute("SELECT record FROM wf_processes WHERE id = ?", (process_id,)).fetchone()
        return record_of(self._conn, row[0], item_runs=True) if row else None

    def find_by_key(self, definition: str, business_key: str) -> ProcessRecord | None:
        """The process of a definition with a business key, or None."""
        row = self._conn.execute(FIND_BY_KEY, (definition, business_key)).fetchone()
        return record_of(self._conn, row[0], item_runs=True) if row else None

    def save(self, record: ProcessRecord, *, new: bool) -> None:
        """Insert or update the process (and what is stored apart from its row)."""
        if self._ahead:
            self._ahead.pop(record.id, None)  # read ahead of this write: stale now
        raw = record.to_json(item_runs=False)
        current, incident = _searchable(record)  # before save_parts forgets the items taken out
        save_parts(self._conn, record, raw, new=new)
        document = _dumps(raw)
        incident = incident or int(item_in_incident(self._conn, record))
        if new:
            sql_bus.insert_rows(
                self._conn,
                _INSERT_PROCESS,
                [
                    record.id,
                    record.definition,
                    record.version,
                    record.business_key,
                    record.state.value,
                    record.created_at,
                    record.updated_at,
                    document,
                    record.ended_at,
                    current,
                    incident,
                    record.parent_id,
                ],
                _PROCESS_WIDTH,
            )
            self._indexed[record.id] = (record.state.value, record.ended_at)
            return
        state, ended_at = record.state.value, record.ended_at
        row = (state, record.updated_at, document, ended_at, current, incident, record.id)
        defer = _deferring(self._conn)
        if defer is not None:
            # PostgreSQL: an update that changes no indexed value touches no index (a HOT update).
            defer(_UPDATE_PROCESSES, record.id, row)
        elif self._indexed.get(record.id) == (state, ended_at):
            self._conn.execute(
                _UPDATE_PROCESS_SAME_STATE, (record.updated_at, document, current, incident, record.id)
            )
        else:
            self._conn.execute(_UPDATE_PROCESS, row)
            self._indexed[record.id] = (state, ended_at)

    def put_map_item(self, process_id: str, step_id: str, item: int, *, failed: bool, output: Any) -> None:
        """Keep what one item of a map step ended with (its output, or its error when it failed)."""
        self._conn.execute(
            "INSERT INTO wf_map_items (process_id, step_id, item, failed, output) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (process_id, step_id, item) DO UPDATE SET failed = excluded.failed, output = excluded.output",
            (process_id, step_id, item, int(failed), _dumps(output)),
        )

    def map_outputs(self, process_id: str, step_id: str) -> list[Any]:
        """The outputs of a map step's items in item order (None for a failed item)."""
        rows = self._conn.execute(
            "SELECT failed, output FROM wf_map_items WHERE process_id = ? AND step_id = ? ORDER BY item",
            (process_id, step_id),
        )
        return [None if failed else orjson.loads(output) for failed, output in rows]

    def add_incidents(self, incidents: Sequence[Incident]) -> None:
        """Record incidents opened by this transition."""
        self._conn.executemany(
            "INSERT INTO wf_incidents (process_id, sequence, definition, step_id, error, opened_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (i.process_id, i.sequence, i.definition, i.step_id, _dumps(i.error), i.opened_at)
                for i in incidents
            ],
        )

    def resolve_incidents(self, process_id: str, resolved: Sequence[tuple[str, str]]) -> None:
        """Close the open incidents of steps, saying how (retried, skipped, failed, cancelled)."""
        self._conn.executemany(
            "UPDATE wf_incidents SET resolved_at = ?, resolution = ? "
            "WHERE process_id = ? AND step_id = ? AND resolved_at = 0",
            [(self.now, how, process_id, step_id) for step_id, how in resolved],
        )

    def set_search(self, process_id: str, definition: str, changes: dict[str, str | None]) -> None:
        """Index a process's changed search attributes (None: the attribute has no value any more)."""
        self._conn.executemany(
            "DELETE FROM wf_search WHERE process_id = ? AND definition = ? AND attribute = ?",
            [(process_id, definition, name) for name in changes],
        )
        self._conn.executemany(
            "INSERT INTO wf_search (definition, attribute, value, process_id) VALUES (?, ?, ?, ?)",
            [(definition, name, value, process_id) for name, value in changes.items() if value is not None],
        )

    def history(self, events: Sequence[HistoryEvent]) -> None:
        """Append history events, all of a transition in one statement.

        A step's transition writes three events: executemany would run (and, on SQLite, release and take
        back the GIL around) one statement per row on the writer thread, which waits for the GIL each time
        the event loop is busy."""
        values: list[Any] = []
        for e in events:
            values += (
                e.process_id,
                e.sequence,
                e.time,
                e.type.value,
                e.step_id,
                e.attempt,
                e.state.value,
                _dumps(e.details),
            )
        sql_bus.insert_rows(self._conn, _INSERT_HISTORY, values, _HISTORY_WIDTH)

    def add_tasks(self, tasks: Sequence[TaskAttempt]) -> None:
        """Record outstanding task attempts, owned by this replica (which hands them out)."""
        rows = [
            (t.token, t.process_id, _dumps(t.to_json()), self._owner, t.service, t.task_type) for t in tasks
        ]
        defer = _deferring(self._conn)
        if defer is None:
            self._conn.executemany(_UPSERT_TASK, rows)
            return
        for row in rows:
            defer(_TASKS, row[0], row)

    def remove_tasks(self, tokens: Sequence[str]) -> None:
        """Forget task attempts that ended."""
        defer = _deferring(self._conn)
        if defer is None:
            self._conn.executemany("DELETE FROM wf_tasks WHERE token = ?", [(t,) for t in tokens])
            return
        for token in tokens:
            defer(_TASKS, token, None)

    def set_timer(self, process_id: str, name: str, due_at: float) -> None:
        """Create or move a durable timer."""
        self._conn.execute(
            "INSERT INTO wf_timers (process_id, name, due_at) VALUES (?, ?, ?) "
            "ON CONFLICT (process_id, name) DO UPDATE SET due_at = excluded.due_at",
            (process_id, name, due_at),
        )

    def clear_timer(self, process_id: str, name: str, *, due_by: float | None = None) -> bool:
        """Remove a timer (only if due by `due_by`, when given); False when there was none to remove."""
        if due_by is None:
            cursor = self._conn.execute(
                "DELETE FROM wf_timers WHERE process_id = ? AND name = ?", (process_id, name)
            )
        else:
            cursor = self._conn.execute(
                "DELETE FROM wf_timers WHERE process_id = ? AND name = ? AND due_at <= ?",
                (process_id, name, due_by),
            )
        return cursor.rowcount > 0

    def drop_timers(self, process_id: str, names: Sequence[str]) -> None:
        """Remove timers, if there are any, without reading back how many went (a round trip, pipelined)."""
        if not names:
            return
        defer = _deferring(self._conn)
        if defer is None:
            self._conn.executemany(
                "DELETE FROM wf_timers WHERE process_id = ? AND name = ?",
                [(process_id, name) for name in names],
            )
            return
        for name in names:
            defer(_TIMERS, (process_id, name), None)

    def add_bus_wait(self, process_id: str, step_id: str, pattern: str) -> int:
        """Wait for a Bus message from now on; returns the log sequence after which messages count."""
        (after,) = self._conn.execute("SELECT value FROM counters WHERE name = 'bus_sequence'").fetchone()
        self._conn.execute(
            "INSERT INTO wf_bus_waits (process_id, step_id, pattern, after) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (process_id, step_id) DO UPDATE SET pattern = excluded.pattern, after = excluded.after",
            (process_id, step_id, pattern, after),
        )
        return int(after)

    def clear_bus_wait(self, process_id: str, step_id: str) -> None:
        """Stop waiting for a Bus message."""
        self._conn.execute(
            "DELETE FROM wf_bus_waits WHERE process_id = ? AND step_id = ?", (process_id, step_id)
        )

    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Append Bus messages in this transaction (they become visible after the commit)."""
        if messages:
            self.published += sql_bus.append(self._conn, list(messages), self.now, dedup_window_s=0.0).stored


def _deferring(conn: Connection) -> Callable[[KeyedWrites, Any, Sequence[Any] | None], None] | None:
    """The connection's `defer_keyed`, where it defers writes by key to the commit (PostgreSQL)."""
    defer: Callable[[KeyedWrites, Any, Sequence[Any] | None], None] | None = getattr(
        conn, "defer_keyed", None
    )
    return defer


def read_ahead(conn: Connection, process_ids: list[str], lock_row: str) -> dict[str, tuple[str, str]]:
    """The rows (record, current_steps) of processes, by id, locked as `SqlWorkflowTx.load` locks them;
    in id order, as replicas reading ahead at once must lock (PostgreSQL only: `= ANY` of an array)."""
    rows = conn.execute(
        f"SELECT id, record, current_steps FROM wf_processes WHERE id = ANY(?) ORDER BY id{lock_row}",
        (process_ids,),
    ).fetchall()
    return {pid: (record, current) for pid, record, current in rows}


def definitions(conn: Connection, name: str) -> list[DefinitionVersion]:
    """Every version of a definition (or of all, with name ""), newest first per name."""
    query = "SELECT name, version, digest, source, created_at FROM wf_definitions"
    rows = (
        conn.execute(query + " WHERE name = ? ORDER BY version DESC", (name,))
        if name
        else conn.execute(query + " ORDER BY name, version DESC")
    )
    return [DefinitionVersion(n, int(v), d, s, float(c)) for n, v, d, s, c in rows]


def put_definition(conn: Connection, name: str, digest: str, source: str, now: float) -> tuple[int, bool]:
    """Store a new version unless the latest has the same digest; returns (version, created)."""
    row = conn.execute(
        "SELECT version, digest FROM wf_definitions WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)
    ).fetchone()
    if row is not None and row[1] == digest:
        return int(row[0]), False
    version = int(row[0]) + 1 if row else 1
    conn.execute(
        "INSERT INTO wf_definitions (name, version, digest, source, created_at) VALUES (?, ?, ?, ?, ?)",
        (name, version, digest, source, now),
    )
    return version, True


def process(conn: Connection, process_id: str) -> ProcessRecord | None:
    """One process, or None."""
    row = conn.execute("SELECT record FROM wf_processes WHERE id = ?", (process_id,)).fetchone()
    return record_of(conn, row[0], item_runs=True) if row else None


def list_processes(
    conn: Connection,
    definition: str,
    version: int,
    states: Sequence[ProcessState],
    business_key: str,
    before: tuple[float, str] | None,
    limit: int,
    business_key_prefix: str = "",
    started: tuple[float | None, float | None] = (None, None),
    parent_id: str = "",
    search: ProcessSearch | None = None,
) -> list[ProcessRecord]:
    """Processes matching the filters, newest first, after a (created_at, id) position."""
    where: list[str] = []
    args: list[object] = []
    if parent_id:
        where.append("parent_id = ?")
        args.append(parent_id)
    if definition:
        where.append("definition = ?")
        args.append(definition)
    if version:
        where.append("version = ?")
        args.append(version)
    if states:
        where.append(f"state IN ({','.join('?' * len(states))})")
        args += [s.value for s in states]
    if business_key:
        where.append("business_key = ? AND business_key <> ''")  # the second term lets the key's index serve
        args.append(business_key)
    if business_key_prefix:
        # substr, not LIKE: LIKE ignores ASCII case on SQLite and would need its wildcards escaped.
        where.append("substr(business_key, 1, ?) = ?")
        args += [len(business_key_prefix), business_key_prefix]
    if started[0] is not None:
        where.append("created_at >= ?")
        args.append(started[0])
    if started[1] is not None:
        where.append("created_at < ?")
        args.append(started[1])
    if search is not None:
        _search_clauses(search, where, args)
    if before is not None:
        where.append("(created_at < ? OR (created_at = ? AND id < ?))")
        args += [before[0], before[0], before[1]]
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT record FROM wf_processes {clause} ORDER BY created_at DESC, id DESC LIMIT ?", (*args, limit)
    )
    return [record_of(conn, r[0], item_runs=True) for r in rows.fetchall()]


def _searchable(record: ProcessRecord) -> tuple[str, int]:
    """The process's active steps as ",a,b," (searched for ",a,") and whether it has an open incident.

    Neither reads the map items' runs a transition did not (see sql_process_parts): the active ones
    are carried over from the row, an item in INCIDENT is asked of the store by `save`."""
    active = active_steps(record)
    incident = any(run.state is StepState.INCIDENT for run in dict.values(record.steps))
    return (f",{','.join(active)}," if active else ""), int(incident)


def _search_clauses(search: ProcessSearch, where: list[str], args: list[object]) -> None:
    if search.ended[0] is not None:
        where.append("ended_at >= ? AND ended_at > 0")
        args.append(search.ended[0])
    if search.ended[1] is not None:
        where.append("ended_at < ? AND ended_at > 0")
        args.append(search.ended[1])
    if search.current_step:
        # Containment both dialects spell alike (SQLite has no position(), PostgreSQL no instr()).
        where.append("length(current_steps) <> length(replace(current_steps, ?, ''))")
        args.append(f",{search.current_step},")
    if search.has_incident is not None:
        where.append("incident = ?")
        args.append(int(search.has_incident))
    for name, value in sorted(search.attributes.items()):
        where.append(
            "id IN (SELECT process_id FROM wf_search WHERE definition = ? AND attribute = ? AND value = ?)"
        )
        args += [search.definition, name, value]


def incidents(
    conn: Connection,
    definition: str,
    process_id: str,
    resolved: bool,
    before: tuple[float, str, int] | None,
    limit: int,
) -> list[Incident]:
    """Incidents (open ones only unless `resolved`), newest first, after an (opened_at, process, sequence)."""
    where = ["1 = 1"]
    args: list[object] = []
    if not resolved:
        where.append("resolved_at = 0")
    if definition:
        where.append("definition = ?")
        args.append(definition)
    if process_id:
        where.append("process_id = ?")
        args.append(process_id)
    if before is not None:
        where.append(
            "(opened_at < ? OR (opened_at = ? AND (process_id < ? OR (process_id = ? AND sequence < ?))))"
        )
        args += [before[0], before[0], before[1], before[1], before[2]]
    rows = conn.execute(
        "SELECT process_id, definition, step_id, sequence, error, opened_at, resolved_at, resolution "
        f"FROM wf_incidents WHERE {' AND '.join(where)} "
        "ORDER BY opened_at DESC, process_id DESC, sequence DESC LIMIT ?",
        (*args, limit),
    )
    return [
        Incident(p, d, s, int(q), orjson.loads(e), float(o), float(r), how)
        for p, d, s, q, e, o, r, how in rows
    ]


def delete_ended(conn: Connection, ended_before: float, limit: int) -> list[tuple[str, ProcessState]]:
    """Delete up to `limit` processes that ended before `ended_before`, with everything kept about them;
    returns their (definition, state)."""
    rows = conn.execute(
        "SELECT id, definition, state FROM wf_processes WHERE ended_at > 0 AND ended_at < ? "
        "ORDER BY ended_at LIMIT ?",
        (ended_before, limit),
    ).fetchall()
    ids = [(r[0],) for r in rows]
    for table in ("wf_history", "wf_incidents", "wf_tasks", "wf_timers", "wf_bus_waits", "wf_map_items"):
        conn.executemany(f"DELETE FROM {table} WHERE process_id = ?", ids)
    conn.executemany("DELETE FROM wf_search WHERE process_id = ?", ids)
    delete_parts(conn, ids)
    conn.executemany("DELETE FROM wf_processes WHERE id = ?", ids)
    return [(d, ProcessState(s)) for _, d, s in rows]


def count_processes(conn: Connection) -> dict[tuple[str, ProcessState], int]:
    """Processes by (definition, state)."""
    rows = conn.execute("SELECT definition, state, COUNT(*) FROM wf_processes GROUP BY definition, state")
    return {(definition, ProcessState(state)): int(count) for definition, state, count in rows}


def count_by_version(conn: Connection) -> dict[tuple[str, int], dict[ProcessState, int]]:
    """How many processes each definition version has in each state."""
    counts: dict[tuple[str, int], dict[ProcessState, int]] = {}
    rows = conn.execute(
        "SELECT definition, version, state, COUNT(*) FROM wf_processes GROUP BY definition, version, state"
    )
    for definition, version, state, count in rows:
        counts.setdefault((definition, int(version)), {})[ProcessState(state)] = int(count)
    return counts


def history(conn: Connection, process_id: str, after: int, limit: int) -> list[HistoryEvent]:
    """History events of a process after a sequence, in order."""
    rows = conn.execute(
        "SELECT sequence, time, type, step_id, attempt, state, details FROM wf_history "
        "WHERE process_id = ? AND sequence > ? ORDER BY sequence LIMIT ?",
        (process_id, after, limit),
    )
    return [
        HistoryEvent(
            process_id,
            int(seq),
            float(t),
            EventType(kind),
            step,
            int(attempt),
            ProcessState(state),
            orjson.loads(d),
        )
        for seq, t, kind, step, attempt, state, d in rows
    ]


def tasks(conn: Connection) -> list[TaskAttempt]:
    """Every outstanding task attempt."""
    return [
        TaskAttempt(**orjson.loads(t)) for (t,) in conn.execute("SELECT task FROM wf_tasks ORDER BY token")
    ]


def claim_tasks(
    conn: Connection,
    owner: str,
    service: str,
    task_types: Collection[str] | None,
    limit: int,
    skip_locked: str,
) -> list[TaskAttempt]:
    """Take up to `limit` unowned attempts of a service (of `task_types` only, unless None);
    `skip_locked` keeps replicas off each other's rows. An attempt written by a version without task
    types ('') may be of any type: it is taken too (the caller gives back what it cannot use)."""
    types = sorted(task_types) if task_types is not None else []
    if task_types is not None and not types:
        return []
    of_types = f" AND task_type IN ('', {', '.join('?' * len(types))})" if task_types is not None else ""
    rows = conn.execute(
        "UPDATE wf_tasks SET owner = ? WHERE token IN (SELECT token FROM wf_tasks "
        f"WHERE owner IS NULL AND service = ?{of_types} ORDER BY token LIMIT ?{skip_locked}) RETURNING task",
        (owner, service, *types, limit),
    ).fetchall()
    return [TaskAttempt(**orjson.loads(t)) for (t,) in rows]


def release_tasks(conn: Connection, owner: str, tokens: Sequence[str]) -> None:
    """Give up attempts this replica owns, for another replica to claim."""
    conn.executemany(
        "UPDATE wf_tasks SET owner = NULL WHERE token = ? AND owner = ?", [(t, owner) for t in tokens]
    )


def release_owned(conn: Connection, owner: str) -> list[str]:
    """Give up every attempt this replica owns; returns their services."""
    rows = conn.execute(
        "UPDATE wf_tasks SET owner = NULL WHERE owner = ? RETURNING service", (owner,)
    ).fetchall()
    return sorted({s for (s,) in rows})


def release_orphans(conn: Connection, live_replicas: str) -> list[str]:
    """Free the attempts of replicas that are gone (`live_replicas` selects the live ids); their services."""
    rows = conn.execute(
        f"UPDATE wf_tasks SET owner = NULL WHERE owner IS NOT NULL AND owner NOT IN ({live_replicas}) "
        "RETURNING service"
    ).fetchall()
    return sorted({s for (s,) in rows})


def due_timers(conn: Connection, before: float, limit: int) -> list[tuple[str, str, float]]:
    """Timers due before `before`, earliest first."""
    return [
        (p, n, float(d))
        for p, n, d in conn.execute(
            "SELECT process_id, name, due_at FROM wf_timers WHERE due_at <= ? ORDER BY due_at LIMIT ?",
            (before, limit),
        )
    ]


def timers(conn: Connection) -> list[tuple[str, str, float]]:
    """Every durable timer as (process id, name, due at)."""
    return [(p, n, float(d)) for p, n, d in conn.execute("SELECT process_id, name, due_at FROM wf_timers")]


def bus_waits(conn: Connection) -> list[tuple[str, str, str, int]]:
    """Every Bus-message wait as (process id, step id, pattern, after sequence)."""
    return [
        (p, s, pat, int(a))
        for p, s, pat, a in conn.execute("SELECT process_id, step_id, pattern, after FROM wf_bus_waits")
    ]
