"""The mesh through gRPC's Node xDS client (@grpc/grpc-js with @grpc/grpc-js-xds, locked in tests/mesh_node)."""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

from control_plane.server import App
from hms_mgmt import Client
from tests.mesh_support import ROOT, echo_servers, write_bootstrap, xds_client

NODE_DIR = ROOT / "tests" / "mesh_node"
REQUIRED = os.environ.get("MGMT_REQUIRE_NODE") == "1"


def _node_program() -> tuple[str, ...]:
    node = shutil.which("node")
    installed = (NODE_DIR / "node_modules" / "@grpc" / "grpc-js-xds").is_dir()
    if node is None or not installed:
        reason = "node not found" if node is None else f"{NODE_DIR}/node_modules missing: run make install"
        if REQUIRED:
            pytest.fail(f"{reason} (MGMT_REQUIRE_NODE=1)")
        pytest.skip(reason)
    return (node, str(NODE_DIR / "client.js"))


async def test_node_spreads_calls_and_follows_a_deregistration(
    server: App, client: Client, tmp_path: Path
) -> None:
    program = _node_program()
    async with echo_servers(3) as echoes:
        for echo in echoes:
            await client.registry.register(
                "EchoService", echo.address, instance_id=echo.instance_id, ttl_s=60
            )
        path = write_bootstrap(tmp_path / "bootstrap.json", server.address, "node")
        async with xds_client(path, program=program) as xds:
            spread = await xds.spread(3000, concurrency=32)
            await xds.send(run_s=3.0)
            assert await xds.read() == {"started": True}
            await client.registry.deregister("EchoService", "echo-2")
            gone_at = time.monotonic()
            results = (await xds.read())["results"]
    assert set(spread) == {"echo-0", "echo-1", "echo-2"}, spread
    for who, n in spread.items():
        assert abs(n / 3000 - 1 / 3) <= 0.2 / 3, (who, spread)
    failures = Counter(who for _, who in results if who.startswith("!"))
    assert not failures, failures
    late = [t for t, who in results if who == "echo-2" and t > gone_at + 1.0]
    assert not late, f"echo-2 answered {len(late)} calls more than 1 s after it left"
