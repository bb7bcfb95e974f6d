"""The store contract, Workflow part: every test runs on SQLite and on PostgreSQL (the `store` fixture)."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from typing import Any

import psycopg
import pytest

from control_plane.models import (
    EventType,
    HistoryEvent,
    OutgoingMessage,
    ProcessRecord,
    ProcessState,
    StepRun,
    StepState,
    TaskAttempt,
)
from control_plane.storage import Store, open_store
from control_plane.storage.base import WorkflowTx
from control_plane.storage.sql_workflow import FIND_BY_KEY

ONLY_POSTGRES = pytest.mark.parametrize(
    "store_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


def process(n: int, **changes: Any) -> ProcessRecord:
    record = ProcessRecord(
        id=f"p{n:03d}",
        definition="permit",
        version=1,
        business_key="",
        state=ProcessState.RUNNING,
        input={"n": n, "nested": {"list": [1, "two", None]}},
        created_at=1000.0 + n,
        updated_at=1000.0 + n,
    )
    return replace(record, **changes)


def event(
    process_id: str, sequence: int, kind: EventType = EventType.STEP_STARTED, **details: Any
) -> HistoryEvent:
    return HistoryEvent(
        process_id, sequence, 1000.0 + sequence, kind, "pay", 1, ProcessState.RUNNING, details
    )


def task(process_id: str, step: str, attempt: int = 1, service: str = "Pay", **changes: Any) -> TaskAttempt:
    attempt_of = TaskAttempt(
        token=f"{process_id}/{step}/{attempt}/t",
        process_id=process_id,
        definition="permit",
        definition_version=1,
        step_id=step,
        service=service,
        task_type="charge",
        version=">=2",
        attempt=attempt,
        input={"amount": 120.5},
        business_key="APP-1",
        compensation=False,
        timeout_s=60.0,
        heartbeat_timeout_s=None,
    )
    return replace(attempt_of, **changes)


async def transact(store: Store, work: Any, now: float = 5000.0) -> Any:
    return await store.wf_transact(work, now=now)


async def add_tasks(store: Store, *tasks: TaskAttempt) -> None:
    await transact(store, lambda tx: tx.add_tasks(list(tasks)))


# -- transitions ----------------------------------------------------------------------------------


async def test_a_transition_writes_the_process_its_history_tasks_timers_and_waits_together(
    store: Store,
) -> None:
    record = process(1, business_key="APP-1")
    record.steps["pay"] = StepRun("pay", StepState.SCHEDULED, attempts=1, started_at=1001.0)
    record.completed_order.append("docs")
    record.signals["approve"] = [{"by": "clerk"}]

    def work(tx: WorkflowTx) -> tuple[float, int]:
        tx.save(record, new=True)
        tx.history([event("p001", 1, EventType.PROCESS_STARTED), event("p001", 2, amount=12.5)])
        tx.add_tasks([task("p001", "pay")])
        tx.set_timer("p001", "retry:pay", 6000.0)
        return tx.now, tx.add_bus_wait("p001", "inspection", "inspection.*.result")

    now, after = await transact(store, work, now=5000.0)

    assert (now, after) == (5000.0, 0)
    assert await store.wf_process("p001") == record
    assert await store.wf_history("p001", 0, 100) == [
        event("p001", 1, EventType.PROCESS_STARTED),
        event("p001", 2, amount=12.5),
    ]
    assert await store.wf_tasks() == [task("p001", "pay")]
    assert await store.wf_timers() == [("p001", "retry:pay", 6000.0)]
    assert await store.wf_bus_waits() == [("p001", "inspection", "inspection.*.result", 0)]
    assert await store.wf_process("unknown") is None


async def test_a_transition_reads_what_it_wrote_and_finds_a_process_by_business_key(store: Store) -> None:
    await transact(store, lambda tx: tx.save(process(1, business_key="APP-1"), new=True))

    def work(tx: WorkflowTx) -> tuple[Any, ...]:
        tx.save(process(2, business_key="APP-2"), new=True)
        loaded = tx.load("p002")
        found = tx.find_by_key("permit", "APP-1")
        other_definition = tx.find_by_key("other", "APP-1")
        assert loaded is not None
        loaded.state = ProcessState.COMPLETED
        loaded.output = {"ok": True}
        tx.save(loaded, new=False)
        return found, other_definition, tx.load("missing"), tx.load("p002")

    found, other_definition, missing, updated = await transact(store, work)

    assert found == process(1, business_key="APP-1")
    assert (other_definition, missing) == (None, None)
    assert updated is not None and (updated.state, updated.output) == (ProcessState.COMPLETED, {"ok": True})
    assert await store.wf_process("p002") == updated


async def test_a_failing_transition_leaves_no_trace_and_spares_the_others_of_its_commit(store: Store) -> None:
    await store.bus_append([OutgoingMessage("before", b"")], now=1.0, dedup_window_s=0.0)

    def failing(tx: WorkflowTx) -> None:
        tx.save(process(1), new=True)
        tx.history([event("p001", 1)])
        tx.add_tasks([task("p001", "pay")])
        tx.set_timer("p001", "sleep:nap", 10.0)
        tx.add_bus_wait("p001", "wait", "x.>")
        tx.publish([OutgoingMessage("workflow.permit.p001.process_started", b"{}")])
        raise RuntimeError("the transition found a reason to stop")

    def succeeding(n: int) -> Any:
        return lambda tx: tx.save(process(n), new=True)

    results = await asyncio.gather(
        transact(store, succeeding(2)),
        transact(store, failing),
        transact(store, succeeding(3)),
        return_exceptions=True,
    )

    assert isinstance(results[1], RuntimeError)
    assert [await store.wf_process(p) is not None for p in ("p001", "p002", "p003")] == [False, True, True]
    assert await store.wf_history("p001", 0, 10) == []
    assert (await store.wf_tasks(), await store.wf_timers(), await store.wf_bus_waits()) == ([], [], [])
    assert await store.bus_bounds() == (1, 1)  # the rolled-back publish used no sequence
    (next_one,) = (
        await store.bus_append([OutgoingMessage("after", b"")], now=2.0, dedup_window_s=0.0)
    ).stored
    assert next_one.sequence == 2


async def test_state_and_end_columns_follow_the_record_when_a_transition_keeps_them_and_when_it_changes_them(
    store: Store,
) -> None:
    # A step that leaves the state alone is stored without setting the indexed columns again (SQLite
    # would rewrite their index entries); the listing by state and the deletion by end time must still
    # see every change, also when one transaction saves a record twice, unchanged and then ended.
    await transact(store, lambda tx: tx.save(process(1), new=True))

    def step(tx: WorkflowTx) -> None:
        loaded = tx.load("p001")
        assert loaded is not None
        loaded.updated_at = 2000.0
        loaded.completed_order.append("docs")
        tx.save(loaded, new=False)

    def finish(tx: WorkflowTx) -> ProcessRecord:
        loaded = tx.load("p001")
        assert loaded is not None
        loaded.updated_at = 3000.0
        tx.save(loaded, new=False)
        loaded.state = ProcessState.COMPLETED
        loaded.ended_at = 3000.0
        tx.save(loaded, new=False)
        return loaded

    async def listed(state: ProcessState) -> list[str]:
        found = await store.wf_list_processes(
            definition="", version=0, states=[state], business_key="", before=None, limit=10
        )
        return [p.id for p in found]

    await transact(store, step)
    stepped = await store.wf_process("p001")
    assert stepped is not None and (stepped.updated_at, stepped.completed_order) == (2000.0, ["docs"])
    assert (await listed(ProcessState.RUNNING), await listed(ProcessState.COMPLETED)) == (["p001"], [])
    assert await store.wf_delete_ended(ended_before=10_000.0, limit=10) == []

    finished = await transact(store, finish)
    assert await store.wf_process("p001") == finished
    assert (await listed(ProcessState.RUNNING), await listed(ProcessState.COMPLETED)) == ([], ["p001"])
    assert await store.wf_delete_ended(ended_before=10_000.0, limit=10) == [
        ("permit", ProcessState.COMPLETED)
    ]


async def test_saving_a_new_process_under_a_taken_id_fails(store: Store) -> None:
    await transact(store, lambda tx: tx.save(process(1), new=True))

    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)):
        await transact(store, lambda tx: tx.save(process(1, definition="other"), new=True))

    stored = await store.wf_process("p001")
    assert stored is not None and stored.definition == "permit"


async def test_transitions_that_fail_in_the_database_leave_the_store_writable(store: Store) -> None:
    # A failure inside a batch of writes, again and again: whatever the backend prepared or cached for
    # the statements of the failed batch must not break the writes that follow.
    failures: list[BaseException] = []
    for n in range(1, 9):
        await transact(store, lambda tx, n=n: tx.save(process(n), new=True))
        try:
            await transact(store, lambda tx, n=n: tx.save(process(n), new=True))
        except Exception as exc:
            failures.append(exc)
    await transact(store, lambda tx: tx.save(process(100), new=True))

    assert [type(f) for f in failures] == [type(failures[0])] * 8
    assert isinstance(failures[0], (sqlite3.IntegrityError, psycopg.errors.UniqueViolation))
    assert await store.wf_process("p100") is not None


async def test_statements_after_a_failure_in_a_batch_stay_usable(store: Store) -> None:
    # The statements a failing transition would have run next, alone in its batch and beside others:
    # on PostgreSQL they reach the writer's threshold for preparing while the failure keeps them from
    # running, and later transitions using them must still commit (not "prepared statement does not
    # exist").
    await transact(store, lambda tx: tx.save(process(1), new=True))

    def failing(tx: WorkflowTx, n: int) -> None:
        tx.save(process(1), new=True)  # taken: fails
        tx.history([event("p001", n)])
        tx.add_tasks([task("p001", f"t{n}")])

    def good(tx: WorkflowTx, n: int) -> None:
        tx.history([event("p002", n)])
        tx.add_tasks([task("p002", f"u{n}")])

    failures = 0
    for n in range(1, 13):
        outcomes = await asyncio.gather(
            transact(store, lambda tx, n=n: failing(tx, n)),
            transact(store, lambda tx, n=n: good(tx, n)),
            return_exceptions=True,
        )
        assert outcomes[1] is None, outcomes[1]
        failures += isinstance(outcomes[0], (sqlite3.IntegrityError, psycopg.errors.UniqueViolation))
        await transact(store, lambda tx, n=n: good(tx, 100 + n))

    assert failures == 12
    assert len(await store.wf_history("p002", 0, 100)) == 24
    assert await store.wf_history("p001", 0, 100) == []


async def test_concurrent_transitions_each_commit_once(store: Store) -> None:
    await asyncio.gather(
        *(transact(store, lambda tx, n=n: tx.save(process(n), new=True)) for n in range(100))
    )

    async def step(n: int) -> None:
        def work(tx: WorkflowTx) -> None:
            record = tx.load(f"p{n:03d}")
            assert record is not None
            record.last_event_sequence += 1
            tx.save(record, new=False)
            tx.history([event(record.id, record.last_event_sequence)])

        await transact(store, work)

    await asyncio.gather(*(step(n) for n in range(100) for _ in range(3)))

    listed = await store.wf_list_processes(
        definition="", version=0, states=[], business_key="", before=None, limit=1000
    )
    assert len(listed) == 100
    assert {p.last_event_sequence for p in listed} == {3}
    assert [e.sequence for e in await store.wf_history("p042", 0, 10)] == [1, 2, 3]


async def test_transitions_of_one_commit_see_what_the_earlier_ones_wrote(store: Store) -> None:
    # Each transition names the process it loads, so that PostgreSQL's writer reads a commit's processes
    # ahead in one statement: what a transition reads must still be what the earlier transitions of the
    # same commit left, whether they loaded that process or only saved it, and whether or not the batch
    # had to run again without reading ahead (a failing transition among them). A stale read loses an
    # update (no error: an error would make the writer run the batch again without reading ahead).
    await asyncio.gather(*(transact(store, lambda tx, n=n: tx.save(process(n), new=True)) for n in range(10)))

    def advance(tx: WorkflowTx, record: ProcessRecord | None) -> None:
        assert record is not None
        record.last_event_sequence += 1
        tx.save(record, new=False)

    async def step(n: int) -> None:
        await store.wf_transact(lambda tx: advance(tx, tx.load(f"p{n:03d}")), now=5000.0, loads=f"p{n:03d}")

    async def step_and_nudge(n: int) -> None:
        # Loads its own process, and writes its neighbour's without loading it.
        def work(tx: WorkflowTx) -> None:
            advance(tx, tx.load(f"p{n:03d}"))
            advance(tx, tx.peek(f"p{(n + 1) % 10:03d}"))

        await store.wf_transact(work, now=5000.0, loads=f"p{n:03d}")

    async def failing() -> None:
        await store.wf_transact(lambda tx: tx.save(process(1), new=True), now=5000.0, loads="p001")

    for rerun in (False, True):
        outcomes = await asyncio.gather(
            *(step_and_nudge(n) for n in range(10)),
            *(step(n) for n in range(10)),
            *(step(n) for n in range(10)),
            *([failing()] if rerun else []),
            return_exceptions=True,
        )
        assert outcomes[:30] == [None] * 30
        if rerun:
            assert isinstance(outcomes[30], (sqlite3.IntegrityError, psycopg.errors.UniqueViolation))

    for n in range(10):
        stored = await store.wf_process(f"p{n:03d}")
        assert stored is not None and stored.last_event_sequence == 8


async def test_published_messages_get_their_sequences_when_the_transition_commits(store: Store) -> None:
    await store.bus_append([OutgoingMessage("x", b"0")], now=1.0, dedup_window_s=0.0)

    def work(tx: WorkflowTx) -> tuple[int, list[Any], int]:
        before = tx.add_bus_wait("p001", "early", "a.>")
        tx.publish([OutgoingMessage("a.b", b"1", {"h": "v"}), OutgoingMessage("a.c", b"2", message_id="m")])
        tx.publish([])
        after = tx.add_bus_wait("p001", "late", "a.>")
        return before, list(tx.published), after

    before, published, after = await transact(store, work, now=77.0)

    assert (before, after) == (1, 3)  # a wait counts messages after the log's end when it starts
    assert [(m.sequence, m.subject, m.published_at) for m in published] == [
        (2, "a.b", 77.0),
        (3, "a.c", 77.0),
    ]
    assert await store.bus_read(1, 10) == published


# -- definitions ----------------------------------------------------------------------------------


async def test_a_definition_gets_a_new_version_only_when_its_digest_changes(store: Store) -> None:
    first = await store.wf_put_definition("permit", "d1", "name: permit # v1", now=10.0)
    same = await store.wf_put_definition("permit", "d1", "name: permit # v1", now=11.0)
    changed = await store.wf_put_definition("permit", "d2", "name: permit # v2", now=12.0)
    back = await store.wf_put_definition(
        "permit", "d1", "name: permit # v1", now=13.0
    )  # only the latest counts
    other = await store.wf_put_definition("alpha", "d9", "name: alpha", now=14.0)

    assert [first, same, changed, back, other] == [(1, True), (1, False), (2, True), (3, True), (1, True)]
    permit = await store.wf_definitions("permit")
    assert [(d.version, d.digest, d.source, d.created_at) for d in permit] == [
        (3, "d1", "name: permit # v1", 13.0),
        (2, "d2", "name: permit # v2", 12.0),
        (1, "d1", "name: permit # v1", 10.0),
    ]
    assert [(d.name, d.version) for d in await store.wf_definitions()] == [
        ("alpha", 1),
        ("permit", 3),
        ("permit", 2),
        ("permit", 1),
    ]
    assert await store.wf_definitions("unknown") == []


# -- processes --------------------------------------------------------------------------------------


async def test_processes_are_listed_newest_first_by_filter(store: Store) -> None:
    records = [
        process(1, state=ProcessState.COMPLETED),
        process(2, version=2),
        process(3, state=ProcessState.FAILED, business_key="APP-3"),
        process(4, definition="other"),
        process(5, version=2, state=ProcessState.COMPLETED),
    ]
    await transact(store, lambda tx: [tx.save(r, new=True) for r in records])

    async def ids(**filters: Any) -> list[str]:
        query: dict[str, Any] = {"definition": "", "version": 0, "states": [], "business_key": ""}
        query.update(filters)
        listed = await store.wf_list_processes(**query, before=None, limit=100)
        return [p.id for p in listed]

    assert await ids() == ["p005", "p004", "p003", "p002", "p001"]
    assert await ids(definition="permit") == ["p005", "p003", "p002", "p001"]
    assert await ids(definition="permit", version=2) == ["p005", "p002"]
    assert await ids(states=[ProcessState.COMPLETED, ProcessState.FAILED]) == ["p005", "p003", "p001"]
    assert await ids(business_key="APP-3") == ["p003"]
    assert await ids(definition="permit", version=2, states=[ProcessState.RUNNING]) == ["p002"]
    assert await ids(definition="nothing") == []


async def test_children_are_listed_by_parent_and_keep_their_parent_and_call_step(store: Store) -> None:
    parent = process(1)
    parent.steps["review"] = StepRun("review", StepState.RUNNING, child_id="p002")
    children = [process(2, parent_id="p001", parent_step="review"), process(3, parent_id="p001")]
    await transact(store, lambda tx: [tx.save(r, new=True) for r in [parent, *children, process(4)]])

    listed = await store.wf_list_processes(
        definition="", version=0, states=[], business_key="", before=None, limit=100, parent_id="p001"
    )

    assert [p.id for p in listed] == ["p003", "p002"]
    assert await store.wf_process("p002") == children[0]
    assert await store.wf_process("p001") == parent
    assert (await transact(store, lambda tx: tx.peek("p002"))) == children[0]


async def test_map_items_are_kept_apart_and_read_back_in_item_order(store: Store) -> None:
    def put(tx: WorkflowTx) -> list[Any]:
        for item in (2, 0, 11, 1):
            failed = item == 1
            tx.put_map_item("p001", "each", item, failed=failed, output={"error": "x"} if failed else [item])
        tx.put_map_item("p001", "other", 0, failed=False, output="elsewhere")
        tx.put_map_item("p001", "each", 2, failed=False, output="again")  # the same item again: replaced
        return tx.map_outputs("p001", "each")

    assert await transact(store, put) == [[0], None, "again", [11]]
    assert await transact(store, lambda tx: tx.map_outputs("p001", "none")) == []


async def test_processes_are_listed_by_business_key_prefix_case_sensitively(store: Store) -> None:
    keys = ["A-17", "A-170", "A-2", "a-17", "B-17", "", "A_17", "%-17"]
    records = [process(n, business_key=key) for n, key in enumerate(keys)]
    await transact(store, lambda tx: [tx.save(r, new=True) for r in records])

    async def keys_with(prefix: str, **filters: Any) -> list[str]:
        query: dict[str, Any] = {"definition": "", "version": 0, "states": [], "business_key": ""}
        query.update(filters)
        listed = await store.wf_list_processes(**query, before=None, limit=100, business_key_prefix=prefix)
        return sorted(p.business_key for p in listed)

    assert await keys_with("A-17") == ["A-17", "A-170"]
    assert await keys_with("A-") == ["A-17", "A-170", "A-2"]
    assert await keys_with("a") == ["a-17"]
    assert await keys_with("%") == ["%-17"]  # no wildcards
    assert await keys_with("A_") == ["A_17"]
    assert await keys_with("A-17", business_key="A-170") == ["A-170"]
    assert await keys_with("A-", started=(1001.0, 1002.0)) == ["A-170"]  # created at 1000 + n
    assert await keys_with("", started=(1006.0, None)) == ["%-17", "A_17"]
    assert await keys_with("", started=(None, 1001.0)) == ["A-17"]
    assert len(await keys_with("")) == len(keys)


async def test_processes_are_counted_by_definition_version_and_state(store: Store) -> None:
    records = [
        process(1),
        process(2),
        process(3, version=2),
        process(4, version=2, state=ProcessState.COMPLETED),
        process(5, definition="other", state=ProcessState.CANCELLED),
    ]
    assert await store.wf_count_by_version() == {}
    await transact(store, lambda tx: [tx.save(r, new=True) for r in records])

    assert await store.wf_count_by_version() == {
        ("permit", 1): {ProcessState.RUNNING: 2},
        ("permit", 2): {ProcessState.RUNNING: 1, ProcessState.COMPLETED: 1},
        ("other", 1): {ProcessState.CANCELLED: 1},
    }


async def test_listing_pages_by_creation_time_then_id_without_gaps_or_repeats(store: Store) -> None:
    # Several processes per creation time: the id breaks the tie, so a page boundary inside a tie is exact.
    records = [process(n, created_at=1000.0 + n // 3) for n in range(10)]
    await transact(store, lambda tx: [tx.save(r, new=True) for r in records])

    pages: list[list[str]] = []
    before: tuple[float, str] | None = None
    while True:
        page = await store.wf_list_processes(
            definition="", version=0, states=[], business_key="", before=before, limit=4
        )
        if not page:
            break
        pages.append([p.id for p in page])
        before = (page[-1].created_at, page[-1].id)

    assert pages == [
        ["p009", "p008", "p007", "p006"],
        ["p005", "p004", "p003", "p002"],
        ["p001", "p000"],
    ]


async def test_processes_are_counted_by_definition_and_state(store: Store) -> None:
    def work(tx: WorkflowTx) -> None:
        tx.save(process(1), new=True)
        tx.save(process(2), new=True)
        tx.save(process(3, state=ProcessState.COMPLETED), new=True)
        tx.save(process(4, definition="audit", state=ProcessState.FAILED), new=True)

    assert await store.wf_count_processes() == {}
    await transact(store, work)

    assert await store.wf_count_processes() == {
        ("permit", ProcessState.RUNNING): 2,
        ("permit", ProcessState.COMPLETED): 1,
        ("audit", ProcessState.FAILED): 1,
    }


async def test_commits_are_timed_and_counted_and_the_queue_is_seen_empty_after(store: Store) -> None:
    seen: list[tuple[float, int]] = []
    store.stats.on_commit = lambda seconds, writes: seen.append((seconds, writes))

    await asyncio.gather(*(transact(store, lambda tx, n=n: tx.save(process(n), new=True)) for n in range(20)))

    assert sum(writes for _, writes in seen) == 20
    assert all(seconds >= 0 for seconds, _ in seen)
    assert store.pending_writes == 0
    assert store.stats.transactions_retried == 0


async def test_history_is_read_in_order_after_a_sequence(store: Store) -> None:
    events = [event("p001", n, details=[n], text="é✓") for n in range(1, 8)]
    await transact(store, lambda tx: tx.history(events))
    await transact(store, lambda tx: tx.history([event("p002", 1)]))

    assert await store.wf_history("p001", 0, 3) == events[:3]
    assert await store.wf_history("p001", 3, 100) == events[3:]
    assert await store.wf_history("p001", 7, 100) == []
    assert await store.wf_history("p002", 0, 100) == [event("p002", 1)]


# -- task attempts ----------------------------------------------------------------------------------


async def test_task_attempts_are_added_replaced_and_removed(store: Store) -> None:
    await add_tasks(store, task("p1", "pay"), task("p1", "docs", service="Docs"), task("p2", "pay"))
    await add_tasks(store, task("p1", "pay", heartbeat_details={"progress": 0.5}))  # the same token: replaced
    await transact(store, lambda tx: tx.remove_tasks(["p1/docs/1/t", "never-added"]))

    assert await store.wf_tasks() == [
        task("p1", "pay", heartbeat_details={"progress": 0.5}),
        task("p2", "pay"),
    ]


async def test_attempts_added_here_are_owned_here_until_released(store: Store) -> None:
    await add_tasks(store, *(task(f"p{n}", "pay") for n in range(5)), task("p9", "docs", service="Docs"))

    owned = await store.wf_claim_tasks("Pay", limit=10)
    await store.wf_release_tasks([task("p0", "pay"), task("p1", "pay")])
    released = await store.wf_claim_tasks("Pay", limit=10)
    claimed_again = await store.wf_claim_tasks("Pay", limit=10)

    assert owned == []  # nobody else may take them while this replica hands them out
    assert sorted(t.token for t in released) == ["p0/pay/1/t", "p1/pay/1/t"]
    assert claimed_again == []


async def test_claims_take_at_most_the_limit_of_one_service(store: Store) -> None:
    await add_tasks(store, *(task(f"p{n}", "pay") for n in range(5)), task("p9", "docs", service="Docs"))
    await store.wf_release_owned()

    first = await store.wf_claim_tasks("Pay", limit=3)
    rest = await store.wf_claim_tasks("Pay", limit=3)
    docs = await store.wf_claim_tasks("Docs", limit=3)

    assert len(first) == 3 and len(rest) == 2
    assert {t.token for t in first} | {t.token for t in rest} == {f"p{n}/pay/1/t" for n in range(5)}
    assert docs == [task("p9", "docs", service="Docs")]
    assert await store.wf_claim_tasks("Nobody", limit=3) == []


async def test_claims_take_only_the_task_types_asked_for(store: Store) -> None:
    await add_tasks(
        store,
        *(task(f"p{n}", "pay", task_type="charge") for n in range(3)),
        task("p9", "pay", task_type="refund"),
    )
    await store.wf_release_owned()

    refunds = await store.wf_claim_tasks("Pay", limit=10, task_types=["refund", "other"])
    nothing = await store.wf_claim_tasks("Pay", limit=10, task_types=[])
    rest = await store.wf_claim_tasks("Pay", limit=10, task_types=None)
    # A row written by a version that stored no task type may be of any type: it is claimed too.
    await add_tasks(store, task("p8", "pay", task_type=""))
    await store.wf_release_owned()  # p9 too, claimed above
    untyped = await store.wf_claim_tasks("Pay", limit=10, task_types=["refund"])

    assert [t.token for t in refunds] == ["p9/pay/1/t"]
    assert nothing == []
    assert sorted(t.token for t in rest) == [f"p{n}/pay/1/t" for n in range(3)]
    assert sorted(t.token for t in untyped) == ["p8/pay/1/t", "p9/pay/1/t"]


async def test_a_stopping_replica_releases_every_attempt_it_owns(store: Store) -> None:
    await add_tasks(
        store, task("p1", "pay"), task("p2", "docs", service="Docs"), task("p3", "x", service="Pay")
    )

    await store.wf_release_owned()

    assert len(await store.wf_claim_tasks("Pay", limit=10)) == 2
    assert len(await store.wf_claim_tasks("Docs", limit=10)) == 1
    assert len(await store.wf_tasks()) == 3  # released, not removed


async def test_the_attempts_of_a_live_replica_are_no_orphans(store: Store) -> None:
    await add_tasks(store, task("p1", "pay"))

    assert await store.wf_release_orphans() == []
    assert await store.wf_claim_tasks("Pay", limit=10) == []


@ONLY_POSTGRES
async def test_the_attempts_of_a_replica_that_is_gone_are_freed_for_the_others(store_url: str) -> None:
    survivor = await open_store(store_url)
    gone = await open_store(store_url)
    try:
        await add_tasks(gone, task("p1", "pay"), task("p2", "docs", service="Docs"))
        await add_tasks(survivor, task("p3", "pay"))
        await gone.close()  # its sessions end, as when its process is killed

        # PostgreSQL lists a closed session for a moment after its client left: the leader, which
        # frees orphans every second, would simply find them on its next pass. So does this test.
        async with asyncio.timeout(10):
            while True:
                freed = await survivor.wf_release_orphans()
                if freed:
                    break
                await asyncio.sleep(0.05)  # waits-on-purpose: pacing the leader's pass
        claimed = await survivor.wf_claim_tasks("Pay", limit=10)
    finally:
        await gone.close()
        await survivor.close()

    assert freed == ["Docs", "Pay"]
    assert [t.token for t in claimed] == ["p1/pay/1/t"]  # not p3: the survivor still owns it


@ONLY_POSTGRES
async def test_replicas_claiming_at_once_never_take_the_same_attempt(store_url: str) -> None:
    replicas = [await open_store(store_url) for _ in range(3)]
    try:
        await add_tasks(replicas[0], *(task(f"p{n:02d}", "pay") for n in range(40)))
        await replicas[0].wf_release_owned()
        rounds = await asyncio.gather(*(r.wf_claim_tasks("Pay", limit=5) for r in replicas for _ in range(4)))
    finally:
        for replica in replicas:
            await replica.close()

    tokens = [t.token for claimed in rounds for t in claimed]
    assert len(tokens) == len(set(tokens)) == 40


@ONLY_POSTGRES
async def test_attempts_released_by_one_replica_are_claimed_by_another(store_url: str) -> None:
    holder = await open_store(store_url)
    other = await open_store(store_url)
    try:
        await add_tasks(holder, task("p1", "pay"), task("p2", "pay"))
        before = await other.wf_claim_tasks("Pay", limit=10)
        await other.wf_release_tasks([task("p1", "pay")])  # not its own: changes nothing
        still_held = await other.wf_claim_tasks("Pay", limit=10)
        await holder.wf_release_tasks([task("p1", "pay")])
        after = await other.wf_claim_tasks("Pay", limit=10)
    finally:
        await holder.close()
        await other.close()

    assert (before, still_held) == ([], [])
    assert [t.token for t in after] == ["p1/pay/1/t"]


# -- timers and Bus waits ---------------------------------------------------------------------------


async def test_timers_are_set_moved_and_come_due_earliest_first(store: Store) -> None:
    def work(tx: WorkflowTx) -> None:
        tx.set_timer("p1", "sleep:nap", 300.0)
        tx.set_timer("p2", "retry:pay", 100.0)
        tx.set_timer("p3", "wait:approve", 200.0)
        tx.set_timer("p1", "process_timeout", 900.0)
        tx.set_timer("p1", "sleep:nap", 250.0)  # moved

    await transact(store, work)

    assert sorted(await store.wf_timers()) == [
        ("p1", "process_timeout", 900.0),
        ("p1", "sleep:nap", 250.0),
        ("p2", "retry:pay", 100.0),
        ("p3", "wait:approve", 200.0),
    ]
    assert await store.wf_due_timers(250.0, 10) == [
        ("p2", "retry:pay", 100.0),
        ("p3", "wait:approve", 200.0),
        ("p1", "sleep:nap", 250.0),
    ]
    assert await store.wf_due_timers(1000.0, 2) == [("p2", "retry:pay", 100.0), ("p3", "wait:approve", 200.0)]
    assert await store.wf_due_timers(99.0, 10) == []


async def test_a_timer_is_cleared_only_when_due_by_the_given_time(store: Store) -> None:
    await transact(store, lambda tx: (tx.set_timer("p1", "a", 100.0), tx.set_timer("p1", "b", 100.0)))

    def work(tx: WorkflowTx) -> list[bool]:
        return [
            tx.clear_timer("p1", "a", due_by=99.0),  # moved later than the firing replica thought
            tx.clear_timer("p1", "a", due_by=100.0),
            tx.clear_timer("p1", "a", due_by=100.0),  # fired already: the second one does nothing
            tx.clear_timer("p1", "b"),
            tx.clear_timer("p1", "never"),
        ]

    assert await transact(store, work) == [False, True, False, True, False]
    assert await store.wf_timers() == []


async def test_timers_dropped_by_a_transition_go_and_may_be_set_again(store: Store) -> None:
    await transact(store, lambda tx: [tx.set_timer("p1", name, 100.0) for name in ("a", "b", "c")])

    def work(tx: WorkflowTx) -> None:
        tx.drop_timers("p1", ["a", "b", "never"])
        tx.drop_timers("p1", [])
        tx.set_timer("p1", "b", 300.0)  # dropped and set again by the same transition (a retry moved)

    await transact(store, work)

    assert sorted(await store.wf_timers()) == [("p1", "b", 300.0), ("p1", "c", 100.0)]


async def test_bus_waits_are_added_replaced_and_cleared(store: Store) -> None:
    await store.bus_append([OutgoingMessage("x", b"")] * 4, now=1.0, dedup_window_s=0.0)

    def work(tx: WorkflowTx) -> None:
        tx.add_bus_wait("p1", "result", "inspection.*.result")
        tx.add_bus_wait("p2", "result", "inspection.>")
        tx.add_bus_wait("p3", "paid", "payments.>")

    await transact(store, work)
    await store.bus_append([OutgoingMessage("x", b"")], now=2.0, dedup_window_s=0.0)
    again = await transact(store, lambda tx: tx.add_bus_wait("p1", "result", "inspection.a.result"))
    await transact(store, lambda tx: (tx.clear_bus_wait("p2", "result"), tx.clear_bus_wait("p9", "none")))

    assert again == 5
    assert sorted(await store.wf_bus_waits()) == [
        ("p1", "result", "inspection.a.result", 5),
        ("p3", "paid", "payments.>", 4),
    ]


# -- secrets ----------------------------------------------------------------------------------------


async def test_a_secret_is_made_once_and_kept(store_url: str) -> None:
    first = await open_store(store_url)
    try:
        tokens = await first.secret("task_tokens")
        same = await first.secret("task_tokens")
        other = await first.secret("delivery_ids")
        racing = await asyncio.gather(*(first.secret("raced") for _ in range(10)))
    finally:
        await first.close()
    reopened = await open_store(store_url)
    try:
        kept = await reopened.secret("task_tokens")
    finally:
        await reopened.close()

    assert len(tokens) == 32 and tokens == same == kept
    assert other != tokens
    assert len(set(racing)) == 1


@ONLY_POSTGRES
async def test_replicas_share_one_secret(store_url: str) -> None:
    replicas = [await open_store(store_url) for _ in range(2)]
    try:
        keys = await asyncio.gather(*(r.secret("task_tokens") for r in replicas))
    finally:
        for replica in replicas:
            await replica.close()

    assert keys[0] == keys[1]


async def test_a_keyed_start_finds_its_process_through_the_key_index(store: Store, store_url: str) -> None:
    """StartProcess looks its business key up on every keyed start: a scan made 100,000 keyed starts
    quadratic (seen: the console bench's starts slowed to a crawl; EXPLAIN said SCAN wf_processes)."""
    if store_url.startswith("sqlite"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as conn:
            plan = " ".join(str(row) for row in conn.execute(f"EXPLAIN QUERY PLAN {FIND_BY_KEY}", ("d", "k")))
    else:
        async with await psycopg.AsyncConnection.connect(store_url) as conn:
            await conn.execute("SET enable_seqscan = off")  # an empty table: ask whether the index can serve
            cursor = await conn.execute(
                "EXPLAIN " + FIND_BY_KEY.replace("?", "%s"), ("d", "k"), prepare=False
            )
            plan = " ".join(str(row) for row in await cursor.fetchall())
    assert "wf_processes_by_key" in plan, plan
