"""The mesh on three replicas sharing PostgreSQL: an xDS client follows the registry through a replica's death."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from control_plane.servicers.xds.resources import CLUSTER
from hms.mgmt.v1 import mesh_pb2, mesh_pb2_grpc
from hms_mgmt import Client
from tests.conftest import ServerProcess
from tests.mesh_support import echo_servers, write_bootstrap, xds_client
from tests.test_replicas import Replicas, replicas  # noqa: F401 (the fixture)

# Replicas share one PostgreSQL database: in the PostgreSQL pass only (see tests/conftest.py).
pytestmark = pytest.mark.postgres_pass


def _holds(process: ServerProcess, node_id: str) -> bool:
    """Whether `node_id`'s ADS stream is on this replica, by what it logged (as CSDS would list it)."""
    connected = sum(f"xds client {node_id} connected" in line for line in process.log)
    return connected > sum(f"xds client {node_id} disconnected" in line for line in process.log)


async def _until_held(group: Replicas, node_id: str, besides: int | None = None) -> int:
    """The replica (by index) that `node_id` connects to, besides `besides`: waits on their log lines."""
    async with asyncio.timeout(20):
        while True:
            lines = [asyncio.ensure_future(p.logged.wait()) for p in group.processes]  # before looking
            held = [i for i, p in enumerate(group.processes) if i != besides and _holds(p, node_id)]
            if held:
                for waiter in lines:
                    waiter.cancel()
                return held[0]
            try:
                await asyncio.wait(lines, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in lines:
                    waiter.cancel()


@pytest.mark.timeout(90)
async def test_a_client_whose_xds_replica_is_killed_moves_to_another_and_keeps_calling(
    replicas: Replicas,  # noqa: F811
    tmp_path: Path,
) -> None:
    await replicas.add(3)
    for replica in replicas.processes:
        replica.follow()
    async with echo_servers(3) as echoes, Client(",".join(replicas.addresses)) as client:
        for echo in echoes:
            await client.registry.register(
                "EchoService", echo.address, instance_id=echo.instance_id, ttl_s=120
            )
        path = write_bootstrap(tmp_path / "bootstrap.json", ",".join(replicas.addresses), "failover")
        async with xds_client(path) as xds:
            serving = await _until_held(replicas, "failover")
            await xds.send(run_s=8.0)
            assert await xds.read() == {"started": True}
            await replicas.processes[serving].stop(signal.SIGKILL)
            now_serving = await _until_held(replicas, "failover", besides=serving)
            # The registry still reaches the client, now through another replica (changed on a third).
            third = ({0, 1, 2} - {serving, now_serving}).pop()
            async with Client(replicas.addresses[third]) as survivor:
                await survivor.registry.deregister("EchoService", "echo-2")
            gone_at = time.monotonic()
            results = (await xds.read(timeout_s=60))["results"]
    failures = Counter(who for _, who in results if who.startswith("!"))
    assert not failures, failures
    late = [t for t, who in results if who == "echo-2" and t > gone_at + 1.0]
    assert not late, f"echo-2 answered {len(late)} calls more than 1 s after it left"
    assert results[-1][0] > gone_at + 1.0, "the run outlasted the change"


@pytest.mark.timeout(60)
async def test_a_route_set_on_one_replica_reaches_the_xds_of_another(
    replicas: Replicas,  # noqa: F811
) -> None:
    await replicas.add(2)
    route = mesh_pb2.RoutePolicy(service="EchoService", max_concurrent_requests=7)
    async with (
        grpc.aio.insecure_channel(replicas.addresses[0]) as a,
        grpc.aio.insecure_channel(replicas.addresses[1]) as b,
    ):
        await mesh_pb2_grpc.MeshStub(a).SetRoute(mesh_pb2.SetRouteRequest(route=route))
        request = discovery_pb2.DiscoveryRequest(type_url=CLUSTER, resource_names=["EchoService"])
        request.node.id = "follower"
        # One stream: the other replica answers at once, and sends the cluster again once it applied the
        # change (a State of the World server sends what changed without being asked again, once the
        # client ACKed what it holds, as gRPC's clients do).
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(b).StreamAggregatedResources()
        try:
            await call.write(request)
            async with asyncio.timeout(10):
                while not (response := await call.read()).resources:
                    ack = discovery_pb2.DiscoveryRequest(
                        type_url=CLUSTER,
                        resource_names=["EchoService"],
                        version_info=response.version_info,
                        response_nonce=response.nonce,
                    )
                    await call.write(ack)
        finally:
            call.cancel()
    cluster = cluster_pb2.Cluster()
    response.resources[0].Unpack(cluster)
    assert cluster.circuit_breakers.thresholds[0].max_requests.value == 7
    assert response.version_info == "0.1"
