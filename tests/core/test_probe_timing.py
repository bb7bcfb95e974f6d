"""Probe damping on a fake clock (Consul's defaults): 3 results in a row change the health, 60 s critical deregisters."""

from __future__ import annotations

from control_plane.core.registry import Registration
from control_plane.models import ChangeType, Health, ProbeSpec
from tests.core.conftest import Cores

ADDRESS = "127.0.0.1:7001"
# Every default: a probe every 10 s, 3 in a row to change state, deregistered after 60 s critical.
DEFAULTS = ProbeSpec(service_name="permits")


async def probed(cores: Cores, serving: bool = True) -> None:
    cores.checker.serving[ADDRESS] = serving
    # A lease longer than the test: only the probes decide.
    registration = Registration("permits", ADDRESS, instance_id="p1", probe=DEFAULTS, ttl_s=3600.0)
    await cores.registry.register(registration)
    await cores.settle()


def health_changes(cores: Cores) -> list[tuple[float, Health]]:
    return [
        (c.time - cores.clock.at(0.0), c.instance.health)
        for c in cores.changes
        if c.type is ChangeType.HEALTH
    ]


def downs(cores: Cores) -> list[tuple[float, str]]:
    return [(c.time - cores.clock.at(0.0), c.reason) for c in cores.changes if c.type is ChangeType.DOWN]


async def test_three_results_in_a_row_turn_passing_to_critical_and_back(cores: Cores) -> None:
    await probed(cores)  # a new instance starts critical; its first probe decides at once
    cores.checker.serving[ADDRESS] = False
    await cores.advance_to(20.0)  # two failures: still passing
    after_two = cores.registry.lookup("permits")[0]
    await cores.advance_to(30.0)  # the third
    critical = cores.registry.lookup("permits")[0]
    cores.checker.serving[ADDRESS] = True
    await cores.advance_to(59.0)  # two good probes (40 s, 50 s): still critical
    await cores.advance_to(60.0)

    assert [t for t, _ in cores.checker.checks] == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    assert [i.instance_id for i in after_two] == ["p1"]
    assert critical == []  # a critical instance is not looked up
    assert health_changes(cores) == [(0.0, Health.PASSING), (30.0, Health.CRITICAL), (60.0, Health.PASSING)]


async def test_a_streak_broken_by_one_other_result_starts_again(cores: Cores) -> None:
    await probed(cores)
    for t, serving in ((10, False), (20, False), (30, True), (40, False), (50, False)):
        cores.checker.serving[ADDRESS] = serving  # the answer to the one probe at `t`
        await cores.advance_to(float(t))
    unchanged = health_changes(cores)
    await cores.advance_to(60.0)  # the third failure in a row

    assert unchanged == [(0.0, Health.PASSING)]
    assert health_changes(cores)[-1] == (60.0, Health.CRITICAL)


async def test_an_instance_critical_for_60_s_is_deregistered(cores: Cores) -> None:
    await probed(cores)
    cores.checker.serving[ADDRESS] = False
    await cores.advance_to(30.0)  # critical from 30 s
    await cores.advance_to(89.999)
    kept = cores.registry.instances("permits")
    await cores.advance_to(90.0)

    assert [i.health for i in kept] == [Health.CRITICAL]
    assert downs(cores) == [(90.0, "critical_too_long")]
    assert cores.registry.instances("permits") == []
    await cores.advance_to(200.0)
    assert [t for t, _ in cores.checker.checks][-1] == 90.0  # no probe after it left


async def test_an_instance_that_never_passes_is_deregistered_60_s_after_registering(cores: Cores) -> None:
    await cores.advance_to(5.0)
    await probed(cores, serving=False)

    await cores.advance_to(64.999)
    kept = len(cores.registry.instances("permits"))
    await cores.advance_to(65.0)

    assert kept == 1
    assert health_changes(cores) == []  # critical from the start: nothing to change
    assert downs(cores) == [(65.0, "critical_too_long")]


async def test_passing_again_restarts_the_critical_countdown(cores: Cores) -> None:
    await probed(cores)
    for t, serving in ((10, False), (40, True), (70, False)):  # each from the probe at `t` on
        await cores.advance_to(t - 1.0)
        cores.checker.serving[ADDRESS] = serving
    await cores.advance_to(100.0)  # critical at 30 s, passing at 60 s, critical again at 90 s
    await cores.advance_to(149.999)  # more than 60 s after the first critical spell began
    kept = len(cores.registry.instances("permits"))
    await cores.advance_to(150.0)

    assert health_changes(cores) == [
        (0.0, Health.PASSING),
        (30.0, Health.CRITICAL),
        (60.0, Health.PASSING),
        (90.0, Health.CRITICAL),
    ]
    assert kept == 1
    assert downs(cores) == [(150.0, "critical_too_long")]


async def test_lookup_without_filters_follows_each_health_change_and_removal(cores: Cores) -> None:
    # Unfiltered lookups answer from a passing list kept as changes apply: it must follow each one.
    registry = cores.registry
    for instance_id in ("a", "b"):
        await registry.register(Registration("svc", ADDRESS, instance_id=instance_id, ttl_s=3600.0))

    def passing() -> list[str]:
        return sorted(i.instance_id for i in registry.lookup("svc")[0])

    assert passing() == ["a", "b"]
    await registry.set_health(("svc", "a"), Health.CRITICAL)
    assert passing() == ["b"]
    assert sorted(i.instance_id for i in registry.lookup("svc", include_unhealthy=True)[0]) == ["a", "b"]
    await registry.set_health(("svc", "b"), Health.CRITICAL)
    assert registry.lookup("svc") == ([], registry.feed.revision)
    await registry.set_health(("svc", "a"), Health.PASSING)
    assert passing() == ["a"]
    await registry.deregister("svc", "a")
    assert passing() == []
