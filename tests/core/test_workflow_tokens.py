"""Task tokens: checked by their MAC once, then known, and never a token this control plane did not sign."""

from __future__ import annotations

import pytest

from control_plane.core.workflow import workflows as workflows_module
from control_plane.errors import InvalidArgument
from tests.core.conftest import Cores

KEY = "0b7c3f3e-1111-2222-3333-444455556666/s1/1/t"


async def test_a_token_known_from_handing_it_out_still_refuses_its_forgeries(cores: Cores) -> None:
    workflows = cores.workflows
    token = workflows.wire_token(KEY, "PaymentService")

    assert workflows.token_service(token) == "PaymentService"
    text, _, mac = token.rpartition(".")
    for forged in (
        f"{text}.{mac[:-1]}A" if not mac.endswith("A") else f"{text}.{mac[:-1]}B",
        token.replace("PaymentService", "OtherService"),
        f"{token}x",
    ):
        with pytest.raises(InvalidArgument):
            workflows.token_service(forged)


async def test_tokens_remembered_are_bounded_and_older_ones_are_checked_by_their_mac(
    cores: Cores, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workflows_module, "_VERIFIED_TOKENS", 4)
    workflows = cores.workflows
    tokens = [workflows.wire_token(f"{KEY[:-5]}{n}/1/t", "PaymentService") for n in range(10)]

    assert len(workflows._verified) == 4  # the oldest were forgotten
    assert all(workflows.token_service(token) == "PaymentService" for token in tokens)  # by the MAC
    assert len(workflows._verified) == 4
