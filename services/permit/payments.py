"""PaymentService: charges the permit fee once per application, and refunds it as compensation."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hms_mgmt import TaskContext, TaskFailure
from services.permit.runtime import ServiceSpec, main

logger = logging.getLogger(__name__)

NAME = "PaymentService"
VERSION = "1.1.0"
FEE_RATE = 0.005
MINIMUM_FEE = 150.0


def permit_fee(cost: float) -> float:
    """The fee for a project of declared `cost`: 0.5 % of it, at least the minimum, in cents."""
    if cost < 0:
        raise ValueError(f"cost must not be negative, got {cost}")
    return round(max(cost * FEE_RATE, MINIMUM_FEE), 2)


@dataclass(frozen=True, slots=True)
class Charge:
    """One fee charged for one process."""

    receipt: str
    process_id: str
    amount: float


class PaymentService:
    """Keeps its charges and refunds in memory, keyed so a repeated request charges nothing new."""

    def __init__(self) -> None:
        self.charges: dict[str, Charge] = {}  # by process id
        self.refunds: dict[str, Charge] = {}  # by receipt

    def spec(self) -> ServiceSpec:
        """Name, version, tags and handlers to serve."""
        handlers = {"chargeFee": self.charge_fee, "refundFee": self.refund_fee}
        return ServiceSpec(NAME, VERSION, ("permit", "payments"), handlers)

    def charge(self, process_id: str, cost: float) -> Charge:
        """Charge the fee of `process_id` once; a repeat returns the first charge."""
        existing = self.charges.get(process_id)
        if existing is not None:
            logger.info("process %s already charged (%s); nothing new charged", process_id, existing.receipt)
            return existing
        charge = Charge(f"rcpt-{len(self.charges) + 1:04d}-{process_id[:8]}", process_id, permit_fee(cost))
        self.charges[process_id] = charge
        return charge

    def refund(self, receipt: str) -> Charge:
        """Refund a receipt once; a repeat returns the first refund."""
        charge = next((c for c in self.charges.values() if c.receipt == receipt), None)
        if charge is None:
            raise TaskFailure("UNKNOWN_RECEIPT", f"no charge with receipt {receipt!r}", non_retryable=True)
        return self.refunds.setdefault(receipt, charge)

    async def charge_fee(self, task: TaskContext) -> Mapping[str, Any]:
        """Charge the fee computed from the declared cost."""
        try:
            charge = self.charge(task.process_id, float(task.input["cost"]))
        except (KeyError, ValueError) as exc:
            raise TaskFailure("INVALID_AMOUNT", str(exc), non_retryable=True) from None
        return {"receipt": charge.receipt, "fee": charge.amount}

    async def refund_fee(self, task: TaskContext) -> Mapping[str, Any]:
        """Refund the charge of a receipt (compensation of chargeFee)."""
        refund = self.refund(str(task.input.get("receipt", "")))
        return {"refunded": refund.receipt, "amount": refund.amount}


if __name__ == "__main__":
    sys.exit(main("payments", lambda: PaymentService().spec()))
