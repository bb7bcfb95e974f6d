"""The xDS snapshot kept service by service: what a change rebuilds, what it sends, and to whom.

A change must cost in proportion to what it changed: the services it touched are rebuilt, an
unchanged resource keeps its encoded object, only the streams holding a changed resource hear of
it, and the response they get is the one a whole rebuild would have sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from control_plane.core.registry import Registration
from control_plane.models import RoutePolicy, VersionSplit
from control_plane.server import App
from control_plane.servicers.xds import encoding, resources
from control_plane.servicers.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE, TYPES
from control_plane.servicers.xds.snapshots import Snapshots
from tests.mesh_support import until_acked


def _everything(snapshots: Snapshots) -> dict[str, dict[str, bytes]]:
    snapshots.refresh()
    return {t: {name: r.element for name, r in snapshots.pick(t, frozenset()).items()} for t in TYPES}


async def test_a_change_kept_piecewise_gives_what_a_whole_rebuild_gives(server: App) -> None:
    kept = Snapshots(server.registry, server.mesh)
    kept.refresh()
    for n, version in enumerate(("1.0", "1.5", "2.0")):
        await server.registry.register(
            Registration(
                service="Pay", address=f"127.0.0.1:{9000 + n}", instance_id=f"p-{n}", version=version
            )
        )
    await server.registry.register(Registration(service="Ship", address="127.0.0.1:9100", instance_id="s-0"))
    splits = (VersionSplit(">=1,<2", 90), VersionSplit(">=2", 10))
    await server.mesh.set_route(RoutePolicy(service="Pay", splits=splits, max_concurrent_requests=5))
    await server.mesh.set_route(RoutePolicy(service="Quiet"))  # a policy and no instance
    await server.registry.deregister("Pay", "p-1")
    await server.registry.deregister("Ship", "s-0")  # its last instance: its resources go
    await server.mesh.set_route(RoutePolicy(service="Pay", splits=splits[:1]))  # one split goes

    whole = Snapshots(server.registry, server.mesh)
    assert _everything(kept) == _everything(whole)
    assert kept.version == whole.version == f"{server.registry.feed.revision}.{server.mesh.revision}"
    assert sorted(_everything(kept)[CLUSTER]) == ["Pay", "Pay|>=1,<2", "Quiet"]


async def test_an_instance_change_rebuilds_the_assignments_alone(server: App) -> None:
    await server.registry.register(Registration(service="Pay", address="127.0.0.1:9000", instance_id="p-0"))
    snapshots = Snapshots(server.registry, server.mesh)
    snapshots.refresh()
    before = {t: snapshots.pick(t, frozenset({"Pay"}))["Pay"] for t in TYPES}
    await server.registry.register(Registration(service="Pay", address="127.0.0.1:9001", instance_id="p-1"))
    await server.registry.register(Registration(service="Other", address="127.0.0.1:9100", instance_id="o"))
    snapshots.refresh()
    after = {t: snapshots.pick(t, frozenset({"Pay"}))["Pay"] for t in TYPES}
    assert [after[t] is before[t] for t in TYPES] == [True, True, True, False]
    assignment = endpoint_pb2.ClusterLoadAssignment()
    after[ENDPOINT].packed.Unpack(assignment)
    assert len(assignment.endpoints[0].lb_endpoints) == 2


def test_a_joined_response_parses_as_the_message_built_field_by_field() -> None:
    # A policy alone (no instance) still makes every resource.
    built = resources.for_service("Pay", [], RoutePolicy(service="Pay", timeout_s=1.5))
    chosen = [encoding.Resource.of(name, message) for (_, name), message in sorted(built.items())]
    joined = encoding.response(encoding.body("7.3", LISTENER, chosen), "42")
    expected = discovery_pb2.DiscoveryResponse(
        version_info="7.3", type_url=LISTENER, nonce="42", resources=[r.packed for r in chosen]
    )
    assert discovery_pb2.DiscoveryResponse.FromString(joined) == expected


class _Stream:
    """A raw ADS stream that subscribes to one service's assignment and ACKs what it gets."""

    def __init__(self, channel: grpc.aio.Channel, node_id: str, service: str) -> None:
        self._node_id = node_id
        self._service = service
        self._outbox: list[discovery_pb2.DiscoveryRequest] = []
        self._call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()

    async def ask(self) -> None:
        request = discovery_pb2.DiscoveryRequest(type_url=ENDPOINT, resource_names=[self._service])
        request.node.id = self._node_id
        await self._call.write(request)

    async def next(self) -> discovery_pb2.DiscoveryResponse:
        """The next response, ACKed."""
        response = await self.read()
        await self.answer(response)
        return response

    async def read(self) -> discovery_pb2.DiscoveryResponse:
        """The next response, not answered yet."""
        response: discovery_pb2.DiscoveryResponse = await self._call.read()
        return response

    async def answer(self, response: discovery_pb2.DiscoveryResponse, refusal: str = "") -> None:
        """ACK `response`, or NACK it with `refusal` (then naming no new version, as clients do)."""
        request = discovery_pb2.DiscoveryRequest(
            type_url=response.type_url,
            resource_names=[self._service],
            version_info="" if refusal else response.version_info,
            response_nonce=response.nonce,
        )
        if refusal:
            request.error_detail.message = refusal
        await self._call.write(request)


def _ports(response: discovery_pb2.DiscoveryResponse) -> set[int]:
    assignment = endpoint_pb2.ClusterLoadAssignment()
    response.resources[0].Unpack(assignment)
    return {e.endpoint.address.socket_address.port_value for e in assignment.endpoints[0].lb_endpoints}


@pytest.fixture
async def channel(server: App) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(server.address) as opened:
        yield opened


@pytest.mark.timeout(30)
async def test_only_the_streams_holding_a_changed_resource_hear_of_it(
    server: App, channel: grpc.aio.Channel
) -> None:
    await server.registry.register(Registration(service="Pay", address="127.0.0.1:9000", instance_id="p-0"))
    await server.registry.register(Registration(service="Ship", address="127.0.0.1:9100", instance_id="s-0"))
    pay, ship = _Stream(channel, "pay", "Pay"), _Stream(channel, "ship", "Ship")
    await pay.ask()
    await ship.ask()
    assert (await pay.next()).version_info == (await ship.next()).version_info == "2.0"

    for n in range(3):  # three changes of Ship, none of Pay's
        await server.registry.register(
            Registration(service="Ship", address=f"127.0.0.1:{9101 + n}", instance_id=f"s-{n + 1}")
        )
    await server.registry.register(Registration(service="Pay", address="127.0.0.1:9001", instance_id="p-1"))

    # Had Pay's stream been sent anything for Ship's changes, it would come first.
    changed = await pay.next()
    assert changed.version_info == "6.0"
    assignment = endpoint_pb2.ClusterLoadAssignment()
    changed.resources[0].Unpack(assignment)
    assert assignment.cluster_name == "Pay" and len(assignment.endpoints[0].lb_endpoints) == 2
    # Ship's stream hears of its changes until it holds the last: those made while a response was
    # unanswered come as one, at the version current when it was answered (6.0 once Pay changed).
    seen = [await ship.next()]
    while len(_ports(seen[-1])) < 4:
        seen.append(await ship.next())
    versions = [response.version_info for response in seen]
    assert set(versions) <= {"3.0", "4.0", "5.0", "6.0"} and versions == sorted(versions)
    assert _ports(seen[-1]) == {9100, 9101, 9102, 9103}


@pytest.mark.timeout(30)
async def test_changes_made_while_a_response_is_unanswered_reach_the_stream_as_the_latest_one(
    server: App, channel: grpc.aio.Channel
) -> None:
    # A client busy elsewhere must catch up with one response, not with every version in between.
    await server.registry.register(Registration(service="Pay", address="127.0.0.1:9000", instance_id="p-0"))
    pay = _Stream(channel, "pay", "Pay")
    await pay.ask()
    await pay.next()
    for port in range(9001, 9021):  # twenty changes of Pay while the stream reads nothing
        await server.registry.register(
            Registration(service="Pay", address=f"127.0.0.1:{port}", instance_id="p-1")
        )
    latest = f"{server.registry.feed.revision}.0"
    received = [await pay.next()]
    while received[-1].version_info != latest:
        received.append(await pay.next())
    # The response sent at the first change, then, once it is ACKed, the latest: never twenty.
    assert len(received) <= 2
    assert _ports(received[-1]) == {9000, 9020}


@pytest.mark.timeout(30)
async def test_a_nacked_response_is_not_sent_again_and_the_next_change_follows_the_nack(
    server: App, channel: grpc.aio.Channel
) -> None:
    await server.registry.register(Registration(service="Pay", address="127.0.0.1:9000", instance_id="p-0"))
    pay = _Stream(channel, "pay", "Pay")
    await pay.ask()
    await pay.next()
    await server.registry.register(Registration(service="Pay", address="127.0.0.1:9001", instance_id="p-1"))
    refused = await pay.read()
    await server.registry.register(Registration(service="Pay", address="127.0.0.1:9002", instance_id="p-2"))
    await pay.answer(refused, refusal="not today")  # a change waited for this answer
    # Had the refused version been sent again, or the change been dropped, this would not be it.
    following = await pay.next()
    assert _ports(refused) == {9000, 9001}
    assert _ports(following) == {9000, 9001, 9002}
    assert following.version_info == f"{server.registry.feed.revision}.0"
    # next() ACKed it; the server takes the ACK in its own time (CI failed reading the state before).
    await until_acked(server, "pay", ENDPOINT, following.version_info)
    [node] = server.xds_nodes.all()
    assert node.types[ENDPOINT].nack_error == ""  # cleared by the ACK of the following version


@pytest.mark.timeout(30)
async def test_a_client_that_half_closed_hears_of_changes_without_answering(
    server: App, channel: grpc.aio.Channel
) -> None:
    await server.registry.register(Registration(service="Pay", address="127.0.0.1:9000", instance_id="p-0"))
    request = discovery_pb2.DiscoveryRequest(type_url=ENDPOINT, resource_names=["Pay"])
    request.node.id = "one-shot"
    # One request, then the client's half of the stream closes: it can ACK nothing.
    call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources(iter([request]))
    try:
        responses = aiter(call)
        first = await anext(responses)
        await server.registry.register(
            Registration(service="Pay", address="127.0.0.1:9001", instance_id="p-1")
        )
        async with asyncio.timeout(10):  # no ACK will come: the change must not wait for one
            second = await anext(responses)
    finally:
        call.cancel()
    assert _ports(first) == {9000}
    assert _ports(second) == {9000, 9001}


@pytest.mark.timeout(30)
async def test_a_wait_on_the_nodes_returns_when_the_node_acks(server: App, channel: grpc.aio.Channel) -> None:
    await server.registry.register(Registration(service="Pay", address="127.0.0.1:9000", instance_id="p-0"))

    def pay_acked() -> bool:
        return any(
            node.node.id == "pay" and (state := node.types.get(ENDPOINT)) is not None and state.acked_version
            for node in server.xds_nodes.all()
        )

    waiting = asyncio.ensure_future(server.xds_nodes.wait(pay_acked))
    pay = _Stream(channel, "pay", "Pay")
    await pay.ask()
    assert not waiting.done()
    version = (await pay.next()).version_info  # read, then ACKed
    async with asyncio.timeout(5):  # woken by the ACK, not by looking again later
        await waiting
    [node] = server.xds_nodes.all()
    assert node.types[ENDPOINT].acked_version == version


@pytest.mark.timeout(30)
async def test_an_undecodable_request_ends_the_stream_with_invalid_argument(
    channel: grpc.aio.Channel,
) -> None:
    call: grpc.aio.StreamStreamCall[bytes, bytes] = channel.stream_stream(
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
    )()
    await call.write(b"\xff\xff\xff")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call.read()
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("kind", [ROUTE, CLUSTER])
async def test_a_policy_change_rebuilds_that_service_only(server: App, kind: str) -> None:
    await server.registry.register(Registration(service="Pay", address="127.0.0.1:9000", instance_id="p-0"))
    snapshots = Snapshots(server.registry, server.mesh)
    snapshots.refresh()
    before = snapshots.pick(kind, frozenset({"Pay"}))["Pay"]
    await server.mesh.set_route(RoutePolicy(service="Other", max_concurrent_requests=3))
    snapshots.refresh()
    assert snapshots.pick(kind, frozenset({"Pay"}))["Pay"] is before
    await server.mesh.set_route(RoutePolicy(service="Pay", max_concurrent_requests=3, timeout_s=2))
    snapshots.refresh()
    assert snapshots.pick(kind, frozenset({"Pay"}))["Pay"] is not before
