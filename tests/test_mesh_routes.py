"""The Mesh contract: route policies set, read, listed and removed; bad ones refused; kept across restarts;
and the xDS endpoints under the same token rules as the rest of the contract."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import error_details_pb2, status_pb2

from control_plane.core.registry import Registration
from control_plane.server import App, running
from control_plane.servicers.xds.resources import CLUSTER, LISTENER
from control_plane.settings import Settings
from hms.mgmt.v1 import mesh_pb2, mesh_pb2_grpc
from hms_mgmt import Client
from tests.conftest import CLI_OUTPUT
from tests.test_security import ADMIN_TOKEN, CLIENT_TOKEN, TOKENS_YAML, write


def _canary() -> mesh_pb2.RoutePolicy:
    route = mesh_pb2.RoutePolicy(
        service="Payments",
        splits=[
            mesh_pb2.VersionSplit(version_range=">=1,<2", weight=90),
            mesh_pb2.VersionSplit(version_range=">=2", weight=10),
        ],
        max_concurrent_requests=100,
        retry=mesh_pb2.RetryPolicy(retry_on=["unavailable"], num_retries=2),
    )
    route.timeout.FromMilliseconds(1500)
    return route


def _violations(error: grpc.aio.AioRpcError) -> list[str]:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                request = error_details_pb2.BadRequest()
                if detail.Unpack(request):
                    return [v.field for v in request.field_violations]
    return []


async def test_a_route_is_set_read_listed_and_removed(client: Client) -> None:
    mesh = mesh_pb2_grpc.MeshStub(client.channel)
    stored = (await mesh.SetRoute(mesh_pb2.SetRouteRequest(route=_canary()))).route
    got = (await mesh.GetRoute(mesh_pb2.GetRouteRequest(service="Payments"))).route
    listed = await mesh.ListRoutes(mesh_pb2.ListRoutesRequest())
    removed = await mesh.DeleteRoute(mesh_pb2.DeleteRouteRequest(service="Payments"))
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await mesh.GetRoute(mesh_pb2.GetRouteRequest(service="Payments"))

    assert stored.revision == 1 and got == stored
    assert [s.weight for s in got.splits] == [90, 10] and got.timeout.ToMilliseconds() == 1500
    assert got.retry.base_interval.ToMilliseconds() == 25 and got.retry.max_interval.ToMilliseconds() == 250
    assert list(listed.routes) == [stored] and listed.revision == 1
    assert removed.revision == 2
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_bad_route_is_refused_naming_each_field(client: Client) -> None:
    mesh = mesh_pb2_grpc.MeshStub(client.channel)
    bad = mesh_pb2.RoutePolicy(
        service="Payments",
        splits=[mesh_pb2.VersionSplit(version_range=">=x", weight=0)],
        retry=mesh_pb2.RetryPolicy(retry_on=["teapot"], num_retries=9),
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await mesh.SetRoute(mesh_pb2.SetRouteRequest(route=bad))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _violations(refused.value) == [
        "route.splits[0].version_range",
        "route.splits[0].weight",
        "route.retry.retry_on[0]",
        "route.retry.num_retries",
    ]
    listed = await mesh.ListRoutes(mesh_pb2.ListRoutesRequest())
    assert not listed.routes and listed.revision == 0


async def test_routes_survive_a_restart(settings: Settings) -> None:
    async with running(settings) as app, Client(app.address) as client:
        await mesh_pb2_grpc.MeshStub(client.channel).SetRoute(mesh_pb2.SetRouteRequest(route=_canary()))
    async with running(settings) as app, Client(app.address) as client:
        got = await mesh_pb2_grpc.MeshStub(client.channel).GetRoute(
            mesh_pb2.GetRouteRequest(service="Payments")
        )
        assert app.mesh.revision == 1
    assert [s.version_range for s in got.route.splits] == [">=1,<2", ">=2"]


async def _first_listener(channel: grpc.aio.Channel, token: str | None) -> discovery_pb2.DiscoveryResponse:
    ads = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
    request = discovery_pb2.DiscoveryRequest(type_url=LISTENER, resource_names=["Payments"])
    request.node.id = "raw"
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    call = ads.StreamAggregatedResources(iter([request]), metadata=metadata, timeout=10)
    async for response in call:
        call.cancel()
        return response
    raise AssertionError("no response")


async def test_xds_follows_the_token_rules(settings: Settings, tmp_path: Path) -> None:
    tokens = write(tmp_path / "tokens.yaml", TOKENS_YAML)
    async with running(replace(settings, tokens_file=tokens)) as app:
        await app.registry.register(
            Registration(service="Payments", address="127.0.0.1:9", instance_id="p-1")
        )
        async with grpc.aio.insecure_channel(app.address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as anonymous:
                await _first_listener(channel, None)
            answer = await _first_listener(channel, CLIENT_TOKEN)
            mesh = mesh_pb2_grpc.MeshStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as client_sets:
                await mesh.SetRoute(
                    mesh_pb2.SetRouteRequest(route=_canary()),
                    metadata=(("authorization", f"Bearer {CLIENT_TOKEN}"),),
                )
            await mesh.SetRoute(
                mesh_pb2.SetRouteRequest(route=_canary()),
                metadata=(("authorization", f"Bearer {ADMIN_TOKEN}"),),
            )
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert answer.type_url == LISTENER and [r.type_url for r in answer.resources] == [LISTENER]
    assert answer.version_info == "1.0"
    assert client_sets.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_version_info_follows_the_registry_and_mesh_revisions(server: App, client: Client) -> None:
    await client.registry.register("Payments", "127.0.0.1:9", instance_id="p-1")
    await mesh_pb2_grpc.MeshStub(client.channel).SetRoute(mesh_pb2.SetRouteRequest(route=_canary()))
    async with grpc.aio.insecure_channel(server.address) as channel:
        ads = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        request = discovery_pb2.DiscoveryRequest(type_url=CLUSTER)  # no names: every cluster
        request.node.id = "raw"
        call = ads.StreamAggregatedResources(iter([request]), timeout=10)
        response = await anext(aiter(call))
        call.cancel()
    assert response.version_info == "1.1"
    assert sorted(response.resources[i].type_url for i in range(3)) == [CLUSTER] * 3  # Payments and 2 splits


@CLI_OUTPUT
async def test_mgmt_mesh_route_set_and_ls_and_bootstrap(server: App, tmp_path: Path) -> None:
    set_out = await _mgmt(
        "mesh", "route", "set", "Payments", "--split", ">=1,<2=90", "--split", ">=2=10",
        "--timeout", "2s", "--retry-on", "unavailable", "--retries", "2", "--max-requests", "50",
        "--server", server.address,
    )  # fmt: skip
    listed = await _mgmt("mesh", "route", "ls", "--server", server.address)
    ca = tmp_path / "ca.pem"
    ca.write_text("not read by the command")
    printed = await _mgmt(
        "mesh", "bootstrap", "--node-id", "n-1", "--server", "127.0.0.1:1,127.0.0.1:2", "--tls-ca", str(ca)
    )
    assert "split >=1,<2=90 >=2=10; timeout 2s; retry unavailable x2; max-requests 50" in set_out
    assert listed.splitlines()[1].split()[:2] == ["Payments", "1"]
    bootstrap = json.loads(printed)
    assert bootstrap["node"] == {"id": "n-1", "locality": {}}
    assert bootstrap["xds_servers"] == [
        {
            "server_uri": "ipv4:127.0.0.1:1,127.0.0.1:2",
            "channel_creds": [{"type": "tls", "config": {"ca_certificate_file": str(ca.resolve())}}],
            "server_features": ["xds_v3"],
        }
    ]


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
