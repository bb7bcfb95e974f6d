"""Each permit service starts by hand (`python -m services.permit.<name> --server ...`), as
services/README.md says: it registers with the control plane, does its step and leaves on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from control_plane.server import App
from hms_mgmt import Client
from hms_mgmt.types import ProcessState

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 30.0

CASES = [
    (
        "documents",
        "DocumentService",
        "validateDocs",
        {"cost": 1000, "documents": ["site_plan", "ownership_proof"]},
        "checked",
    ),
    ("payments", "PaymentService", "chargeFee", {"cost": 100000}, "receipt"),
    ("inspections", "InspectionService", "assignInspector", {"application_id": "BP-1"}, "inspector"),
    (
        "notifications",
        "NotificationService",
        "sendDecision",
        {"application_id": "BP-1", "decision": "approved"},
        "notice_id",
    ),
]


def one_step(service: str, task_type: str) -> str:
    return f"""
name: by_hand_{task_type}
steps:
  - id: only
    task: {{service: {service}, type: {task_type}}}
    input: {{payload: "input"}}
output: {{result: "steps.only.output"}}
"""


@pytest.mark.parametrize(
    ("module", "service", "task_type", "payload", "answer"), CASES, ids=[c[0] for c in CASES]
)
async def test_a_permit_service_started_by_hand_registers_and_does_its_step(
    server: App,
    client: Client,
    module: str,
    service: str,
    task_type: str,
    payload: Mapping[str, Any],
    answer: str,
) -> None:
    definition = one_step(service, task_type).replace(
        '{payload: "input"}', "{" + ", ".join(f'{k}: "input.{k}"' for k in payload) + "}"
    )
    await client.workflow.apply(definition)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        f"services.permit.{module}",
        "--server",
        server.address,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        async with asyncio.timeout(START_TIMEOUT_S):
            ready = (await child.stdout.readline()).decode()
        assert ready.startswith(f"{service} ") and f"ready on {server.address}" in ready, ready
        instance_id = ready.split()[1]
        registered = await client.registry.lookup(
            service, include_unhealthy=True
        )  # probed: CRITICAL until probed
        assert [i.instance_id for i in registered] == [instance_id]

        process = await client.workflow.start(f"by_hand_{task_type}", payload)
        async with asyncio.timeout(START_TIMEOUT_S):
            final = await client.workflow.wait(process.id)
        assert final.state == ProcessState.COMPLETED, final
        assert answer in final.output["result"]
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
        async with asyncio.timeout(START_TIMEOUT_S):
            _, errors = await child.communicate()
    assert child.returncode == 0, errors.decode()
    assert await client.registry.lookup(service, include_unhealthy=True) == []  # it deregistered on SIGTERM
