"""Lease expiry on a fake clock: an instance goes at its last renewal plus its TTL, exactly (etcd's rule)."""

from __future__ import annotations

import pytest

from control_plane.core.registry import Registration
from control_plane.errors import NotFound
from control_plane.models import ChangeType
from control_plane.settings import RegistrySettings
from tests.core.clock import FakeClock
from tests.core.conftest import Cores, running_cores


def registered(cores: Cores, service: str = "svc") -> list[str]:
    return [i.instance_id for i in cores.registry.instances(service)]


async def test_an_unrenewed_lease_lapses_at_registration_plus_ttl_not_twice_that(cores: Cores) -> None:
    await cores.advance_to(3.0)
    _, lease = await cores.registry.register(Registration("svc", "127.0.0.1:1", instance_id="a", ttl_s=10.0))

    await cores.advance_to(12.999)
    kept = registered(cores)
    await cores.advance_to(13.0)

    assert lease.expires_at == cores.clock.at(13.0)
    assert kept == ["a"]
    assert registered(cores) == []
    down = cores.changes[-1]
    assert (down.type, down.reason, down.instance.instance_id) == (ChangeType.DOWN, "lease_expired", "a")
    assert down.time == cores.clock.at(13.0)  # evicted at 13 s, not a sweep interval later
    with pytest.raises(NotFound):
        cores.registry.heartbeat(lease.lease_id)


async def test_a_renewed_lease_lapses_at_the_last_renewal_plus_ttl(cores: Cores) -> None:
    _, lease = await cores.registry.register(Registration("svc", "127.0.0.1:1", instance_id="a", ttl_s=10.0))
    await cores.advance_to(4.0)
    renewed = cores.registry.heartbeat(lease.lease_id)

    await cores.advance_to(10.0)  # the first deadline: renewed since
    at_first_deadline = registered(cores)
    await cores.advance_to(13.999)
    just_before = registered(cores)
    await cores.advance_to(14.0)

    assert renewed.expires_at == cores.clock.at(14.0)
    assert (at_first_deadline, just_before, registered(cores)) == (["a"], ["a"], [])
    assert cores.changes[-1].time == cores.clock.at(14.0)


async def test_heartbeats_within_the_ttl_keep_an_instance_for_as_long_as_they_come(cores: Cores) -> None:
    _, lease = await cores.registry.register(Registration("svc", "127.0.0.1:1", instance_id="a", ttl_s=10.0))
    for n in range(1, 11):  # a renewal every 9.9 s: 99 s, ten TTLs
        await cores.advance_to(9.9 * n)
        cores.registry.heartbeat(lease.lease_id)
    kept = registered(cores)

    await cores.advance_to(9.9 * 10 + 9.999)
    still = registered(cores)
    await cores.advance_to(9.9 * 10 + 10.0)

    assert (kept, still, registered(cores)) == (["a"], ["a"], [])
    assert [c.type for c in cores.changes] == [ChangeType.UP, ChangeType.DOWN]


async def test_each_lease_lapses_at_its_own_time(cores: Cores) -> None:
    for name, ttl in (("slow", 30.0), ("fast", 5.0), ("mid", 12.5)):
        await cores.registry.register(Registration("svc", "127.0.0.1:1", instance_id=name, ttl_s=ttl))

    await cores.advance_to(60.0)

    downs = [(c.instance.instance_id, c.time) for c in cores.changes if c.type is ChangeType.DOWN]
    assert downs == [
        ("fast", cores.clock.at(5.0)),
        ("mid", cores.clock.at(12.5)),
        ("slow", cores.clock.at(30.0)),
    ]


async def test_re_registering_renews_the_lease(cores: Cores) -> None:
    registration = Registration("svc", "127.0.0.1:1", instance_id="a", ttl_s=10.0)
    _, first = await cores.registry.register(registration)
    await cores.advance_to(8.0)
    _, second = await cores.registry.register(registration)

    await cores.advance_to(17.999)
    kept = registered(cores)
    await cores.advance_to(18.0)

    assert second.lease_id == first.lease_id
    assert (kept, registered(cores)) == (["a"], [])


async def test_after_a_restart_each_lease_gets_a_fresh_ttl_or_the_restart_grace(
    core_url: str, clock: FakeClock
) -> None:
    async with running_cores(core_url, clock) as before:
        for name, ttl in (("short", 5.0), ("long", 40.0)):
            await before.registry.register(Registration("svc", "127.0.0.1:1", instance_id=name, ttl_s=ttl))
    await clock.advance_to(100.0)  # down for longer than every TTL

    async with running_cores(core_url, clock, RegistrySettings(restart_grace_s=20.0)) as after:
        restored = sorted(registered(after))
        await after.advance_to(119.999)
        within_grace = sorted(registered(after))
        await after.advance_to(120.0)
        after_grace = registered(after)
        await after.advance_to(140.0)

    assert restored == within_grace == ["long", "short"]
    assert after_grace == ["long"]  # the grace, unless the TTL is longer
    assert registered(after) == []
    assert [(c.instance.instance_id, c.time) for c in after.changes] == [
        ("short", clock.at(120.0)),
        ("long", clock.at(140.0)),
    ]
