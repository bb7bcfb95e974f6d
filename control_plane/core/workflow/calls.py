"""Call steps: starting the called process inside the caller's transaction (see relations.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from control_plane.core import validate
from control_plane.core.limits import MAX_BUSINESS_KEY, MAX_INPUT
from control_plane.core.versions import parse_version_filter
from control_plane.core.workflow.definition import CallSpec, Definition
from control_plane.core.workflow.ids import new_process_id
from control_plane.core.workflow.machine import Machine
from control_plane.core.workflow.relations import CallRefused
from control_plane.errors import InvalidArgument
from control_plane.models import DefinitionVersion, ProcessRecord, ProcessState
from control_plane.storage.base import WorkflowTx

# Most calls down from a process started by StartProcess: a definition that calls itself (directly or
# not) fails its call step there, rather than start processes without end.
MAX_CALL_DEPTH = 16
# The stored versions of a definition, newest first, and a compiled version by (name, version).
Versions = Callable[[str], list[DefinitionVersion]]
Compiled = Callable[[str, int], Definition]
# Stores a machine's transition; returns the Bus waits it started (Workflows._write).
Write = Callable[[WorkflowTx, Machine], list[tuple[str, str, int]]]


class MissingDefinition(Exception):
    """A call names a definition this replica has not loaded: perhaps registered on another a moment ago."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def child_key(parent: ProcessRecord, step_id: str) -> str:
    """The business key of the process a call step starts: the same for every start of that step.

    Derived from the parent's business key (or id, when it has none) and the step, so a start made
    again (a transition run again after losing a race with a replica) finds the process already there.
    """
    key = (
        f"{parent.definition}:{parent.business_key}/{step_id}"
        if parent.business_key
        else f"{parent.id}/{step_id}"
    )
    if len(key) > MAX_BUSINESS_KEY:
        key = f"{parent.definition}:{hashlib.sha256(key.encode()).hexdigest()}/{step_id}"[-MAX_BUSINESS_KEY:]
    return key


def resolve(versions: list[DefinitionVersion], version_range: str) -> int | None:
    """The newest version in `version_range` ("" for the newest of all), or None."""
    if not version_range:
        return versions[0].version if versions else None
    wanted = parse_version_filter(version_range)
    return next((v.version for v in versions if wanted.matches(str(v.version))), None)


@dataclass(slots=True)
class TxRelations:
    """Relations (see relations.py) inside one store transaction; remembers the processes it started."""

    tx: WorkflowTx
    versions: Versions
    compiled: Compiled
    write: Write
    # Where replicas share the store: raise MissingDefinition (to reload and run the transition again)
    # rather than fail the step at once.
    reload_missing: bool = False
    started: list[tuple[Machine, list[tuple[str, str, int]]]] = field(default_factory=list)

    def start_child(self, parent: ProcessRecord, step_id: str, spec: CallSpec, child_input: Any) -> str:
        name, version_range = spec.definition, spec.version
        if parent.depth >= MAX_CALL_DEPTH:
            raise CallRefused(
                "CALL_DEPTH",
                f"process {parent.id} is {parent.depth} calls deep already (at most {MAX_CALL_DEPTH})",
            )
        version = resolve(self.versions(name), version_range)
        if version is None and self.reload_missing:
            raise MissingDefinition(name)
        if version is None:
            wanted = f"a version in {version_range!r}" if version_range else "any version"
            raise CallRefused("CALL_DEFINITION", f"definition {name!r} has {wanted} registered: none")
        definition = self.compiled(name, version)
        violations = validate.check_json("input", child_input, MAX_INPUT)
        try:
            if violations:
                raise InvalidArgument(violations)
            definition.check_input(child_input)
        except InvalidArgument as exc:
            raise CallRefused("CALL_INPUT", f"input for {name} version {version}: {exc}") from None
        key = child_key(parent, step_id)
        existing = self.tx.find_by_key(name, key)
        if existing is not None:
            if existing.parent_id == parent.id:
                return existing.id
            raise CallRefused("CALL_KEY_TAKEN", f"a process of {name} has business key {key!r} already")
        record = ProcessRecord(
            id=new_process_id(self.tx.now),
            definition=name,
            version=version,
            business_key=key,
            state=ProcessState.STARTED,
            input=child_input,
            created_at=self.tx.now,
            updated_at=self.tx.now,
            parent_id=parent.id,
            parent_step=step_id,
            depth=parent.depth + 1,
        )
        machine = Machine(record, definition, self.tx.now, self)
        machine.start()
        self.started.append((machine, self.write(self.tx, machine)))
        return record.id

    def peek(self, process_id: str) -> ProcessRecord | None:
        return self.tx.peek(process_id)

    def put_map_item(self, process_id: str, step_id: str, item: int, *, failed: bool, output: Any) -> None:
        self.tx.put_map_item(process_id, step_id, item, failed=failed, output=output)

    def map_outputs(self, process_id: str, step_id: str) -> list[Any]:
        return self.tx.map_outputs(process_id, step_id)
