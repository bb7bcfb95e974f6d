"""DocumentService: checks that an application carries the documents its project needs."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

from hms_mgmt import TaskContext, TaskFailure
from services.permit.runtime import ServiceSpec, main

logger = logging.getLogger(__name__)

NAME = "DocumentService"
VERSION = "1.3.0"
BASE_DOCUMENTS = ("site_plan", "ownership_proof")
# Above this declared cost an engineer's structural calculation must be filed too.
STRUCTURAL_CALC_FROM = 100_000.0
REVIEWERS = ("eng-ortega", "eng-lindqvist")


def required_documents(cost: float) -> list[str]:
    """The documents an application of `cost` must include."""
    extra = ["structural_calc"] if cost > STRUCTURAL_CALC_FROM else []
    return [*BASE_DOCUMENTS, *extra]


class DocumentService:
    """Validates documents and runs the structural review of large projects."""

    def __init__(self) -> None:
        self.reviews: dict[str, str] = {}

    def spec(self) -> ServiceSpec:
        """Name, version, tags and handlers to serve."""
        handlers = {"validateDocs": self.validate_docs, "structuralReview": self.structural_review}
        return ServiceSpec(NAME, VERSION, ("permit", "documents"), handlers)

    async def validate_docs(self, task: TaskContext) -> Mapping[str, Any]:
        """Fail for good with INVALID_DOCUMENTS, naming every missing document."""
        filed = {str(doc) for doc in task.input.get("documents") or []}
        required = required_documents(float(task.input.get("cost", 0.0)))
        missing = [doc for doc in required if doc not in filed]
        if missing:
            raise TaskFailure("INVALID_DOCUMENTS", f"missing: {', '.join(missing)}", non_retryable=True)
        return {"checked": required}

    async def structural_review(self, task: TaskContext) -> Mapping[str, Any]:
        """Assign a structural engineer to a large project (the same one on a retry)."""
        application = str(task.input.get("application_id", task.process_id))
        reviewer = self.reviews.setdefault(application, REVIEWERS[len(self.reviews) % len(REVIEWERS)])
        return {"reviewer": reviewer, "approved": True}


if __name__ == "__main__":
    sys.exit(main("documents", lambda: DocumentService().spec()))
