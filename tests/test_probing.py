"""Active health probing against a real grpc.health.v1 server, as an instance would run it.

The damping rules (3 results in a row, 60 s critical) are checked on a fake clock in
tests/core/test_probe_timing.py; this is the real checker and the real clock, wired together.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import duration_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from control_plane.server import App
from hms.mgmt.v1 import registry_pb2 as pb
from hms_mgmt import ChangeType, Client, HealthStatus, RegistryChange, WatchStream

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class CountingHealth(health.aio.HealthServicer):
    """The standard health servicer, plus a count of Check calls."""

    def __init__(self) -> None:
        super().__init__()
        self.checks = 0
        self.checked = asyncio.Condition()

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: object
    ) -> health_pb2.HealthCheckResponse:
        reply = await super().Check(request, context)  # type: ignore[arg-type]
        async with self.checked:
            self.checks += 1
            self.checked.notify_all()
        return reply

    async def wait_checks(self, count: int) -> None:
        """Wait until `count` more probes have been answered."""
        async with self.checked:
            target = self.checks + count
            await asyncio.wait_for(self.checked.wait_for(lambda: self.checks >= target), 5)


class Instance:
    """A service instance that serves only grpc.health.v1, with a status the test controls."""

    def __init__(self) -> None:
        self.server = grpc.aio.server()
        self.health = CountingHealth()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    async def set(self, status: int) -> None:
        await self.health.set("permits", status)


@pytest.fixture
async def instance() -> AsyncIterator[Instance]:
    inst = Instance()
    await inst.server.start()
    await inst.set(SERVING)
    yield inst
    await inst.server.stop(None)


def fast_probe(threshold: int = 2, deregister_after_s: int = 0) -> pb.HealthProbe:
    return pb.HealthProbe(
        service_name="permits",
        interval=duration_pb2.Duration(nanos=100_000_000),
        timeout=duration_pb2.Duration(nanos=50_000_000),
        threshold=threshold,
        deregister_critical_after=duration_pb2.Duration(seconds=deregister_after_s),
    )


async def next_change(stream: WatchStream, timeout_s: float = 5.0) -> RegistryChange:
    async with asyncio.timeout(timeout_s):
        async for response in stream:
            if response.changes:
                assert len(response.changes) == 1, response
                return response.changes[0]
    raise AssertionError("watch ended")


async def test_probed_instance_goes_critical_and_back(client: Client, instance: Instance) -> None:
    async with client.registry.watch("permits") as stream:
        await client.registry.register(
            "permits", f"127.0.0.1:{instance.port}", instance_id="p1", probe=fast_probe(threshold=2)
        )
        up = await next_change(stream)
        passing = await next_change(stream)
        assert up.type == ChangeType.UP
        assert (passing.type, passing.instance.health) == (
            ChangeType.HEALTH,
            HealthStatus.PASSING,
        )
        assert [i.instance_id for i in await client.registry.lookup("permits")] == ["p1"]

        await instance.set(NOT_SERVING)
        critical = await next_change(stream)
        assert (critical.type, critical.instance.health) == (
            ChangeType.HEALTH,
            HealthStatus.CRITICAL,
        )
        assert await client.registry.lookup("permits") == []
        assert len(await client.registry.lookup("permits", include_unhealthy=True)) == 1

        await instance.set(SERVING)
        back = await next_change(stream)
        assert (back.type, back.instance.health) == (ChangeType.HEALTH, HealthStatus.PASSING)
        assert [i.instance_id for i in await client.registry.lookup("permits")] == ["p1"]


async def test_probe_channel_closed_when_instance_leaves(
    server: App, client: Client, instance: Instance
) -> None:
    """The connection to a probed address is closed when its instance moves away, and when it leaves."""
    moved = Instance()
    await moved.server.start()
    await moved.set(SERVING)
    old, new = f"127.0.0.1:{instance.port}", f"127.0.0.1:{moved.port}"
    checker = server.health_checker
    try:
        await client.registry.register("permits", old, instance_id="p1", probe=fast_probe())
        await instance.health.wait_checks(1)
        assert checker.addresses == {old}

        await client.registry.register("permits", new, instance_id="p1", probe=fast_probe())  # moved
        assert old not in checker.addresses  # closed at once
        await moved.health.wait_checks(1)
        assert checker.addresses == {new}

        await client.registry.register("permits", new, instance_id="p1", probe=fast_probe(threshold=3))
        await moved.health.wait_checks(1)
        assert checker.addresses == {new}  # updated in place: the channel is kept

        await client.registry.deregister("permits", "p1")
        assert checker.addresses == set()
    finally:
        await moved.server.stop(None)
