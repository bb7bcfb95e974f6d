"""The store contract for incidents, search and retention: every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from control_plane.core.workflow.definition import OnFailure
from control_plane.core.workflow.parser import parse_definition
from control_plane.errors import InvalidArgument
from control_plane.models import EventType, Incident, ProcessSearch, ProcessState, StepRun, StepState
from control_plane.storage import Store
from control_plane.storage.base import WorkflowTx
from tests.test_store_workflow import event, process, task, transact


async def listed(store: Store, search: ProcessSearch, definition: str = "") -> list[str]:
    records = await store.wf_list_processes(
        definition=definition,
        version=0,
        states=[],
        business_key="",
        before=None,
        limit=100,
        search=search,
    )
    return [r.id for r in records]


async def test_incidents_are_opened_listed_newest_first_and_resolved(store: Store) -> None:
    error = {"code": "DOWN", "message": "down", "details": None, "step_id": "pay", "attempt": 2, "time": 10.0}
    first = Incident("p001", "permit", "pay", 7, error, 10.0)
    second = Incident("p002", "other", "ship", 4, error, 20.0)

    def open_both(tx: WorkflowTx) -> None:
        tx.save(process(1), new=True)
        tx.save(process(2, definition="other"), new=True)
        tx.add_incidents([first, second])

    await transact(store, open_both)
    every = await store.wf_incidents(definition="", process_id="", resolved=False, before=None, limit=10)
    of_permit = await store.wf_incidents(
        definition="permit", process_id="", resolved=False, before=None, limit=10
    )
    after_newest = await store.wf_incidents(
        definition="", process_id="", resolved=False, before=(20.0, "p002", 4), limit=10
    )
    await transact(store, lambda tx: tx.resolve_incidents("p001", [("pay", "retried")]), now=30.0)
    still_open = await store.wf_incidents(definition="", process_id="", resolved=False, before=None, limit=10)
    with_resolved = await store.wf_incidents(
        definition="", process_id="p001", resolved=True, before=None, limit=10
    )

    assert every == [second, first]
    assert of_permit == [first]
    assert after_newest == [first]
    assert still_open == [second]
    assert with_resolved == [replace(first, resolved_at=30.0, resolution="retried")]


async def test_processes_are_found_by_search_attribute_end_time_current_step_and_incident(
    store: Store,
) -> None:
    waiting = process(1)
    waiting.steps["review"] = StepRun("review", StepState.WAITING)
    stuck = process(2)
    stuck.steps["pay"] = StepRun("pay", StepState.INCIDENT)
    ended = process(3, state=ProcessState.COMPLETED, ended_at=2000.0)
    ended.steps["review"] = StepRun("review", StepState.COMPLETED)

    def write(tx: WorkflowTx) -> None:
        for record in (waiting, stuck, ended):
            tx.save(record, new=True)
        tx.set_search("p001", "permit", {"applicant": "ann", "district": "north"})
        tx.set_search("p002", "permit", {"applicant": "bob", "district": "north"})
        tx.set_search("p003", "permit", {"applicant": "ann"})

    await transact(store, write)
    # A changed value replaces the old one; None removes it.
    await transact(store, lambda tx: tx.set_search("p003", "permit", {"applicant": "cy", "district": None}))

    assert await listed(store, ProcessSearch("permit", attributes={"applicant": "ann"})) == ["p001"]
    assert await listed(store, ProcessSearch("permit", attributes={"district": "north"})) == ["p002", "p001"]
    assert await listed(store, ProcessSearch("permit", attributes={"applicant": "cy"})) == ["p003"]
    assert await listed(store, ProcessSearch("other", attributes={"applicant": "ann"})) == []
    assert await listed(store, ProcessSearch(ended=(1999.0, 2001.0))) == ["p003"]
    assert await listed(store, ProcessSearch(ended=(None, 1999.0))) == []
    assert await listed(store, ProcessSearch(current_step="review")) == ["p001"]
    assert await listed(store, ProcessSearch(current_step="revie")) == []
    assert await listed(store, ProcessSearch(current_step="pay")) == ["p002"]
    assert await listed(store, ProcessSearch(has_incident=True)) == ["p002"]
    assert await listed(store, ProcessSearch(has_incident=False)) == ["p003", "p001"]


async def test_retention_deletes_ended_processes_with_everything_kept_about_them(store: Store) -> None:
    old = [process(n, state=ProcessState.COMPLETED, ended_at=100.0 + n) for n in range(1, 4)]
    recent = process(4, state=ProcessState.FAILED, ended_at=5000.0)
    running = process(5)

    def write(tx: WorkflowTx) -> None:
        for record in (*old, recent, running):
            tx.save(record, new=True)
            tx.history([event(record.id, 1, EventType.PROCESS_STARTED)])
            tx.set_search(record.id, "permit", {"applicant": record.id})
        error: dict[str, Any] = {"code": "X"}
        tx.add_incidents([Incident("p001", "permit", "pay", 1, error, 50.0)])
        tx.add_tasks([task("p001", "pay")])

    await transact(store, write)
    first_batch = await store.wf_delete_ended(1000.0, 2)
    second_batch = await store.wf_delete_ended(1000.0, 2)
    nothing_left = await store.wf_delete_ended(1000.0, 2)

    assert first_batch == [("permit", ProcessState.COMPLETED)] * 2
    assert second_batch == [("permit", ProcessState.COMPLETED)]
    assert nothing_left == []
    for gone in ("p001", "p002", "p003"):
        assert await store.wf_process(gone) is None
        assert await store.wf_history(gone, 0, 10) == []
    assert await store.wf_incidents(definition="", process_id="", resolved=True, before=None, limit=10) == []
    assert await store.wf_tasks() == []
    assert await listed(store, ProcessSearch("permit", attributes={"applicant": "p001"})) == []
    assert await listed(store, ProcessSearch("permit", attributes={"applicant": "p004"})) == ["p004"]
    assert await store.wf_process("p004") is not None and await store.wf_process("p005") is not None


# -- the definition's side ------------------------------------------------------------------------


def test_on_failure_and_search_attributes_are_parsed_and_checked() -> None:
    good = parse_definition(
        """
name: ops
on_failure: incident
search_attributes: {applicant: "input.applicant", decision: "steps.b.output.decision"}
steps:
  - {id: a, task: {service: S, type: t}, on_failure: compensate}
  - {id: b, task: {service: S, type: t}}
"""
    )
    with pytest.raises(InvalidArgument) as caught:
        parse_definition(
            """
name: bad
on_failure: pray
search_attributes: {"not a name": "input.x", x: "nosuch.y", y: "steps.zz.output"}
steps:
  - {id: a, task: {service: S, type: t}, on_failure: later}
"""
        )
    fields = {v.field: v.description for v in caught.value.violations}

    assert good.on_failure is OnFailure.INCIDENT
    assert good.failure_policy(good.step("a")) is OnFailure.COMPENSATE
    assert good.failure_policy(good.step("b")) is OnFailure.INCIDENT
    assert sorted(good.search_attributes) == ["applicant", "decision"]
    assert "must be one of compensate, incident" in fields["on_failure"]
    assert "must be one of" in fields["steps[0].on_failure"]
    assert "letters, digits" in fields["search_attributes.not a name"]
    assert "unknown variable 'nosuch'" in fields["search_attributes.x"]
    assert "unknown step 'zz'" in fields["search_attributes.y"]
