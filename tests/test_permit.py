"""The building-permit services and their demo: every application ends as promised."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from control_plane.core.workflow.parser import parse_definition
from hms.mgmt.v1 import workflow_pb2 as pb
from hms_mgmt import TaskContext, TaskFailure
from services.permit.demo import DEFINITION_FILE, node_installed, run_demo
from services.permit.documents import DocumentService, required_documents
from services.permit.inspections import InspectionService, inspector_for
from services.permit.payments import MINIMUM_FEE, PaymentService, permit_fee
from services.permit.runtime import Faults, failure_rate_from_env


def task(
    task_type: str, payload: dict[str, Any], *, process_id: str = "p-1", attempt: int = 1
) -> TaskContext:
    return TaskContext(
        token=f"t-{process_id}-{attempt}",
        process_id=process_id,
        step_id=task_type,
        task_type=task_type,
        attempt=attempt,
        business_key="",
        compensation=False,
        input=payload,
    )


@pytest.mark.parametrize("notification", ["node", "python"])
async def test_the_demo_ends_approved_rejected_and_refunded(notification: str) -> None:
    if notification == "node" and not (shutil.which("node") and node_installed()):
        pytest.skip("node or services/notification/node_modules is missing")
    lines: list[str] = []

    result = await run_demo(lines.append, node=notification == "node")

    states = {label: process.state for label, process in result.processes.items()}
    assert states == {
        "approved": pb.PROCESS_STATE_COMPLETED,
        "rejected": pb.PROCESS_STATE_FAILED,
        "refunded": pb.PROCESS_STATE_COMPENSATED,
    }
    assert result.processes["rejected"].error.code == "INVALID_DOCUMENTS"
    assert result.processes["refunded"].error.code == "NO_SLOT_AVAILABLE"
    assert list(result.refunded.values()) == [permit_fee(80_000)]
    assert result.cancelled_slots == []  # the slot was never booked, so there is nothing to cancel
    assert "    class s_schedule failed" in result.graph.splitlines()
    assert "    class s_charge compensated" in result.graph.splitlines()
    text = "\n".join(lines)
    assert "signal_received" in text and "compensation_completed   charge" in text
    assert result.notification == notification
    assert lines[-1] == "control plane and services stopped cleanly"


def test_the_fee_is_half_a_percent_of_the_cost_with_a_minimum() -> None:
    assert permit_fee(750_000) == 3750.0
    assert permit_fee(10_000) == MINIMUM_FEE
    with pytest.raises(ValueError):
        permit_fee(-1)


async def test_a_second_charge_of_a_process_charges_nothing_new() -> None:
    payments = PaymentService()

    first = await payments.charge_fee(task("chargeFee", {"cost": 200_000.0}))
    again = await payments.charge_fee(task("chargeFee", {"cost": 200_000.0}, attempt=2))
    other = await payments.charge_fee(task("chargeFee", {"cost": 200_000.0}, process_id="p-2"))

    assert again == first == {"receipt": first["receipt"], "fee": 1000.0}
    assert other["receipt"] != first["receipt"]
    assert len(payments.charges) == 2
    refund = await payments.refund_fee(task("refundFee", {"receipt": first["receipt"]}))
    assert refund == {"refunded": first["receipt"], "amount": 1000.0}
    assert await payments.refund_fee(task("refundFee", {"receipt": first["receipt"]})) == refund
    assert list(payments.refunds) == [first["receipt"]]


async def test_missing_documents_fail_for_good_naming_them() -> None:
    docs = DocumentService()

    with pytest.raises(TaskFailure) as failure:
        await docs.validate_docs(task("validateDocs", {"cost": 250_000.0, "documents": ["site_plan"]}))

    assert failure.value.code == "INVALID_DOCUMENTS" and failure.value.non_retryable
    assert failure.value.message == "missing: ownership_proof, structural_calc"
    assert required_documents(50_000) == ["site_plan", "ownership_proof"]


async def test_a_blocked_day_cannot_be_booked_and_a_booking_is_kept_per_process() -> None:
    inspections = InspectionService()
    assert inspector_for("BP-1") == inspector_for("BP-1")

    with pytest.raises(TaskFailure) as failure:
        await inspections.schedule_inspection(task("scheduleInspection", {"requested_date": "2026-12-25"}))
    booked = await inspections.schedule_inspection(
        task("scheduleInspection", {"requested_date": "2026-12-02"})
    )
    again = await inspections.schedule_inspection(
        task("scheduleInspection", {"requested_date": "2026-12-02"})
    )
    cancelled = await inspections.cancel_slot(task("cancelSlot", {"slot_id": booked["slot_id"]}))

    assert failure.value.code == "NO_SLOT_AVAILABLE" and failure.value.non_retryable
    assert again == booked
    assert cancelled == {"cancelled": booked["slot_id"]} and list(inspections.cancelled) == [
        booked["slot_id"]
    ]


def test_faults_fail_attempts_retryably_at_the_configured_rate() -> None:
    assert failure_rate_from_env({}) == 0.0
    assert failure_rate_from_env({"HMS_FAILURE_RATE": "0.2"}) == 0.2
    with pytest.raises(ValueError):
        failure_rate_from_env({"HMS_FAILURE_RATE": "1.5"})
    with pytest.raises(TaskFailure) as failure:
        Faults(0.999).check(task("chargeFee", {}))
    assert failure.value.code == "TRANSIENT" and not failure.value.non_retryable
    Faults(0.0).check(task("chargeFee", {}))


def test_the_definition_is_valid() -> None:
    definition = parse_definition(DEFINITION_FILE.read_text())

    assert definition.name == "building_permit"
