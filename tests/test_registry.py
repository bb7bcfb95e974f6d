"""Registry behaviour through a real server and the SDK: leases, lookup, watch."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from control_plane.errors import InvalidArgument, NotFound, OutOfRange
from control_plane.server import App, running
from control_plane.settings import Settings
from hms.mgmt.v1 import registry_pb2
from hms_mgmt import Client, WatchStream
from hms_mgmt.types import ChangeType, HealthStatus, Instance, Lease, Registration, RegistryChange
from tests.conftest import with_registry


async def next_changes(stream: WatchStream, count: int, timeout_s: float = 5.0) -> list[RegistryChange]:
    """Read until `count` changes arrived (progress messages are skipped)."""
    changes: list[RegistryChange] = []
    async with asyncio.timeout(timeout_s):
        async for response in stream:
            changes.extend(response.changes)
            if len(changes) >= count:
                return changes
    raise AssertionError("watch ended early")


async def test_register_then_lookup_returns_the_instance(client: Client) -> None:
    reply = await client.registry.register("payments", "127.0.0.1:9000", version="1.2.0", tags=["eu"])
    assert reply.instance.instance_id  # generated
    assert reply.lease.lease_id
    assert reply.revision == reply.instance.revision > 0

    found = await client.registry.lookup("payments")

    assert [i.instance_id for i in found] == [reply.instance.instance_id]
    assert found[0].health == HealthStatus.PASSING


async def test_reregistering_updates_in_place_and_keeps_the_lease(client: Client) -> None:
    first = await client.registry.register("docs", "127.0.0.1:9000", instance_id="d1", version="1.0.0")
    second = await client.registry.register("docs", "127.0.0.1:9001", instance_id="d1", version="1.1.0")

    found = await client.registry.lookup("docs")

    assert second.lease.lease_id == first.lease.lease_id
    assert second.revision > first.revision
    assert [(i.address, i.version) for i in found] == [("127.0.0.1:9001", "1.1.0")]


async def test_lookup_filters_by_tags_and_version_range(client: Client) -> None:
    await client.registry.register("svc", "127.0.0.1:1", instance_id="a", version="1.9.0", tags=["eu"])
    await client.registry.register(
        "svc", "127.0.0.1:2", instance_id="b", version="2.1.0", tags=["eu", "canary"]
    )
    await client.registry.register("svc", "127.0.0.1:3", instance_id="c", version="3.0.0", tags=["us"])

    def ids(instances: list[Instance]) -> list[str]:
        return sorted(i.instance_id for i in instances)

    assert ids(await client.registry.lookup("svc", tags=["eu"])) == ["a", "b"]
    assert ids(await client.registry.lookup("svc", tags=["eu", "canary"])) == ["b"]
    assert ids(await client.registry.lookup("svc", version=">=2.0,<3")) == ["b"]
    assert ids(await client.registry.lookup("svc", version="3.0.0")) == ["c"]
    assert ids(await client.registry.lookup("nobody")) == []
    assert len(await client.registry.lookup("svc", limit=2)) == 2


async def test_lookup_rotates_the_order(client: Client) -> None:
    for n in range(3):
        await client.registry.register("rot", f"127.0.0.1:{n + 1}", instance_id=f"i{n}")

    firsts = {(await client.registry.lookup("rot"))[0].instance_id for _ in range(3)}

    assert firsts == {"i0", "i1", "i2"}


async def test_repeated_lookups_follow_every_change_in_every_rotation(client: Client) -> None:
    # Lookup answers are kept per revision (servicers/registry.py): each change must show at once,
    # whichever rotation and filter a caller asks for.
    await client.registry.register("cached", "127.0.0.1:1", instance_id="a", tags=["eu"])
    await client.registry.register("cached", "127.0.0.1:2", instance_id="b")

    def addresses(instances: list[Instance]) -> list[str]:
        return sorted(i.address for i in instances)

    for _ in range(4):
        assert addresses(await client.registry.lookup("cached")) == ["127.0.0.1:1", "127.0.0.1:2"]
        assert addresses(await client.registry.lookup("cached", tags=["eu"])) == ["127.0.0.1:1"]
        assert len(await client.registry.lookup("cached", limit=1)) == 1

    await client.registry.register("cached", "127.0.0.1:3", instance_id="b", tags=["eu"])
    for _ in range(4):
        assert addresses(await client.registry.lookup("cached")) == ["127.0.0.1:1", "127.0.0.1:3"]
        assert addresses(await client.registry.lookup("cached", tags=["eu"])) == [
            "127.0.0.1:1",
            "127.0.0.1:3",
        ]

    await client.registry.deregister("cached", "a")
    for _ in range(4):
        assert addresses(await client.registry.lookup("cached")) == ["127.0.0.1:3"]
        assert [i.instance_id for i in await client.registry.lookup("cached", limit=1)] == ["b"]


async def test_a_lapsed_lease_evicts_and_watch_reports_why(client: Client) -> None:
    # The real clock's wiring: when exactly a lease lapses is tests/core/test_lease_timing.py's.
    async with client.registry.watch("lapse") as stream:
        reply = await client.registry.register("lapse", "127.0.0.1:1", instance_id="x", ttl_s=1.0)
        (up,) = await next_changes(stream, 1)
        (down,) = await next_changes(stream, 1, timeout_s=5.0)

    assert up.type == ChangeType.UP
    assert (down.type, down.reason, down.instance.instance_id) == (ChangeType.DOWN, "lease_expired", "x")
    assert await client.registry.lookup("lapse") == []
    with pytest.raises(NotFound):
        await client.registry.heartbeat(reply.lease.lease_id)


async def test_registration_and_watch_changes_are_typed_values_keeping_their_messages(client: Client) -> None:
    async with client.registry.watch("typed") as stream:
        reply = await client.registry.register("typed", "127.0.0.1:1", instance_id="t", ttl_s=30.0)
        (up,) = await next_changes(stream, 1)
    lease = await client.registry.heartbeat(reply.lease.lease_id)

    assert isinstance(reply, Registration) and isinstance(reply.instance, Instance)
    assert (reply.instance.instance_id, reply.lease.ttl, reply.revision) == (
        "t",
        timedelta(seconds=30),
        up.revision,
    )
    assert (
        isinstance(reply.proto, registry_pb2.RegisterResponse)
        and reply.proto.lease.lease_id == reply.lease.lease_id
    )
    assert isinstance(lease, Lease) and lease.expires_at is not None and lease.expires_at.tzinfo is not None
    assert isinstance(up, RegistryChange) and up.type is ChangeType.UP and up.instance.instance_id == "t"
    assert up.type == registry_pb2.CHANGE_TYPE_UP and up.proto.instance.instance_id == "t"  # type: ignore[comparison-overlap]


async def test_the_sdk_keep_alive_renews_a_lease_before_it_lapses(client: Client) -> None:
    # What renewals do to a lease is tests/core/test_lease_timing.py's; this is the SDK's keep-alive.
    reply = await client.registry.register("beat", "127.0.0.1:1", instance_id="x", ttl_s=1.0)
    async with (
        client.registry.watch("beat", after_revision=reply.revision) as stream,
        client.registry.keep_alive(reply.lease.lease_id, interval_s=0.2) as lost,
    ):
        # One and a half TTLs pass while progress messages (every 0.5 s) arrive and nothing else does.
        deadline = time.monotonic() + 1.5
        async for response in stream:
            assert not response.changes, "the kept-alive instance must not change"
            if time.monotonic() > deadline:
                break
        assert not lost.is_set()
    lease = await client.registry.heartbeat(reply.lease.lease_id)
    assert lease.lease_id == reply.lease.lease_id
    assert [i.instance_id for i in await client.registry.lookup("beat")] == ["x"]


async def test_resuming_a_watch_yields_exactly_the_missed_changes(client: Client) -> None:
    async with client.registry.watch() as stream:
        seen = stream.revision
    first = await client.registry.register("resume", "127.0.0.1:1", instance_id="a")
    await client.registry.register("other", "127.0.0.1:2", instance_id="b")
    await client.registry.register("resume", "127.0.0.1:3", instance_id="a")
    revision = await client.registry.deregister("resume", "a")

    async with client.registry.watch(after_revision=seen) as stream:
        missed = await next_changes(stream, 4)
    async with client.registry.watch("resume", after_revision=first.revision) as stream:
        filtered = await next_changes(stream, 2)

    assert [c.revision for c in missed] == list(range(seen + 1, revision + 1))
    assert [c.type for c in missed] == [
        ChangeType.UP,
        ChangeType.UP,
        ChangeType.UPDATED,
        ChangeType.DOWN,
    ]
    assert [(c.type, c.instance.service) for c in filtered] == [
        (ChangeType.UPDATED, "resume"),
        (ChangeType.DOWN, "resume"),
    ]


async def test_watch_starts_with_a_snapshot_and_sends_progress_while_idle(client: Client) -> None:
    reply = await client.registry.register("snap", "127.0.0.1:1", instance_id="a")

    async with client.registry.watch("snap") as stream:
        assert [i.instance_id for i in stream.snapshot] == ["a"]
        assert stream.revision == reply.revision
        async with asyncio.timeout(5):
            progress = await anext(stream)

    assert not progress.changes
    assert progress.revision == reply.revision


async def test_resuming_from_a_forgotten_revision_is_out_of_range(settings: Settings) -> None:
    async with running(with_registry(settings, history_size=3)) as app, Client(app.address) as client:
        for n in range(6):
            await client.registry.register("old", "127.0.0.1:1", instance_id=f"i{n}")

        with pytest.raises(OutOfRange) as caught:
            async with client.registry.watch(after_revision=1):
                pass

    assert caught.value.metadata["oldest_revision"] == "3"


async def test_registrations_reload_after_an_in_process_restart(settings: Settings) -> None:
    async with running(settings) as app, Client(app.address) as client:
        reply = await client.registry.register(
            "keep", "127.0.0.1:5", instance_id="k", version="2.0.0", ttl_s=30
        )
    async with running(settings) as app, Client(app.address) as client:
        found = await client.registry.lookup("keep")
        lease = await client.registry.heartbeat(reply.lease.lease_id)

    assert [(i.instance_id, i.address, i.version) for i in found] == [("k", "127.0.0.1:5", "2.0.0")]
    assert lease.lease_id == reply.lease.lease_id


async def test_list_services_counts_instances(client: Client, server: App) -> None:
    await client.registry.register("a", "127.0.0.1:1", instance_id="1", version="1.0.0")
    await client.registry.register("a", "127.0.0.1:2", instance_id="2", version="1.1.0")
    await client.registry.register("b", "127.0.0.1:3", instance_id="3")

    services = await client.registry.list_services()

    assert [(s.name, s.instances, s.passing, list(s.versions)) for s in services] == [
        ("a", 2, 2, ["1.0.0", "1.1.0"]),
        ("b", 1, 1, []),
    ]


async def test_deregistering_an_unknown_instance_is_not_found(client: Client) -> None:
    with pytest.raises(NotFound):
        await client.registry.deregister("ghost", "nobody")
    with pytest.raises(InvalidArgument):
        await client.registry.deregister("", "x")
