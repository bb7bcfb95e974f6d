"""The SQL store both backends share: one writer thread with group commit, one reader, versioned migrations."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import secrets
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from control_plane.errors import Unavailable
from control_plane.models import (
    AppendResult,
    ChangeType,
    ConsumerConfig,
    DefinitionVersion,
    HistoryEvent,
    Incident,
    Instance,
    MeshSnapshot,
    OutgoingMessage,
    ProcessRecord,
    ProcessSearch,
    ProcessState,
    RegistryChange,
    RetentionPolicy,
    RoutePolicy,
    StoredConsumer,
    StoredMessage,
    SubjectStats,
    TaskAttempt,
)
from control_plane.models.schedule import ScheduleRecord
from control_plane.storage import sql_bus, sql_mesh, sql_registry, sql_schedules, sql_workflow
from control_plane.storage.base import Cluster, RegistrySnapshot, StoreStats, WorkflowTx
from control_plane.storage.connection import Connection
from control_plane.storage.migrations import migrations
from control_plane.storage.writer import Writer, broken

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Runs of a transition that keeps losing races (deadlock, concurrent insert) with other replicas.
_TRANSACT_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class Dialect:
    """The few places where the backends' SQL differs (everything else is shared)."""

    # Appended to the SELECT of a row the transaction will update, where other replicas may write it.
    lock_row: str = ""
    # Appended to the SELECT that picks task attempts to claim: concurrent claimers skip each other's rows.
    skip_locked: str = ""
    # A query of the ids of the live replicas (their listening sessions), where replicas exist.
    live_replicas: str | None = None
    # Whether the writer reads the processes of a batch's transitions ahead, in one statement (where a
    # read in the middle of the writer's pipeline costs a round trip).
    read_ahead: bool = False


class SqlStore:
    """The store over SQL: writes grouped into shared, durable commits; reads on a connection of their own."""

    def __init__(
        self,
        writer: Writer,
        readers: list[Connection],
        cluster: Cluster,
        dialect: Dialect,
        reconnect: Callable[[], Connection] | None = None,
    ) -> None:
        self._writer = writer
        self.stats = StoreStats()
        writer.stats = self.stats
        # Reads run on these connections, one read per connection at a time, in threads.
        self._readers: asyncio.Queue[Connection] = asyncio.Queue()
        for reader in readers:
            self._readers.put_nowait(reader)
        self._reader_count = len(readers)
        self._reconnect = reconnect
        self._closed = False
        self.cluster = cluster
        self._dialect = dialect
        self._owner = cluster.replica_id
        if dialect.read_ahead:
            writer.before_items = self._read_ahead

    def _read_ahead(self, conn: Connection, works: list[Any], careful: bool) -> None:
        """(On the writer, after BEGIN.) Load and lock, in one statement, the processes the batch's
        transitions will load, instead of one round trip each in the middle of the pipeline.

        Only the transitions before the batch's first other work use what was read: that work may change
        processes (retention deletes them) without the transitions knowing. A transition takes its
        process's row out as it loads it, and any process saved is taken out too, so a later transition
        of the same process reads the row as that one left it."""
        ahead: dict[str, tuple[str, str]] = {}
        ids: set[str] = set()
        reading = not careful  # a careful re-run reads nothing ahead: an error there would be no one's
        for work in works:
            if not isinstance(work, _Transition):
                reading = False
                continue
            work.ahead = ahead if reading else None
            if reading and work.loads:
                ids.add(work.loads)
        if ids:
            ahead.update(sql_workflow.read_ahead(conn, sorted(ids), self._dialect.lock_row))

    def _note(self, topic: str, payload: str = "") -> None:
        """Announce, with the commit of the running work, that other replicas have something to read."""
        if self.cluster.shared:
            self._writer.notes.add((topic, f"{self._owner} {payload}"))

    @property
    def pending_writes(self) -> int:
        """Writes submitted and not yet committed (the group-commit queue)."""
        return self._writer.pending

    def retryable(self, exc: BaseException) -> bool:
        """Whether a failed transaction lost a race with another replica and may simply run again."""
        return False

    async def _read(self, work: Callable[[Connection], T]) -> T:
        """Run `work` on a reader connection of its own, in a thread.

        The connection goes back to the pool only once the thread is done with it: a caller cancelled
        while its query runs must not hand the connection to the next read while the query still runs.
        """
        if self._closed:
            raise Unavailable("the store is closed: the control plane is shutting down")
        conn = await self._readers.get()
        try:
            context = contextvars.copy_context()
            running = asyncio.get_running_loop().run_in_executor(None, context.run, self._read_on, conn, work)
        except BaseException:
            self._readers.put_nowait(conn)
            raise
        running.add_done_callback(functools.partial(self._give_back, conn))
        outcome = await asyncio.shield(running)
        if isinstance(outcome.value, _Failure):
            raise outcome.value.exc
        return outcome.value

    def _read_on(self, conn: Connection, work: Callable[[Connection], T]) -> _Outcome[T]:
        """(In a reader thread.) The result of `work`, and the connection to give back (a new one if lost)."""
        try:
            return _Outcome(conn, work(conn))
        except Exception as exc:
            if self._reconnect is None or not broken(conn):
                return _Outcome(conn, _Failure(exc))
        # The connection was lost (database restarted?): reads are safe to run again on a new one.
        logger.warning("store reader lost its connection; reconnecting")
        try:
            fresh = self._reconnect()
        except Exception as exc:
            failure = Unavailable(f"the store is unreachable: {exc}")
            failure.__cause__ = exc
            return _Outcome(conn, _Failure(failure))
        conn.close()
        try:
            return _Outcome(fresh, work(fresh))
        except Exception as exc:
            return _Outcome(fresh, _Failure(exc))

    def _give_back(self, conn: Connection, running: asyncio.Future[_Outcome[Any]]) -> None:
        """Return a reader connection to the pool once its thread has finished with it."""
        if not running.cancelled() and running.exception() is None:
            conn = running.result().conn  # a new one, when the old one was lost
        self._readers.put_nowait(conn)

    async def secret(self, name: str) -> bytes:
        """The key called `name`, made (32 random bytes) by the first replica that asks."""

        def work(conn: Connection) -> bytes:
            conn.execute(
                "INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                (name, secrets.token_hex(32)),
            )
            row = conn.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()
            return bytes.fromhex(row[0])

        key: bytes = await self._writer.submit(work)
        return key

    # -- Mesh: SQL in sql_mesh --------------------------------------------------------------------

    async def mesh_load(self) -> MeshSnapshot:
        """Every stored route policy and the mesh revision."""
        return await self._read(sql_mesh.load)

    async def mesh_put(self, route: RoutePolicy, *, now: float) -> RoutePolicy:
        """Store a route policy at the next mesh revision; other replicas hear of it."""

        def work(conn: Connection) -> RoutePolicy:
            stored = sql_mesh.put(conn, route, now)
            self._note("mesh", str(stored.revision))
            return stored

        stored: RoutePolicy = await self._writer.submit(work)
        return stored

    async def mesh_delete(self, service: str) -> int | None:
        """Remove a route policy at the next mesh revision; None when there was none."""

        def work(conn: Connection) -> int | None:
            revision = sql_mesh.delete(conn, service)
            if revision is not None:
                self._note("mesh", str(revision))
            return revision

        revision: int | None = await self._writer.submit(work)
        return revision

    # -- Registry: SQL in sql_registry ------------------------------------------------------------

    async def registry_commit(
        self, instance: Instance, change_type: ChangeType, *, reason: str, now: float
    ) -> RegistryChange:
        """Store or delete the instance and append its change, at the next revision, in one commit."""

        def work(conn: Connection) -> RegistryChange:
            change = sql_registry.commit(conn, instance, change_type, reason, now)
            self._note("registry")
            return change

        result: RegistryChange = await self._writer.submit(work)
        return result

    async def registry_remove(
        self, instances: list[Instance], *, reason: str, now: float
    ) -> list[RegistryChange]:
        """Delete `instances` and append their DOWN changes, at consecutive revisions, in one commit.

        Many leases lapsing together are evicted with one commit instead of one each.
        """

        def work(conn: Connection) -> list[RegistryChange]:
            changes = sql_registry.remove(conn, instances, reason, now)
            self._note("registry")
            return changes

        if not instances:
            return []
        removed: list[RegistryChange] = await self._writer.submit(work)
        return removed

    async def registry_load(self, history: int) -> RegistrySnapshot:
        """Every stored instance, the current revision and the last `history` changes."""
        return await self._read(lambda c: sql_registry.load(c, history))

    async def registry_changes_after(self, revision: int, limit: int) -> list[RegistryChange]:
        """Up to `limit` changes after `revision`, in order (what other replicas committed)."""
        return await self._read(lambda c: sql_registry.changes_after(c, revision, limit))

    async def registry_renew(self, leases: dict[str, float]) -> None:
        """Record lease renewals (lease id -> wall-clock expiry) for the replica that expires leases."""
        await self._writer.submit(lambda c: sql_registry.renew(c, leases))

    async def registry_lease_expiry(self, lease_ids: list[str]) -> dict[str, float]:
        """The latest recorded expiry of each lease that any replica renewed."""
        return await self._read(lambda c: sql_registry.lease_expiry(c, lease_ids)) if lease_ids else {}

    async def registry_revision(self) -> int:
        """The registry's last committed revision, whichever replica committed it."""
        return await self._read(sql_registry.revision)

    async def registry_compact(self, keep: int) -> int:
        """Forget all but the last `keep` changes."""
        dropped: int = await self._writer.submit(lambda c: sql_registry.compact(c, keep), slow=True)
        return dropped

    # -- Bus: SQL in sql_bus, run on the writer (group commit) or the reader --------------------

    async def bus_append(
        self, batch: list[OutgoingMessage], *, now: float, dedup_window_s: float
    ) -> AppendResult:
        """Store a batch atomically, deduplicating by message id within the window."""

        def work(conn: Connection) -> AppendResult:
            result = sql_bus.append(conn, batch, now, dedup_window_s)
            if result.stored:
                self._note("bus")
            return result

        appended: AppendResult = await self._writer.submit(work)
        return appended

    async def bus_read(
        self, after: int, limit: int, subject: str | None = None, max_data: int | None = None
    ) -> list[StoredMessage]:
        """Messages after a log sequence, within `max_data` bytes of data."""
        return await self._read(lambda c: sql_bus.read(c, after, limit, subject, max_data))

    async def bus_read_sequences(self, sequences: list[int]) -> list[StoredMessage]:
        """The retained messages among `sequences`."""
        return await self._read(lambda c: sql_bus.read_sequences(c, sequences))

    async def bus_bounds(self) -> tuple[int, int]:
        """(oldest retained, last assigned) sequence."""
        return await self._read(sql_bus.bounds)

    async def bus_first_sequence_at(self, at: float) -> int:
        """The first sequence published at or after `at`."""
        return await self._read(lambda c: sql_bus.first_sequence_at(c, at))

    async def bus_load_consumers(self) -> list[StoredConsumer]:
        """Every durable consumer."""
        return await self._read(sql_bus.load_consumers)

    async def bus_load_consumer(self, name: str) -> StoredConsumer | None:
        """One durable consumer as stored, or None."""
        return await self._read(lambda c: sql_bus.load_consumer(c, name))

    async def bus_save_consumer(self, config: ConsumerConfig, delivered_sequence: int) -> None:
        """Create or update a durable consumer."""
        await self._writer.submit(lambda c: sql_bus.save_consumer(c, config, delivered_sequence))

    async def bus_delete_consumer(self, name: str) -> bool:
        """Remove a durable consumer."""
        deleted: bool = await self._writer.submit(lambda c: sql_bus.delete_consumer(c, name))
        return deleted

    async def bus_record_deliveries(
        self, consumer: str, delivered_sequence: int, attempts: list[tuple[int, int]]
    ) -> None:
        """Advance a durable consumer and record its pending deliveries."""
        await self._writer.submit(
            lambda c: sql_bus.record_deliveries(c, consumer, delivered_sequence, attempts)
        )

    async def bus_settle(self, consumer: str, sequences: list[int]) -> None:
        """Forget acknowledged deliveries."""
        await self._writer.submit(lambda c: sql_bus.settle(c, consumer, sequences))

    async def bus_dead_letter(
        self, consumer: str, sequence: int, letter: OutgoingMessage, *, now: float
    ) -> StoredMessage:
        """Publish a dead letter and settle the original."""

        def work(conn: Connection) -> StoredMessage:
            self._note("bus")
            return sql_bus.dead_letter(conn, consumer, sequence, letter, now)

        stored: StoredMessage = await self._writer.submit(work)
        return stored

    async def bus_subject_stats(self) -> list[SubjectStats]:
        """Per-subject counts."""
        return await self._read(sql_bus.subject_stats)

    async def bus_retention(self) -> list[RetentionPolicy]:
        """Stored retention policies."""
        return await self._read(sql_bus.retention)

    async def bus_set_retention(self, prefix: str, policy: RetentionPolicy | None) -> None:
        """Store or remove a prefix's policy."""
        await self._writer.submit(lambda c: sql_bus.set_retention(c, policy, prefix))

    async def bus_apply_retention(self, policies: list[RetentionPolicy], *, now: float) -> int:
        """Apply the retention policies."""
        removed: int = await self._writer.submit(
            lambda c: sql_bus.apply_retention(c, policies, now), slow=True
        )
        return removed

    async def bus_prune_dedup(self, older_than: float) -> int:
        """Forget old message ids."""
        pruned: int = await self._writer.submit(lambda c: sql_bus.prune_dedup(c, older_than), slow=True)
        return pruned

    # -- Workflow: SQL in sql_workflow ------------------------------------------------------------

    async def wf_transact(
        self,
        work: Callable[[WorkflowTx], T],
        *,
        now: float,
        follow: Callable[[T], None] | None = None,
        loads: str = "",
    ) -> T:
        """Run a transition in one (group-committed) transaction; again if it lost a race with a replica."""

        def run(conn: Connection, ahead: dict[str, tuple[str, str]] | None) -> T:
            tx = sql_workflow.SqlWorkflowTx(
                conn, now, owner=self._owner, lock_row=self._dialect.lock_row, ahead=ahead
            )
            try:
                result = work(tx)
            finally:
                tx.close()  # what follows the commit reads the records it loaded, never the connection
            if tx.published:
                self._note("bus")
            return result

        transition = _Transition(run, loads)

        for _ in range(_TRANSACT_ATTEMPTS - 1):
            try:
                done: T = await self._writer.submit(transition, follow)
                return done
            except Exception as exc:
                if not self.retryable(exc):
                    raise
                self.stats.transactions_retried += 1
                logger.info("transition conflicted with another replica (%s); running it again", exc)
        last: T = await self._writer.submit(transition, follow)
        return last

    async def wf_definitions(self, name: str = "") -> list[DefinitionVersion]:
        """Stored definition versions."""
        return await self._read(lambda c: sql_workflow.definitions(c, name))

    async def wf_put_definition(self, name: str, digest: str, source: str, *, now: float) -> tuple[int, bool]:
        """Store a definition version unless unchanged."""

        def work(conn: Connection) -> tuple[int, bool]:
            version, created = sql_workflow.put_definition(conn, name, digest, source, now)
            if created:
                self._note("definitions", name)
            return version, created

        result: tuple[int, bool] = await self._writer.submit(work)
        return result

    async def wf_process(self, process_id: str) -> ProcessRecord | None:
        """One process."""
        return await self._read(lambda c: sql_workflow.process(c, process_id))

    async def wf_list_processes(
        self,
        *,
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
        """Processes matching filters, newest first."""
        return await self._read(
            lambda c: sql_workflow.list_processes(
                c,
                definition,
                version,
                states,
                business_key,
                before,
                limit,
                business_key_prefix,
                started,
                parent_id,
                search,
            )
        )

    async def wf_incidents(
        self,
        *,
        definition: str,
        process_id: str,
        resolved: bool,
        before: tuple[float, str, int] | None,
        limit: int,
    ) -> list[Incident]:
        """Incidents, newest first."""
        return await self._read(
            lambda c: sql_workflow.incidents(c, definition, process_id, resolved, before, limit)
        )

    async def wf_delete_ended(self, ended_before: float, limit: int) -> list[tuple[str, ProcessState]]:
        """Delete a batch of processes that ended long ago."""
        deleted: list[tuple[str, ProcessState]] = await self._writer.submit(
            lambda c: sql_workflow.delete_ended(c, ended_before, limit), slow=True
        )
        return deleted

    async def wf_count_by_version(self) -> dict[tuple[str, int], dict[ProcessState, int]]:
        """How many processes each definition version has in each state."""
        return await self._read(sql_workflow.count_by_version)

    async def wf_history(self, process_id: str, after: int, limit: int) -> list[HistoryEvent]:
        """History of a process."""
        return await self._read(lambda c: sql_workflow.history(c, process_id, after, limit))

    async def wf_count_processes(self) -> dict[tuple[str, ProcessState], int]:
        """Processes by (definition, state)."""
        return await self._read(sql_workflow.count_processes)

    async def wf_tasks(self) -> list[TaskAttempt]:
        """Outstanding task attempts."""
        return await self._read(sql_workflow.tasks)

    async def wf_claim_tasks(
        self, service: str, limit: int, task_types: Collection[str] | None = None
    ) -> list[TaskAttempt]:
        """Take up to `limit` attempts of `service` (of `task_types` only, unless None) that no replica owns."""
        claimed: list[TaskAttempt] = await self._writer.submit(
            lambda c: sql_workflow.claim_tasks(
                c, self._owner, service, task_types, limit, self._dialect.skip_locked
            )
        )
        return claimed

    async def wf_release_tasks(self, tasks: list[TaskAttempt]) -> None:
        """Give up attempts this replica cannot hand out, for the replicas that can."""

        def work(conn: Connection) -> None:
            sql_workflow.release_tasks(conn, self._owner, [t.token for t in tasks])
            for service in {t.service for t in tasks}:
                self._note("tasks", service)

        await self._writer.submit(work)

    async def wf_release_owned(self) -> None:
        """Give up every attempt this replica owns (it is stopping)."""

        def work(conn: Connection) -> None:
            for service in sql_workflow.release_owned(conn, self._owner):
                self._note("tasks", service)

        await self._writer.submit(work)

    async def wf_release_orphans(self) -> list[str]:
        """Free what replicas that are gone owned; returns the services concerned."""
        live = self._dialect.live_replicas
        if live is None:
            return []

        def work(conn: Connection) -> list[str]:
            services = sql_workflow.release_orphans(conn, live)
            for service in services:
                self._note("tasks", service)
            return services

        services: list[str] = await self._writer.submit(work)
        return services

    async def wf_due_timers(self, before: float, limit: int) -> list[tuple[str, str, float]]:
        """Timers due by `before`, earliest first."""
        return await self._read(lambda c: sql_workflow.due_timers(c, before, limit))

    async def wf_timers(self) -> list[tuple[str, str, float]]:
        """Durable timers."""
        return await self._read(sql_workflow.timers)

    async def wf_bus_waits(self) -> list[tuple[str, str, str, int]]:
        """Bus-message waits."""
        return await self._read(sql_workflow.bus_waits)

    # -- Schedules: SQL in sql_schedules ----------------------------------------------------------

    async def sched_create(self, record: ScheduleRecord, next_due: float | None) -> bool:
        """Store a new schedule; False when its id is taken."""
        created: bool = await self._writer.submit(lambda c: sql_schedules.create(c, record, next_due))
        return created

    async def sched_update(self, record: ScheduleRecord, next_due: float | None) -> bool:
        """Compare-and-set a schedule on its revision."""
        updated: bool = await self._writer.submit(lambda c: sql_schedules.update(c, record, next_due))
        return updated

    async def sched_delete(self, schedule_id: str) -> bool:
        """Remove a schedule."""
        deleted: bool = await self._writer.submit(lambda c: sql_schedules.delete(c, schedule_id))
        return deleted

    async def sched_get(self, schedule_id: str) -> ScheduleRecord | None:
        """One schedule."""
        return await self._read(lambda c: sql_schedules.get(c, schedule_id))

    async def sched_page(self, after: str, limit: int) -> list[ScheduleRecord]:
        """Schedules by id after `after`."""
        return await self._read(lambda c: sql_schedules.page(c, after, limit))

    async def sched_due(self, now: float, limit: int) -> tuple[list[ScheduleRecord], list[ScheduleRecord]]:
        """Schedules due by `now`; others holding a buffered start."""
        return await self._read(lambda c: sql_schedules.due(c, now, limit))

    async def sched_next_due(self) -> tuple[float | None, bool]:
        """When the next schedule is due; whether any holds a buffered start."""
        return await self._read(sql_schedules.next_due)

    async def close(self) -> None:
        """Finish queued writes, then close both connections; idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._writer.aclose()
        await asyncio.to_thread(self.cluster.close)
        for _ in range(self._reader_count):
            (await self._readers.get()).close()


class _Transition(Generic[T]):
    """A transition's work for the writer, with the process it will load (see SqlStore._read_ahead)."""

    __slots__ = ("_run", "ahead", "loads")

    def __init__(self, run: Callable[[Connection, dict[str, tuple[str, str]] | None], T], loads: str) -> None:
        self._run = run
        self.loads = loads
        # Rows read ahead for this transaction's transitions, by process id (None: read nothing ahead).
        self.ahead: dict[str, tuple[str, str]] | None = None

    def __call__(self, conn: Connection) -> T:
        ahead, self.ahead = self.ahead, None  # for this run only; a careful re-run reads its own rows
        return self._run(conn, ahead)


@dataclass(frozen=True, slots=True)
class _Failure:
    """What a read raised, carried back from its thread (so that the thread itself never raises)."""

    exc: Exception


@dataclass(frozen=True, slots=True)
class _Outcome(Generic[T]):
    """A read's result (or failure), and the connection it leaves behind."""

    conn: Connection
    value: T | _Failure


def migrate(conn: Connection, dialect: str, begin: str) -> None:
    """Apply every migration not yet recorded for `dialect`, each in its own transaction."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
    )
    applied = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
    for migration in migrations(dialect):
        if migration.version in applied:
            continue
        conn.execute(begin)
        try:
            for statement in migration.statements():
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, time.time()),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        logger.info("applied migration %04d_%s", migration.version, migration.name)
