"""The building-permit demo: a control plane, the four services, three applications down every path."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from control_plane.graph import mermaid, step_class
from control_plane.observability import tracing
from control_plane.server import App, running
from control_plane.settings import Settings
from hms.mgmt.v1 import workflow_pb2 as pb
from hms_mgmt import Client, HistoryEvent, HistoryEventType
from services.permit import notifications
from services.permit.documents import DocumentService
from services.permit.inspections import InspectionService
from services.permit.notifications import NotificationService
from services.permit.payments import PaymentService
from services.permit.runtime import Faults, failure_rate_from_env, serving, wait_passing

logger = logging.getLogger(__name__)

SERVICES_DIR = Path(__file__).resolve().parent.parent
DEFINITION_FILE = SERVICES_DIR / "building_permit.yaml"
NODE_NOTIFICATION = SERVICES_DIR / "notification" / "index.js"
DEFINITION = "building_permit"
PROCESS_TIMEOUT_S = 30.0
NODE_START_TIMEOUT_S = 20.0
NODE_STOP_TIMEOUT_S = 5.0

Say = Callable[[str], None]
# Entered once the services are up, left once every application has ended (the services still up).
Observe = Callable[[App], AbstractAsyncContextManager[object]]

# How each step state is drawn in the Mermaid graph.


@dataclass(frozen=True, slots=True)
class Application:
    """One application the demo submits, the inspector's result it gets, and how it must end."""

    label: str
    input: Mapping[str, Any]
    expected: pb.ProcessState.ValueType
    inspection: Mapping[str, Any] | None = None
    expected_error: str = ""


APPLICATIONS = (
    Application(
        "approved",
        {
            "application_id": "BP-2026-0417",
            "applicant": "Marta Keller",
            "cost": 750_000,
            "documents": ["site_plan", "ownership_proof", "structural_calc"],
            "requested_date": "2026-12-02",
        },
        pb.PROCESS_STATE_COMPLETED,
        inspection={"approved": True, "notes": "Foundations and framing match the plans."},
    ),
    Application(
        "rejected",
        {
            "application_id": "BP-2026-0418",
            "applicant": "Jonas Weber",
            "cost": 240_000,
            "documents": ["site_plan", "ownership_proof"],
            "requested_date": "2026-12-03",
        },
        pb.PROCESS_STATE_FAILED,
        expected_error="INVALID_DOCUMENTS",
    ),
    Application(
        "refunded",
        {
            "application_id": "BP-2026-0419",
            "applicant": "Ana Ruiz",
            "cost": 80_000,
            "documents": ["site_plan", "ownership_proof"],
            "requested_date": "2026-12-25",
        },
        pb.PROCESS_STATE_COMPENSATED,
        expected_error="NO_SLOT_AVAILABLE",
    ),
)


@dataclass(slots=True)
class DemoResult:
    """What the demo ended with: each application's final process, the refunds, the graph drawn."""

    processes: dict[str, pb.Process] = field(default_factory=dict)
    refunded: dict[str, float] = field(default_factory=dict)  # receipt -> amount
    cancelled_slots: list[str] = field(default_factory=list)
    notification: str = ""  # "node" or "python"
    notices: list[str] = field(default_factory=list)
    graph: str = ""


async def run_demo(
    say: Say,
    *,
    failure_rate: float = 0.0,
    node: bool = True,
    http_listen: str | None = None,
    observe: Observe | None = None,
    faults: Faults | None = None,
) -> DemoResult:
    """Run the permit scenario end to end and stop cleanly; raises if any application ends unexpectedly.

    Args:
        say: Called with each line of output.
        failure_rate: Share of task attempts that fail with a retryable TRANSIENT error.
        node: Run the Node.js NotificationService when it is installed (else the Python one).
        http_listen: Where the control plane serves /metrics (none when None).
        observe: Watches the control plane while the applications run (a Prometheus server, in a test).
        faults: The failures to inject into the Python services' attempts (instead of `failure_rate`).
    """
    result = DemoResult()
    faults = faults or Faults(failure_rate)
    with tempfile.TemporaryDirectory(prefix="permit-demo-") as data_dir:
        settings = Settings(listen="127.0.0.1:0", data_dir=Path(data_dir), http_listen=http_listen)
        async with running(settings) as app, Client(app.address) as client, AsyncExitStack() as stack:
            say(f"control plane listening on {app.address} (data in {data_dir})")
            if failure_rate:
                say(f"injecting transient failures into {failure_rate:.0%} of task attempts")
            payment, inspection = PaymentService(), InspectionService()
            for spec in (DocumentService().spec(), payment.spec(), inspection.spec()):
                service = await stack.enter_async_context(serving(client, spec, faults))
                await wait_passing(client, service.name, service.instance_id)
                say(f"  {service.name} {spec.version} on {service.address}: registered, health PASSING")
            result.notification = await stack.enter_async_context(
                _notification_service(client, app.address, faults, result.notices, say, node=node)
            )

            reply = await client.workflow.apply(await asyncio.to_thread(DEFINITION_FILE.read_text))
            say(f"definition {reply.name} version {reply.version} applied")
            async with observe(app) if observe is not None else nullcontext():
                for application in APPLICATIONS:
                    result.processes[application.label] = await _submit(client, application, say)

            say("")
            say("final states:")
            for application in APPLICATIONS:
                say(_final_line(application, result.processes[application.label]))
            result.refunded = {r: c.amount for r, c in payment.refunds.items()}
            result.cancelled_slots = list(inspection.cancelled)
            for receipt, amount in result.refunded.items():
                say(f"  PaymentService refunded {receipt}: {amount:.2f}")
            for notice in result.notices:
                say(f"  NotificationService ({result.notification}) sent {notice}")

            compensated = result.processes["refunded"]
            definition = await client.workflow.definition(DEFINITION, compensated.definition_version)
            states = {step.step_id: step_class(pb.StepState.Name(step.state)) for step in compensated.steps}
            result.graph = mermaid(definition.spec, states)
            say("")
            say(f"Mermaid graph of the refunded application ({compensated.id}):")
            for line in result.graph.splitlines():
                say(line)
            _check(result)
        say("control plane and services stopped cleanly")
    return result


async def _submit(client: Client, application: Application, say: Say) -> pb.Process:
    """Start one application and follow it to its end, sending the inspector's result when it waits."""
    say("")
    say(f"application {application.input['application_id']} ({application.label}):")
    process = await client.workflow.start(
        DEFINITION, application.input, business_key=str(application.input["application_id"])
    )
    final: pb.Process | None = None
    async with asyncio.timeout(PROCESS_TIMEOUT_S):
        async for frame in client.workflow.watch(process.id):
            for event in frame.events:
                say(_event_line(event))
                waiting = event.type == HistoryEventType.STEP_STARTED and event.step_id == "inspection"
                if waiting and application.inspection is not None:
                    say(f"    -> inspector reports {dict(application.inspection)}")
                    await client.workflow.signal(process.id, "inspection_result", application.inspection)
            if frame.process is not None:
                final = frame.process.proto
    return final if final is not None else (await client.workflow.status(process.id)).proto


def _event_line(event: HistoryEvent) -> str:
    details = event.details
    notes: list[str] = []
    if details.get("task_type"):
        notes.append(f"{details.get('service', '?')}/{details['task_type']}")
    error = details.get("error")
    if isinstance(error, Mapping) and error.get("code"):
        notes.append(f"{error['code']}: {error.get('message', '')}".rstrip(": "))
    if "will_retry" in details:
        notes.append("will retry" if details["will_retry"] else "no retry")
    if "branch" in details:
        branch = details["branch"]
        notes.append("no branch taken" if branch is None else f"branch {branch:g}")
    if details.get("name"):
        notes.append(f"signal {details['name']}")
    name = (
        pb.HistoryEventType.Name(pb.HistoryEventType.ValueType(event.type))
        .removeprefix("HISTORY_EVENT_TYPE_")
        .lower()
    )
    attempt = f"#{event.attempt}" if event.attempt else ""
    parts = [f"    {name:24}", event.step_id, attempt, f"({', '.join(notes)})" if notes else ""]
    return " ".join(part for part in parts if part).rstrip()


def _final_line(application: Application, process: pb.Process) -> str:
    state = pb.ProcessState.Name(process.state).removeprefix("PROCESS_STATE_")
    line = f"  {application.input['application_id']} ({application.label}): {state}"
    if process.HasField("error"):
        line += f" - {process.error.code}: {process.error.message} at {process.error.step_id}"
    if process.HasField("output"):
        line += f" - output {json_format.MessageToDict(process.output)}"
    return line


def _check(result: DemoResult) -> None:
    """Raise unless every application ended as promised."""
    problems: list[str] = []
    for application in APPLICATIONS:
        process = result.processes[application.label]
        if process.state != application.expected:
            got = pb.ProcessState.Name(process.state)
            problems.append(
                f"{application.label}: expected {pb.ProcessState.Name(application.expected)}, got {got}"
            )
        if application.expected_error and process.error.code != application.expected_error:
            problems.append(
                f"{application.label}: expected error {application.expected_error}, got {process.error}"
            )
    refunded = result.processes["refunded"]
    charge = next((s for s in refunded.steps if s.step_id == "charge"), None)
    if charge is None or charge.state != pb.STEP_STATE_COMPENSATED or not result.refunded:
        problems.append("refunded: the fee was not refunded")
    if problems:
        raise RuntimeError("the demo did not end as expected: " + "; ".join(problems))


def node_installed() -> bool:
    """Whether the Node.js NotificationService and its dependencies are in place."""
    return NODE_NOTIFICATION.exists() and (NODE_NOTIFICATION.parent / "node_modules").is_dir()


@contextlib.asynccontextmanager
async def _notification_service(
    client: Client, address: str, faults: Faults, notices: list[str], say: Say, *, node: bool
) -> AsyncIterator[str]:
    """Run the Node.js NotificationService when asked and installed, else the Python one; yields which."""
    node_binary = shutil.which("node") if node else None
    if node_binary and node_installed():
        instance_id = f"notification-{uuid.uuid4().hex[:8]}"
        async with _node_process(node_binary, address, instance_id, notices):
            await wait_passing(client, notifications.NAME, instance_id, timeout_s=NODE_START_TIMEOUT_S)
            where = NODE_NOTIFICATION.relative_to(SERVICES_DIR.parent)
            say(f"  {notifications.NAME} (Node.js, {where}) as {instance_id}: registered, health PASSING")
            yield "node"
        return
    service = NotificationService(lambda notice: notices.append(f"to {notice.applicant}: {notice.text}"))
    async with serving(client, service.spec(), faults) as running_service:
        await wait_passing(client, running_service.name, running_service.instance_id)
        say(
            f"  {running_service.name} {notifications.VERSION} (Python) on {running_service.address}:"
            " registered, health PASSING"
        )
        yield "python"


@contextlib.asynccontextmanager
async def _node_process(node: str, address: str, instance_id: str, notices: list[str]) -> AsyncIterator[None]:
    """The Node.js NotificationService as a child process; stopped with SIGTERM (then SIGKILL)."""
    child = await asyncio.create_subprocess_exec(
        node,
        str(NODE_NOTIFICATION),
        "--server",
        address,
        "--instance-id",
        instance_id,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None and child.stderr is not None
    relays = [
        asyncio.create_task(_read_notices(child.stdout, notices)),
        asyncio.create_task(_log_lines(child.stderr)),
    ]
    try:
        yield
    finally:
        if child.returncode is None:
            child.terminate()
            try:
                await asyncio.wait_for(child.wait(), NODE_STOP_TIMEOUT_S)
            except TimeoutError:
                logger.warning("NotificationService (pid %d) ignored SIGTERM; killing it", child.pid)
                child.kill()
                await child.wait()
        await asyncio.gather(*relays)


async def _read_notices(stream: asyncio.StreamReader, notices: list[str]) -> None:
    """Collect the `notice {json}` lines the Node service prints for each notice it sends."""
    async for raw in stream:
        line = raw.decode(errors="replace").rstrip()
        if line.startswith("notice "):
            notice = json.loads(line.removeprefix("notice "))
            notices.append(f"to {notice.get('to', '?')}: building permit {notice.get('decision', '?')}")
        else:
            logger.info("notification: %s", line)


async def _log_lines(stream: asyncio.StreamReader) -> None:
    async for line in stream:
        logger.info("%s", line.decode(errors="replace").rstrip())


def main() -> None:
    """`python -m services.permit.demo`: run the demo, exit 1 if it did not end as expected."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    rate = failure_rate_from_env(os.environ)
    # Off unless the OTEL_* variables ask for traces; then the control plane and the Python services
    # of this process, and the Node service it starts, all send spans (docs/observability.md).
    tracing.configure("permit-demo")
    try:
        asyncio.run(run_demo(lambda line: print(line, flush=True), failure_rate=rate))
    except RuntimeError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        sys.exit(1)
    finally:
        tracing.shutdown()


if __name__ == "__main__":
    main()
