"""What one process's transition may read or write beyond its own record, in the same transaction.

A call step starts another process (its child) in its own transition, so a start is never lost nor
doubled; the items of a map step that ended are kept beside the record, not in it. Processes tell
each other that something happened through durable timers due at once (`child:<step>` on the parent
when a child ends; `parent:cancel|abort|compensate` on a child), so that a transition locks one
process only and replicas never wait on each other in opposite orders.
"""

from __future__ import annotations

from typing import Any, Protocol

from control_plane.core.workflow.definition import CallSpec
from control_plane.models import ProcessRecord

# Timer names by which processes tell each other (see the module's docstring).
CHILD_ENDED = "child"
PARENT_SAYS = "parent"
CANCEL = "cancel"  # cancel without compensating (CancelProcess without compensate)
ABORT = "abort"  # cancel and compensate what completed (the parent failed, was cancelled or timed out)
COMPENSATE = "compensate"  # a completed child undoes its completed steps (the parent is compensating)


class CallRefused(Exception):
    """A call step could not start its process: the step fails with `code`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Relations(Protocol):
    """The transaction a transition runs in, as far as calls and maps need it."""

    def start_child(self, parent: ProcessRecord, step_id: str, spec: CallSpec, child_input: Any) -> str:
        """Start the process a call step runs (or find it by its derived business key); its id.

        Raises CallRefused when the definition, its version or the input does not allow a start.
        """
        ...

    def peek(self, process_id: str) -> ProcessRecord | None:
        """Another process as stored (not locked: only its outcome is read), or None."""
        ...

    def put_map_item(self, process_id: str, step_id: str, item: int, *, failed: bool, output: Any) -> None:
        """Keep what one item of a map step ended with."""
        ...

    def map_outputs(self, process_id: str, step_id: str) -> list[Any]:
        """The outputs of a map step's items, in item order (None for a failed one)."""
        ...


class Detached:
    """Relations of a machine outside any transaction: calls and maps cannot run there."""

    def start_child(self, parent: ProcessRecord, step_id: str, spec: CallSpec, child_input: Any) -> str:
        raise CallRefused("CALL_UNAVAILABLE", "no store transaction to start a process in")

    def peek(self, process_id: str) -> ProcessRecord | None:
        return None

    def put_map_item(self, process_id: str, step_id: str, item: int, *, failed: bool, output: Any) -> None:
        raise RuntimeError("map items need a store transaction")

    def map_outputs(self, process_id: str, step_id: str) -> list[Any]:
        raise RuntimeError("map items need a store transaction")
