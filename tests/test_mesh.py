"""The mesh through gRPC Python's own xDS client: `xds:///EchoService` with a bootstrap from `mgmt mesh bootstrap`."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from control_plane.server import App
from control_plane.servicers.xds.resources import ENDPOINT, ROUTE
from hms.mgmt.v1 import mesh_pb2, mesh_pb2_grpc, registry_pb2
from hms_mgmt import Client, HealthStatus, WatchStream
from tests.mesh_support import (
    Echo,
    echo_servers,
    until_acked,
    until_applied,
    until_in_flight,
    write_bootstrap,
    xds_client,
)

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


def _version(app: App) -> str:
    return f"{app.registry.feed.revision}.{app.mesh.revision}"


async def test_a_deregistered_instance_gets_no_call_after_one_second_and_no_call_fails(
    server: App, client: Client, tmp_path: Path
) -> None:
    async with echo_servers(3) as echoes:
        for echo in echoes:
            await _register(client, echo)
        path = write_bootstrap(tmp_path / "bootstrap.json", server.address, "deregister")
        async with xds_client(path) as xds:
            await xds.send(run_s=3.0)
            assert await xds.read() == {"started": True}
            await client.registry.deregister(SERVICE, "echo-2")
            gone_at = time.monotonic()
            results = (await xds.read())["results"]
    failures = [who for _, who in results if who.startswith("!")]
    assert not failures, Counter(failures)
    late = [t - gone_at for t, who in results if who == "echo-2" and t > gone_at + 1.0]
    assert not late, f"echo-2 answered {len(late)} calls more than 1 s after it left"
    assert {"echo-0", "echo-1"} <= {who for _, who in results}


async def test_a_critical_instance_gets_no_calls(server: App, client: Client, tmp_path: Path) -> None:
    probe = registry_pb2.HealthProbe(threshold=1)
    probe.interval.FromMilliseconds(100)
    probe.timeout.FromMilliseconds(100)
    async with echo_servers(3) as echoes, client.registry.watch(SERVICE) as changes:
        health = await _health_of(changes, {})
        for echo in echoes:
            await _register(client, echo, probe=probe)
        health = await _health_of(changes, health, **{e.instance_id: HealthStatus.PASSING for e in echoes})
        path = write_bootstrap(tmp_path / "bootstrap.json", server.address, "critical")
        async with xds_client(path) as xds:
            assert set(await xds.spread(30)) == {"echo-0", "echo-1", "echo-2"}
            await echoes[2].set_serving(False)
            await _health_of(changes, health, **{"echo-2": HealthStatus.CRITICAL})
            await until_acked(server, "critical", ENDPOINT, _version(server))
            await until_applied(xds, {"echo-0", "echo-1"})
            spread = await xds.spread(600)
    assert set(spread) == {"echo-0", "echo-1"}, spread


async def _health_of(
    changes: WatchStream, health: dict[str, HealthStatus], **wanted: HealthStatus
) -> dict[str, HealthStatus]:
    """Read the registry's changes until the named instances have the health wanted; every health seen."""
    health = dict(health)
    async with asyncio.timeout(20):
        while any(health.get(name) is not status for name, status in wanted.items()):
            for change in (await anext(changes)).changes:
                health[change.instance.instance_id] = change.instance.health
    return health


async def test_a_version_split_of_90_10_is_observed_within_3_points(
    server: App, client: Client, tmp_path: Path
) -> None:
    async with echo_servers(3) as echoes:
        for echo, version in zip(echoes, ("1.0", "1.4", "2.0"), strict=True):
            await _register(client, echo, version=version)
        await _set_route(
            client,
            mesh_pb2.RoutePolicy(
                service=SERVICE,
                splits=[
                    mesh_pb2.VersionSplit(version_range=">=1,<2", weight=90),
                    mesh_pb2.VersionSplit(version_range=">=2", weight=10),
                ],
            ),
        )
        path = write_bootstrap(tmp_path / "bootstrap.json", server.address, "split")
        async with xds_client(path) as xds:
            spread = await xds.spread(5000, concurrency=32)
    assert not [who for who in spread if who.startswith("!")], spread
    canary = _shares(spread)["echo-2"]
    assert abs(canary - 0.10) <= 0.03, spread


async def test_a_retry_policy_turns_a_failing_instances_unavailable_into_successes(
    server: App, client: Client, tmp_path: Path
) -> None:
    async with echo_servers(3) as echoes:
        for echo in echoes:
            await _register(client, echo)
        echoes[1].failing = True
        path = write_bootstrap(tmp_path / "bootstrap.json", server.address, "retry")
        async with xds_client(path) as xds:
            before = await xds.spread(300)
            assert before["!UNAVAILABLE"] > 50, before  # the failing instance fails without retries
            retry = mesh_pb2.RetryPolicy(retry_on=["unavailable"], num_retries=3)
            retry.base_interval.FromMilliseconds(10)
            await _set_route(client, mesh_pb2.RoutePolicy(service=SERVICE, retry=retry))
            await until_acked(server, "retry", ROUTE, _version(server))
            await until_applied(xds, {"echo-0", "echo-2"})
            after = await xds.spread(600)
    assert set(after) == {"echo-0", "echo-2"}, after


async def test_the_concurrency_cap_refuses_the_excess(server: App, client: Client, tmp_path: Path) -> None:
    async with echo_servers(3) as echoes:
        for echo in echoes:
            await _register(client, echo)
        await _set_route(client, mesh_pb2.RoutePolicy(service=SERVICE, max_concurrent_requests=2))
        path = write_bootstrap(tmp_path / "bootstrap.json", server.address, "cap")
        async with xds_client(path) as xds:
            await xds.send(calls=5, each=True, method="Slow")
            refused = [(await xds.read())["result"][1] for _ in range(3)]
            assert refused == ["!UNAVAILABLE"] * 3
            await until_in_flight(echoes, 2)
            for echo in echoes:
                echo.release.set()
            served = [(await xds.read())["result"][1] for _ in range(2)]
            assert await xds.read() == {"done": True}
    assert all(who.startswith("echo-") for who in served), served


async def _set_route(client: Client, route: mesh_pb2.RoutePolicy) -> mesh_pb2.RoutePolicy:
    stub = mesh_pb2_grpc.MeshStub(client.channel)
    answer = await stub.SetRoute(mesh_pb2.SetRouteRequest(route=route))
    return answer.route


async def test_a_nacked_policy_shows_in_csds_and_mesh_status_and_other_services_are_unaffected(
    server: App, client: Client, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with echo_servers(2) as echoes:
        await _register(client, echoes[0])
        await client.registry.register("OtherService", echoes[1].address, instance_id="echo-1", ttl_s=60)
        # gRPC Python's xDS client supports round robin and ring hash, not least request: it NACKs it.
        await _set_route(
            client,
            mesh_pb2.RoutePolicy(service=SERVICE, load_balancing=mesh_pb2.LOAD_BALANCING_LEAST_REQUEST),
        )
        refusing = write_bootstrap(tmp_path / "refusing.json", server.address, "refusing")
        other = write_bootstrap(tmp_path / "other.json", server.address, "other")
        nack_logged = _Logged("xds client refusing NACKed")
        logging.getLogger().addHandler(nack_logged)
        try:
            async with xds_client(refusing, ready=False), xds_client(other, "xds:///OtherService") as fine:
                # Logged by the ADS servicer as it records the NACK (what CSDS and mesh status show).
                async with asyncio.timeout(20):
                    await nack_logged.seen.wait()
                assert await fine.spread(30) == Counter({"echo-1": 30})
                status = await _mgmt("mesh", "status", "--server", server.address)
                csds = await _mgmt("mesh", "status", "--server", server.address, "-o", "json")
        finally:
            logging.getLogger().removeHandler(nack_logged)
    rows = [line.split(None, 5) for line in status.splitlines()[1:]]
    nacked = [row for row in rows if row[0] == "refusing" and row[4] == "NACKED"]
    assert nacked and nacked[0][1] == "CDS" and nacked[0][2] == SERVICE, status
    assert nacked[0][5].strip(), "the client's error is shown"
    assert all(row[4] == "ACKED" for row in rows if row[0] == "other"), status
    answer = json.loads(csds)
    refused = [
        c
        for node in answer["config"]
        if node["node"]["id"] == "refusing"
        for c in node["generic_xds_configs"]
        if c.get("client_status") == "NACKED"
    ]
    assert refused and refused[0]["error_state"]["details"], answer
    logged = [r.getMessage() for r in caplog.records if "NACKed" in r.getMessage()]
    assert logged and logged[0].startswith("xds client refusing NACKed Cluster version "), logged


class _Logged(logging.Handler):
    """Sets `seen` when a record whose message starts with `prefix` is logged in this event loop."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(self.prefix):
            self.seen.set()


async def _mgmt(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "control_plane",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    return out.decode()
