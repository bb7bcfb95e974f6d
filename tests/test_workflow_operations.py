"""Incidents and operator actions, through a real server with real SDK workers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from control_plane.errors import FailedPrecondition, InvalidArgument
from control_plane.server import App
from hms.mgmt.v1 import workflow_pb2 as pb
from hms_mgmt import (
    Client,
    HistoryEventType,
    Incident,
    Process,
    ProcessState,
    Step,
    StepState,
    TaskContext,
    TaskFailure,
)
from tests.conftest import CLI_OUTPUT
from tests.console_support import console_session
from tests.test_cli_workflow import workflow
from tests.workflow_support import Services, finish

FAST = "retry: {max_attempts: 2, initial_interval: 10ms, max_interval: 20ms}"

# The payment service is down for good (for a while): the charge step opens an incident.
INCIDENT = f"""
name: permit_ops
on_failure: incident
steps:
  - id: validate
    task: {{service: Docs, type: validate}}
    compensate: {{service: Docs, type: unvalidate}}
  - id: charge
    task: {{service: Pay, type: charge}}
    input: {{amount: "input.cost"}}
    {FAST}
  - id: decide
    task: {{service: Docs, type: decide}}
    input: {{receipt: "steps.charge.output.receipt"}}
"""


class Payment:
    """A payment service that fails until fixed."""

    def __init__(self) -> None:
        self.broken = True
        self.inputs: list[dict[str, Any]] = []

    def charge(self, task: TaskContext) -> dict[str, Any]:
        self.inputs.append(dict(task.input))
        if self.broken:
            raise TaskFailure("PAYMENT_DOWN", "the payment provider is unreachable")
        return {"receipt": f"r-{int(task.input['amount'])}"}


async def start_services(services: Services, payment: Payment) -> None:
    await services.client.workflow.apply(INCIDENT)
    await services.start("Docs", "validate", "unvalidate", "decide")
    await services.start("Pay", "charge")
    services.behaviour["charge"] = payment.charge
    services.behaviour["decide"] = lambda t: {"decision": "approved", "receipt": t.input["receipt"]}


async def until_incident(client: Client, process_id: str, step_id: str, timeout_s: float = 10.0) -> Process:
    """Follow the process until `step_id` is in INCIDENT; returns the process then."""
    async with asyncio.timeout(timeout_s):
        async for frame in client.workflow.watch(process_id):
            if any(e.type == HistoryEventType.STEP_INCIDENT and e.step_id == step_id for e in frame.events):
                return await client.workflow.status(process_id)
    raise AssertionError(f"{step_id} never opened an incident")


def step(process: Process, step_id: str) -> Step:
    return process.step(step_id)


async def test_an_incident_repaired_by_retry_step_after_the_worker_is_fixed_completes_the_process(
    client: Client, services: Services
) -> None:
    payment = Payment()
    await start_services(services, payment)
    started = await client.workflow.start("permit_ops", {"cost": 120})

    stuck = await until_incident(client, started.id, "charge")
    open_incidents = await client.workflow.incidents(definition="permit_ops")
    listed = await client.workflow.list(definition="permit_ops", incidents=pb.INCIDENT_FILTER_WITH)
    payment.broken = False
    await client.workflow.retry_step(started.id, "charge", "provider is back", input={"amount": 99})
    done = await finish(client, started.id)
    history = await client.workflow.history(started.id)
    resolved = await client.workflow.incidents(process_id=started.id, include_resolved=True)

    assert stuck.state == ProcessState.RUNNING
    assert step(stuck, "charge").state == StepState.INCIDENT
    assert step(stuck, "charge").last_error.code == "PAYMENT_DOWN"
    assert list(stuck.current_step_ids) == ["charge"]
    assert [(i.process_id, i.step_id, i.error.code) for i in open_incidents] == [
        (started.id, "charge", "PAYMENT_DOWN")
    ]
    assert isinstance(open_incidents[0], Incident) and open_incidents[0].resolved_at is None
    assert open_incidents[0].opened_at is not None and open_incidents[0].proto.step_id == "charge"
    assert [p.id for p in listed] == [started.id]
    assert done.state == ProcessState.COMPLETED
    # Two failed attempts, then a fresh set: the replaced input, numbered on (3), completes.
    assert payment.inputs == [{"amount": 120}, {"amount": 120}, {"amount": 99}]
    assert step(done, "charge").attempts == 3
    assert step(done, "decide").output["receipt"] == "r-99"
    retried = [e for e in history if e.type == HistoryEventType.STEP_RETRY_REQUESTED]
    assert len(retried) == 1
    details = retried[0].details
    assert details["by"] == {"name": "", "role": "", "via": "grpc"}
    assert details["reason"] == "provider is back"
    assert [(i.resolution, i.resolved_at is not None) for i in resolved] == [("retried", True)]
    assert await client.workflow.incidents(definition="permit_ops") == []


async def test_skip_step_output_feeds_the_next_steps_input(client: Client, services: Services) -> None:
    payment = Payment()
    await start_services(services, payment)
    started = await client.workflow.start("permit_ops", {"cost": 5})
    await until_incident(client, started.id, "charge")

    await client.workflow.skip_step(started.id, "charge", "paid at the desk", output={"receipt": "desk-7"})
    done = await finish(client, started.id)
    history = await client.workflow.history(started.id)

    assert done.state == ProcessState.COMPLETED
    assert step(done, "charge").state == StepState.COMPLETED
    assert dict(step(done, "charge").output) == {"receipt": "desk-7"}
    assert dict(done.output) == {"decision": "approved", "receipt": "desk-7"}
    skipped = next(e for e in history if e.type == HistoryEventType.STEP_SKIP_REQUESTED)
    assert skipped.details["reason"] == "paid at the desk"


async def test_fail_process_does_what_the_failure_would_have_done_without_an_incident(
    client: Client, services: Services
) -> None:
    payment = Payment()
    await start_services(services, payment)
    started = await client.workflow.start("permit_ops", {"cost": 5})
    await until_incident(client, started.id, "charge")

    await client.workflow.fail_process(started.id, "the applicant withdrew")
    done = await finish(client, started.id)

    assert done.state == ProcessState.COMPENSATED
    assert done.error.code == "PAYMENT_DOWN"
    assert step(done, "validate").state == StepState.COMPENSATED
    assert "unvalidate" in services.types(started.id)


async def test_operator_actions_are_refused_where_they_do_not_apply(
    client: Client, services: Services
) -> None:
    payment = Payment()
    await start_services(services, payment)
    started = await client.workflow.start("permit_ops", {"cost": 5})
    await until_incident(client, started.id, "charge")

    with pytest.raises(FailedPrecondition):
        await client.workflow.retry_step(started.id, "validate", "not in incident")
    with pytest.raises(InvalidArgument) as empty_reason:
        await client.workflow.skip_step(started.id, "charge", "  ")
    with pytest.raises(InvalidArgument):
        await client.workflow.retry_step(started.id, "nope", "no such step")
    with pytest.raises(FailedPrecondition):
        await client.workflow.retry_process(started.id, "it is running")
    assert "reason" in str(empty_reason.value)
    assert step(await client.workflow.status(started.id), "charge").state == StepState.INCIDENT


FAILS_FOR_GOOD = f"""
name: permit_plain
steps:
  - id: validate
    task: {{service: Docs, type: validate}}
  - id: charge
    task: {{service: Pay, type: charge}}
    input: {{amount: "input.cost"}}
    {FAST}
  - id: decide
    task: {{service: Docs, type: decide}}
    input: {{receipt: "steps.charge.output.receipt"}}
"""


async def test_retry_process_resumes_a_failed_process_from_its_failed_step(
    client: Client, services: Services
) -> None:
    payment = Payment()
    await client.workflow.apply(FAILS_FOR_GOOD)
    await services.start("Docs", "validate", "decide")
    await services.start("Pay", "charge")
    services.behaviour["charge"] = payment.charge
    services.behaviour["decide"] = lambda t: {"receipt": t.input["receipt"]}
    started = await client.workflow.start("permit_plain", {"cost": 7})
    failed = await finish(client, started.id)

    payment.broken = False
    resumed = await client.workflow.retry_process(started.id, "provider fixed")
    done = await finish(client, started.id)
    history = await client.workflow.history(started.id)

    assert failed.state == ProcessState.FAILED
    assert resumed.state == ProcessState.RUNNING
    assert done.state == ProcessState.COMPLETED
    assert dict(done.output) == {"receipt": "r-7"}
    assert services.types(started.id).count("validate") == 1  # completed steps are not run again
    assert step(done, "charge").attempts == 3
    retry = next(e for e in history if e.type == HistoryEventType.PROCESS_RETRY_REQUESTED)
    assert retry.details["steps"] == ["charge"]
    with pytest.raises(FailedPrecondition):
        await client.workflow.retry_process(started.id, "again")


# The retry and skip themselves are checked through the SDK above, and the incident queries by the store
# contract (test_store_workflow_operations), on each store.
@CLI_OUTPUT
async def test_the_cli_lists_incidents_and_retries_and_skips_steps(
    server: App, client: Client, services: Services
) -> None:
    payment = Payment()
    await start_services(services, payment)
    retried = await client.workflow.start("permit_ops", {"cost": 1})
    skipped = await client.workflow.start("permit_ops", {"cost": 2})
    await until_incident(client, retried.id, "charge")
    await until_incident(client, skipped.id, "charge")

    listed = await workflow(server, "incidents", "--definition", "permit_ops")
    as_json = await workflow(server, "incidents", "--process", skipped.id, "-o", "json")
    in_incident = await workflow(server, "ls", "--incidents", "with", "-o", "json")
    payment.broken = False
    retry = await workflow(server, "retry", retried.id, "--step", "charge", "--reason", "fixed")
    skip = await workflow(
        server, "skip", skipped.id, "--step", "charge", "--output", '{"receipt": "cash"}', "--reason", "paid"
    )
    no_reason = await workflow(server, "skip", skipped.id, "--step", "charge")
    done = [await finish(client, p.id) for p in (retried, skipped)]

    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split() == [
        "PROCESS",
        "DEFINITION",
        "STEP",
        "ERROR",
        "STATUS",
        "OPENED",
    ]
    assert {line.split()[0] for line in listed.stdout.splitlines()[1:]} == {retried.id, skipped.id}
    assert [(i["step_id"], i["error"]["code"]) for i in json.loads(as_json.stdout)] == [
        ("charge", "PAYMENT_DOWN")
    ]
    assert {p["id"] for p in json.loads(in_incident.stdout)} == {retried.id, skipped.id}
    assert (retry.returncode, retry.stdout.split()) == (0, [retried.id, "RUNNING"])
    assert skip.returncode == 0, skip.stderr
    assert no_reason.returncode != 0 and "--reason" in no_reason.stderr
    assert [p.state for p in done] == [ProcessState.COMPLETED] * 2
    assert dict(done[1].output)["receipt"] == "cash"


async def test_the_console_shows_incidents_and_repairs_them_with_the_pages_csrf_token(
    server: App, client: Client, services: Services
) -> None:
    assert server.http_url is not None
    payment = Payment()
    await start_services(services, payment)
    retried = await client.workflow.start("permit_ops", {"cost": 3}, business_key="R-1")
    skipped = await client.workflow.start("permit_ops", {"cost": 4}, business_key="S-1")
    for started in (retried, skipped):
        await until_incident(client, started.id, "charge")

    async with console_session(server.http_url) as browser:
        incidents = await browser.get("/incidents")
        forged = await browser.post(f"/processes/{skipped.id}/skip", {"step": "charge"}, csrf="")
        _, page = await browser.get(f"/processes/{retried.id}")
        payment.broken = False
        retry = await browser.post(
            f"/processes/{retried.id}/retry", {"step": "charge", "payload": "", "reason": "back up"}
        )
        await browser.get(f"/processes/{skipped.id}")
        skip = await browser.post(
            f"/processes/{skipped.id}/skip",
            {"step": "charge", "payload": '{"receipt": "desk"}', "reason": "paid"},
        )
        again = await browser.post(f"/processes/{skipped.id}/skip", {"step": "charge", "payload": "{}"})
    done = [await finish(client, p.id) for p in (retried, skipped)]
    history = await client.workflow.history(skipped.id)

    assert incidents[0] == 200 and retried.id in incidents[1] and skipped.id in incidents[1]
    assert forged[0] == 403
    assert 'id="retry-form-charge"' in page and 'id="skip-form-charge"' in page
    assert retry[0] == 200 and retry[1]["event"]["type"] == "step_retry_requested"
    assert skip[0] == 200 and skip[1]["event"]["type"] == "step_skip_requested"
    assert again[0] == 409  # no open incident any more
    assert [p.state for p in done] == [ProcessState.COMPLETED] * 2
    assert dict(done[1].output)["receipt"] == "desk"
    requested = next(e for e in history if e.type == HistoryEventType.STEP_SKIP_REQUESTED)
    assert requested.details["by"] == {"name": "", "role": "", "via": "console"}
