"""What registry.proto promises a client in any language, checked through the generated stubs only.

One test per promise (or per small group of promises of one comment), named after it. Lease timing,
probing timing and watch resumption are tests/core's and tests/test_registry.py's.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from control_plane.server import App
from hms.mgmt.v1 import common_pb2
from hms.mgmt.v1 import registry_pb2 as pb
from tests.promise_support import Wire


@pytest.fixture
async def wire(server: App) -> AsyncIterator[Wire]:
    """Stubs on a channel to `server`."""
    connection = Wire(server.address)
    yield connection
    await connection.close()


async def register(wire: Wire, service: str, instance_id: str = "", **fields: Any) -> pb.RegisterResponse:
    ttl = fields.pop("ttl", None)
    instance = pb.ServiceInstance(service=service, instance_id=instance_id, address="127.0.0.1:1", **fields)
    return await wire.registry.Register(pb.RegisterRequest(instance=instance, ttl=ttl))


def seconds(value: duration_pb2.Duration) -> float:
    return value.seconds + value.nanos / 1e9


async def watch(
    wire: Wire, request: pb.WatchRequest, changes: int
) -> tuple[pb.WatchResponse, list[pb.RegistryChange]]:
    """The first message of a watch, and the first `changes` changes it streams (in that message or after)."""
    stream = wire.registry.Watch(request)
    seen: list[pb.RegistryChange] = []
    try:
        async with asyncio.timeout(10):
            first = await stream.read()
            assert isinstance(first, pb.WatchResponse), first
            seen.extend(first.changes)
            while len(seen) < changes:
                frame = await stream.read()
                assert isinstance(frame, pb.WatchResponse), frame
                assert not frame.created and not frame.snapshot
                seen.extend(frame.changes)
    finally:
        stream.cancel()
    return first, seen


async def test_a_registration_gets_a_uuid_a_10s_lease_and_keeps_its_first_time(wire: Wire) -> None:
    """Register: an empty instance_id becomes a UUID; the lease's ttl defaults to 10 s and expires_at is
    then + ttl; the instance's revision is the answer's revision; registering it again keeps its
    lease and registered_at, and is an UPDATED change with a new revision even when nothing changed."""
    before = time.time()
    first = await register(wire, "pay")
    again = await register(wire, "pay", first.instance.instance_id)
    _, changes = await watch(wire, pb.WatchRequest(service="pay", after_revision=first.revision), 1)

    assert str(uuid.UUID(first.instance.instance_id)) == first.instance.instance_id
    assert seconds(first.lease.ttl) == 10.0
    expires = first.lease.expires_at.ToNanoseconds() / 1e9
    assert before + 10 <= expires <= time.time() + 10
    assert first.instance.revision == first.revision and first.instance.lease_id == first.lease.lease_id
    assert first.instance.health == common_pb2.HEALTH_STATUS_PASSING
    assert again.lease.lease_id == first.lease.lease_id
    assert again.instance.registered_at == first.instance.registered_at and again.revision > first.revision
    assert [(c.type, c.revision) for c in changes] == [(pb.CHANGE_TYPE_UPDATED, again.revision)]


async def test_heartbeat_renews_for_a_ttl_and_an_unknown_lease_is_not_found(wire: Wire) -> None:
    """Heartbeat: the lease renewed, expires_at = now + ttl; NOT_FOUND for a lease that is not (or no
    longer) known."""
    reply = await register(wire, "beat", "b1", ttl=duration_pb2.Duration(seconds=30))
    before = time.time()
    renewed = (await wire.registry.Heartbeat(pb.HeartbeatRequest(lease_id=reply.lease.lease_id))).lease
    await wire.registry.Deregister(pb.DeregisterRequest(service="beat", instance_id="b1"))
    with pytest.raises(grpc.aio.AioRpcError) as revoked:
        await wire.registry.Heartbeat(pb.HeartbeatRequest(lease_id=reply.lease.lease_id))

    expires = renewed.expires_at.ToNanoseconds() / 1e9
    assert renewed.lease_id == reply.lease.lease_id and seconds(renewed.ttl) == 30
    assert before + 30 <= expires <= time.time() + 30
    assert revoked.value.code() == grpc.StatusCode.NOT_FOUND


async def test_keep_alive_answers_each_renewal_in_order_and_stays_open_for_unknown_leases(wire: Wire) -> None:
    """KeepAlive: one response per request, in order, echoing lease_id; an unknown lease answers
    not_found and the stream stays open for the next."""
    one = await register(wire, "ka", "k1")
    two = await register(wire, "ka", "k2")
    call = wire.registry.KeepAlive()
    answers: list[pb.KeepAliveResponse] = []
    try:
        async with asyncio.timeout(10):
            for lease_id in (one.lease.lease_id, "no-such-lease", two.lease.lease_id):
                await call.write(pb.KeepAliveRequest(lease_id=lease_id))
                answer = await call.read()
                assert isinstance(answer, pb.KeepAliveResponse)
                answers.append(answer)
    finally:
        call.cancel()

    assert [a.lease_id for a in answers] == [one.lease.lease_id, "no-such-lease", two.lease.lease_id]
    assert [a.not_found for a in answers] == [False, True, False]
    assert answers[0].lease.lease_id == one.lease.lease_id and not answers[1].HasField("lease")


async def test_a_probed_instance_starts_critical_with_the_probe_defaults_filled_in(wire: Wire) -> None:
    """An instance with a probe is CRITICAL until probed successfully, its probe shown with the
    defaults (interval 10 s, timeout 2 s, threshold 3, deregister after 60 s critical); Lookup leaves
    it out unless include_unhealthy; ListServices counts it, not as passing."""
    await register(wire, "probed", "p1", probe=pb.HealthProbe())
    await register(wire, "probed", "p2")
    healthy = await wire.registry.Lookup(pb.LookupRequest(service="probed"))
    every = await wire.registry.Lookup(pb.LookupRequest(service="probed", include_unhealthy=True))
    services = await wire.registry.ListServices(pb.ListServicesRequest())

    assert [i.instance_id for i in healthy.instances] == ["p2"]
    (probed,) = [i for i in every.instances if i.instance_id == "p1"]
    assert probed.health == common_pb2.HEALTH_STATUS_CRITICAL
    probe = probed.probe
    assert (seconds(probe.interval), seconds(probe.timeout), probe.threshold) == (10, 2, 3)
    assert seconds(probe.deregister_critical_after) == 60
    (summary,) = services.services
    assert (summary.name, summary.instances, summary.passing) == ("probed", 2, 1)
    assert healthy.revision == every.revision == services.revision > 0


async def test_a_watch_from_revision_0_replays_every_kept_change_without_a_snapshot(wire: Wire) -> None:
    """Watch: after_revision 0 (the empty registry) replays every change kept, without a snapshot;
    without after_revision the first message has created and the snapshot of the watched service
    only; a DOWN change carries the instance as it was and the reason."""
    await register(wire, "w", "w1", version="1.0.0")
    await register(wire, "other", "o1")
    await wire.registry.Deregister(pb.DeregisterRequest(service="w", instance_id="w1"))
    await register(wire, "w", "w2")
    replayed, changes = await watch(wire, pb.WatchRequest(after_revision=0), 4)
    snapshot, _ = await watch(wire, pb.WatchRequest(service="w"), 0)

    assert replayed.created and not replayed.snapshot
    assert [c.revision for c in changes] == [1, 2, 3, 4]
    assert [c.type for c in changes] == [
        pb.CHANGE_TYPE_UP,
        pb.CHANGE_TYPE_UP,
        pb.CHANGE_TYPE_DOWN,
        pb.CHANGE_TYPE_UP,
    ]
    down = changes[2]
    assert (down.reason, down.instance.instance_id, down.instance.version) == ("deregistered", "w1", "1.0.0")
    assert snapshot.created and [i.instance_id for i in snapshot.snapshot] == ["w2"]
    assert snapshot.revision == 4
