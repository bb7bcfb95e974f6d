"""InspectionService: assigns an inspector and books the site visit; cancels the booking as compensation."""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hms_mgmt import TaskContext, TaskFailure
from services.permit.runtime import ServiceSpec, main

logger = logging.getLogger(__name__)

NAME = "InspectionService"
VERSION = "1.0.2"
INSPECTORS = ("insp-adeyemi", "insp-brandt", "insp-chen", "insp-dubois")
# Days no inspector works: a request for one cannot be booked.
BLOCKED_DATES = frozenset({"2026-12-25", "2026-12-26", "2027-01-01"})
SLOT_TIME = "09:00"


def inspector_for(application_id: str) -> str:
    """The inspector of an application: the same one every time, spread evenly over the team."""
    digest = hashlib.sha256(application_id.encode()).digest()
    return INSPECTORS[int.from_bytes(digest[:4], "big") % len(INSPECTORS)]


@dataclass(frozen=True, slots=True)
class Slot:
    """A booked inspection visit."""

    slot_id: str
    inspector: str
    date: str
    time: str


class InspectionService:
    """Keeps its bookings in memory, one per process."""

    def __init__(self) -> None:
        self.booked: dict[str, Slot] = {}  # by process id
        self.cancelled: dict[str, Slot] = {}  # by slot id

    def spec(self) -> ServiceSpec:
        """Name, version, tags and handlers to serve."""
        handlers = {
            "assignInspector": self.assign_inspector,
            "scheduleInspection": self.schedule_inspection,
            "cancelSlot": self.cancel_slot,
        }
        return ServiceSpec(NAME, VERSION, ("permit", "inspections"), handlers)

    async def assign_inspector(self, task: TaskContext) -> Mapping[str, Any]:
        """Pick the application's inspector (deterministic, so nothing to undo)."""
        return {"inspector": inspector_for(str(task.input.get("application_id", task.process_id)))}

    async def schedule_inspection(self, task: TaskContext) -> Mapping[str, Any]:
        """Book the requested day; fail for good with NO_SLOT_AVAILABLE on a blocked day."""
        existing = self.booked.get(task.process_id)
        if existing is None:
            date = str(task.input.get("requested_date", ""))
            if date in BLOCKED_DATES:
                raise TaskFailure("NO_SLOT_AVAILABLE", f"no inspector works on {date}", non_retryable=True)
            existing = Slot(
                f"slot-{len(self.booked) + 1:04d}", str(task.input.get("inspector", "")), date, SLOT_TIME
            )
            self.booked[task.process_id] = existing
        return {"slot_id": existing.slot_id, "date": existing.date, "time": existing.time}

    async def cancel_slot(self, task: TaskContext) -> Mapping[str, Any]:
        """Free a booked slot (compensation of scheduleInspection)."""
        slot_id = str(task.input.get("slot_id", ""))
        slot = next((s for s in self.booked.values() if s.slot_id == slot_id), None)
        if slot is not None:
            self.cancelled[slot_id] = slot
        return {"cancelled": slot_id}


if __name__ == "__main__":
    sys.exit(main("inspections", lambda: InspectionService().spec()))
