"""The mesh through gRPC Python's own xDS client: `xds:///EchoService` with a bootstrap from `mgmt mesh bootstrap`."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from control_plane.sdk import Client
from control_plane.server import App
from hms.mgmt.v1 import mesh_pb2, registry_pb2
from tests.mesh_support import Echo, echo_servers, write_bootstrap, xds_client

SERVICE = "EchoService"


async def _register(client: Client, echo: Echo, **options: object) -> None:
    await client.registry.register(SERVICE, echo.address, instance_id=echo.instance_id, ttl_s=60, **options)  # type: ignore[arg-type]


def _shares(spread: Counter[str]) -> dict[str, float]:
    total = sum(spread.values())
    return {who: n / total for who, n in spread.items()}


async def test_calls_spread_evenly_over_three_instances(server: App, client: Client, tmp_path: Path) -> None:
    async with echo_servers(3) as echoes:
        for echo in echoes:
            await _register(client, echo)
        path = write_bootstrap(tmp_path / "bootstrap.json", server.address, "spread")
        async with xds_client(path) as xds:
            spread = await xds.spread(3000)
    assert set(spread) == {"echo-0", "echo-1", "echo-2"}, spread
    for who, share in _shares(spread).items():
        assert abs(share - 1 / 3) <= 0.2 / 3, (who, spread)
