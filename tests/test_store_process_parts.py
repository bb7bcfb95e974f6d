"""The store contract for what is kept apart from a process row (a large input, map items' step runs):
every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from control_plane.models import ProcessRecord, ProcessSearch, ProcessState, StepRun, StepRuns, StepState
from control_plane.storage import Store, sql_process_parts
from control_plane.storage.base import WorkflowTx
from tests.test_store_workflow import process, transact
from tests.test_store_workflow_operations import listed


def mapping(n: int, running: tuple[int, ...], **states: StepState) -> ProcessRecord:
    """A process whose map step `each` runs the items `running`, each one step `one` (`one#<item>`)."""
    record = process(n)
    record.steps["each"] = StepRun("each", StepState.RUNNING, items=100, items_started=max(running) + 1)
    for item in running:
        key = f"one#{item}"
        record.steps[key] = StepRun(key, states.get(f"one_{item}", StepState.SCHEDULED), attempts=1)
    return record


def held(record: ProcessRecord) -> set[str]:
    """The keys of the step runs a record holds now, reading nothing."""
    return set(dict.keys(record.steps))


async def test_a_transition_reads_and_writes_only_the_item_runs_it_asks_for(store: Store) -> None:
    await transact(store, lambda tx: tx.save(mapping(1, (0, 1, 2)), new=True))
    seen: dict[str, object] = {}

    def complete_one(tx: WorkflowTx) -> ProcessRecord:
        record = tx.load("p001")
        assert record is not None
        seen["loaded"] = held(record)
        record.steps["one#1"].state = StepState.RUNNING  # read on demand
        seen["after_lookup"] = held(record)
        seen["absent"] = record.steps.get("one#7"), "one#7" in record.steps
        record.steps.pop("one#0")  # never read: its row goes all the same
        record.steps["one#3"] = StepRun("one#3", StepState.SCHEDULED)
        tx.save(record, new=False)
        return record

    after = await transact(store, complete_one)

    def walk(tx: WorkflowTx) -> dict[str, StepState]:
        record = tx.load("p001")
        assert record is not None
        return {key: run.state for key, run in record.steps.items()}  # walking reads every one

    assert seen["loaded"] == {"each"}
    assert seen["after_lookup"] == {"each", "one#1"}
    assert seen["absent"] == (None, False)
    assert await transact(store, walk) == {
        "each": StepState.RUNNING,
        "one#1": StepState.RUNNING,
        "one#2": StepState.SCHEDULED,
        "one#3": StepState.SCHEDULED,
    }
    # Once its transaction ended, a record reads nothing more (what follows the commit runs elsewhere).
    assert after.steps.get("one#2") is None
    # Read outside a transition, a record has every item's run.
    read = await store.wf_process("p001")
    assert read is not None and held(read) == {"each", "one#1", "one#2", "one#3"}
    assert isinstance(read.steps, StepRuns)


async def test_a_record_keeps_no_item_runs_in_its_row(store: Store) -> None:
    """The record's own JSON does not grow with the items running (they are rows of their own)."""
    await transact(store, lambda tx: tx.save(mapping(1, tuple(range(100))), new=True))
    stored = await store.wf_process("p001")
    assert stored is not None
    assert len(stored.to_json(item_runs=False)["steps"]) == 1
    assert len(stored.to_json()["steps"]) == 101


@pytest.mark.parametrize("size", [10, 5000])
async def test_an_input_is_read_back_whether_kept_in_the_row_or_apart(
    store: Store, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = {"xs": list(range(size))}
    await transact(store, lambda tx: tx.save(process(1, input=big), new=True))
    # Read again from the table, not from the memory of this process.
    monkeypatch.setattr(sql_process_parts, "_INPUTS", sql_process_parts.InputCache(1 << 20))

    def load(tx: WorkflowTx) -> ProcessRecord:
        record = tx.load("p001")
        assert record is not None
        record.updated_at += 1
        tx.save(record, new=False)
        return record

    loaded = await transact(store, load)
    read = await store.wf_process("p001")
    listed_back = await store.wf_list_processes(
        definition="", version=0, states=[], business_key="", before=None, limit=10
    )
    assert loaded.input == big and loaded.input_apart == (size == 5000)
    assert read is not None and read.input == big
    assert [r.input for r in listed_back] == [big]


async def test_an_item_in_incident_marks_its_process_until_it_leaves_that_state(store: Store) -> None:
    record = mapping(1, (0, 4), one_4=StepState.INCIDENT)
    await transact(store, lambda tx: tx.save(record, new=True))
    await transact(store, lambda tx: tx.save(process(2), new=True))

    def touch(key: str, state: StepState | None) -> object:
        def work(tx: WorkflowTx) -> None:
            loaded = tx.load("p001")
            assert loaded is not None
            if state is None:
                loaded.steps.pop(key)
            else:
                loaded.steps[key].state = state
            tx.save(loaded, new=False)

        return work

    opened = await listed(store, ProcessSearch(has_incident=True))
    await transact(store, touch("one#0", StepState.RUNNING))  # another item: item 4 stays in INCIDENT
    still = await listed(store, ProcessSearch(has_incident=True))
    await transact(store, touch("one#4", None))  # skipped by an operator, say: the item ended
    resolved = await listed(store, ProcessSearch(has_incident=True))
    assert (opened, still, resolved) == (["p001"], ["p001"], [])
    assert await listed(store, ProcessSearch(current_step="each")) == ["p001"]


async def test_retention_deletes_what_was_kept_apart(store: Store) -> None:
    ended = mapping(1, (0,))
    ended.input = {"xs": list(range(5000))}
    ended.state, ended.ended_at = ProcessState.FAILED, 10.0
    await transact(store, lambda tx: tx.save(ended, new=True))
    assert await store.wf_delete_ended(100.0, 10) == [("permit", ProcessState.FAILED)]

    # The same id again starts from nothing: no item run and no input are left over.
    again = mapping(1, (5,))
    again.input = {"xs": list(range(6000))}
    await transact(store, lambda tx: tx.save(again, new=True))
    read = await store.wf_process("p001")
    assert read is not None and held(read) == {"each", "one#5"} and read.input == again.input


async def test_items_active_are_found_by_current_step_though_a_transition_reads_only_one(
    store: Store,
) -> None:
    await transact(store, lambda tx: tx.save(mapping(1, (0, 1, 2)), new=True))

    def end_item_0_and_start_3(tx: WorkflowTx) -> None:
        record = tx.load("p001")
        assert record is not None
        record.steps.pop("one#0")
        record.steps["one#3"] = StepRun("one#3", StepState.SCHEDULED)
        record.steps["one#1"].state = StepState.COMPLETED  # ended, say, but its run stays
        tx.save(record, new=False)

    await transact(store, end_item_0_and_start_3)
    found = {
        key: await listed(store, ProcessSearch(current_step=key))
        for key in ("one#0", "one#1", "one#2", "one#3")
    }
    assert found == {"one#0": [], "one#1": [], "one#2": ["p001"], "one#3": ["p001"]}
    assert await listed(store, ProcessSearch(current_step="each")) == ["p001"]
