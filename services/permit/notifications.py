"""NotificationService in Python: records the decision notice it "sends" (used when the Node service is absent)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hms_mgmt import TaskContext
from services.permit.runtime import ServiceSpec, main

logger = logging.getLogger(__name__)

NAME = "NotificationService"
VERSION = "1.0.0"


@dataclass(frozen=True, slots=True)
class Notice:
    """A decision notice as sent to the applicant."""

    notice_id: str
    application_id: str
    applicant: str
    decision: str
    text: str


class NotificationService:
    """Keeps the notices it sent, one per process (a retry sends nothing twice)."""

    def __init__(self, on_sent: Callable[[Notice], None] | None = None) -> None:
        self.sent: dict[str, Notice] = {}  # by process id
        self._on_sent = on_sent

    def spec(self) -> ServiceSpec:
        """Name, version, tags and handlers to serve."""
        return ServiceSpec(
            NAME, VERSION, ("permit", "notifications", "python"), {"sendDecision": self.send_decision}
        )

    async def send_decision(self, task: TaskContext) -> Mapping[str, Any]:
        """Send the decision notice of an application."""
        notice = self.sent.get(task.process_id)
        if notice is None:
            application = str(task.input.get("application_id", ""))
            decision = str(task.input.get("decision", ""))
            notes = str(task.input.get("notes", ""))
            text = f"Building permit {application}: {decision}." + (f" {notes}" if notes else "")
            notice = Notice(
                f"notice-{len(self.sent) + 1:04d}",
                application,
                str(task.input.get("applicant", "")),
                decision,
                text,
            )
            self.sent[task.process_id] = notice
            logger.info("sent to %s: %s", notice.applicant, text)
            if self._on_sent is not None:
                self._on_sent(notice)
        return {"notice_id": notice.notice_id, "channel": "email", "to": notice.applicant}


if __name__ == "__main__":
    sys.exit(main("notifications", lambda: NotificationService().spec()))
