"""The engine numbers the Bus subjects of each process itself (no bus_subjects row per process subject)."""

from __future__ import annotations

import orjson

from control_plane.core.workflow.machine import Machine
from control_plane.core.workflow.parser import parse_definition
from control_plane.models import ProcessRecord, ProcessState

DEFINITION = parse_definition(
    "name: numbered\nsteps:\n"
    "  - {id: a, task: {service: S, type: t}}\n"
    "  - {id: b, task: {service: S, type: t}}\n"
)


def new_record(**changes: object) -> ProcessRecord:
    record = ProcessRecord("p1", "numbered", 1, "", ProcessState.STARTED, {}, 0.0, 0.0)
    for name, value in changes.items():
        setattr(record, name, value)
    return record


def run_both_steps(record: ProcessRecord) -> list[tuple[str, int]]:
    """Start the process and complete its two tasks, each a transition of its own, as the engine does;
    the (subject event, subject sequence) of every message published, in order."""
    published: list[tuple[str, int]] = []
    for act in ("start", "a", "b"):
        stored = ProcessRecord.from_json(orjson.loads(orjson.dumps(record.to_json())))  # as loaded
        machine = Machine(stored, DEFINITION, 1.0)
        if act == "start":
            machine.start()
        else:
            machine.complete_task(act, 1, False, {"step": act})
        published += [(m.subject.rsplit(".", 1)[1], m.subject_sequence) for m in machine.effects.messages]
        record = machine.record
    return published


def test_each_process_subject_is_numbered_from_one_across_transitions() -> None:
    assert run_both_steps(new_record()) == [
        ("process_started", 1),
        ("process_running", 1),
        ("step_started", 1),
        ("step_completed", 1),
        ("step_started", 2),
        ("step_completed", 2),
        ("process_completed", 1),
    ]


def test_a_process_stored_before_the_engine_numbered_its_subjects_leaves_that_to_the_bus() -> None:
    stored = new_record().to_json()
    del stored["published"]  # as written by earlier versions
    legacy = ProcessRecord.from_json(stored)

    assert legacy.published is None
    assert {number for _, number in run_both_steps(legacy)} == {0}  # 0: the Bus numbers the message
