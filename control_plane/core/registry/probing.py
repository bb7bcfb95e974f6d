"""Active health probing: a result must repeat `threshold` times in a row to change an instance's health."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import Protocol

from control_plane.core.loops import MAX_DELAY_S, Guard
from control_plane.core.registry.registry import Registry
from control_plane.core.signal import Wait, wait_any
from control_plane.models import ChangeType, DownReason, Health, Instance, ProbeSpec, RegistryChange

logger = logging.getLogger(__name__)

# Told of every probe: the instance's service, whether it answered SERVING, how long it took (s).
ProbeObserver = Callable[[str, bool, float], None]


class HealthChecker(Protocol):
    """Asks one instance whether it serves; the gRPC implementation lives outside the core."""

    async def check(self, address: str, service_name: str, timeout_s: float) -> bool:
        """True when the instance answers SERVING within `timeout_s`."""
        ...

    def forget(self, address: str) -> None:
        """Release whatever is kept for an address no probe uses any more (its connection)."""
        ...


class Prober:
    """Runs one probe loop per probed instance, started and stopped by registry changes."""

    def __init__(
        self,
        registry: Registry,
        checker: HealthChecker,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wait: Wait = wait_any,
    ) -> None:
        self._registry = registry
        self._checker = checker
        self._now = monotonic
        self._wait = wait  # times the probe interval on the `monotonic` clock
        self._probes: dict[tuple[str, str], asyncio.Task[None]] = {}
        # The address each running probe checks: the checker keeps a connection per address, released
        # when no probe checks it any more (the instance left, moved, stopped asking to be probed, or
        # this replica stopped leading).
        self._addresses: dict[tuple[str, str], str] = {}
        self._tasks: asyncio.TaskGroup | None = None
        # Set by the edge for metrics; None costs nothing.
        self.observer: ProbeObserver | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Probe every probed instance until `stop` is set."""
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            for instance in self._registry.instances():
                self._start(instance, decide_at_once=False)
            await stop.wait()
            self._tasks = None
            for task in self._probes.values():
                task.cancel()
        self._probes.clear()
        self._addresses.clear()

    def on_registry_change(self, change: RegistryChange) -> None:
        """Start, restart or stop the probe of the instance that changed (the root subscribes this)."""
        instance = change.instance
        if change.type in (ChangeType.UP, ChangeType.UPDATED):
            previous = self._addresses.get(instance.key)
            self._stop(instance.key, release=False)
            self._start(instance, decide_at_once=change.type is ChangeType.UP)
            if previous is not None:
                self._release(previous)  # unless the new registration probes the same address
        elif change.type is ChangeType.DOWN:
            self._stop(instance.key)

    def on_leadership(self, leader: bool) -> None:
        """Probe everything on becoming the leader, nothing on ceasing to be (the root subscribes this).

        Only the leader probes: replicas would otherwise each probe, and write, every verdict.
        """
        if leader:
            for instance in self._registry.instances():
                if instance.key not in self._probes:
                    self._start(instance, decide_at_once=False)
        else:
            for key in list(self._probes):
                self._stop(key)

    def _start(self, instance: Instance, *, decide_at_once: bool) -> None:
        if instance.probe is None or self._tasks is None or not self._registry.leader:
            return
        self._probes[instance.key] = self._tasks.create_task(self._probe_loop(instance, decide_at_once))
        self._addresses[instance.key] = instance.address

    def _stop(self, key: tuple[str, str], *, release: bool = True) -> None:
        task = self._probes.pop(key, None)
        if task is not None:
            task.cancel()
        address = self._addresses.pop(key, None)
        if address is not None and release:
            self._release(address)

    def _release(self, address: str) -> None:
        """Let the checker close its connection to `address` once no running probe checks it."""
        if address not in self._addresses.values():
            self._checker.forget(address)

    async def _probe_loop(self, instance: Instance, first: bool) -> None:
        """Probe until cancelled; `first` lets the first result decide (a new instance starts CRITICAL).

        A verdict the registry could not store (the store failing) is logged and tried again after a
        backoff, with a fresh probe: the loop never ends on an error.
        """
        probe = instance.probe
        assert probe is not None
        key = instance.key
        guard = Guard(
            f"probing {key[0]}/{key[1]}",
            initial_s=probe.interval_s,
            cap_s=max(probe.interval_s, MAX_DELAY_S),
            wait=self._wait,
        )
        health = instance.health
        streak_result: bool | None = None
        streak = 0
        critical_since = self._now() if health is Health.CRITICAL else None
        while True:
            begun = self._now()
            ok = await self._check(instance, probe)
            if self.observer is not None:
                self.observer(key[0], ok, self._now() - begun)
            streak = streak + 1 if ok == streak_result else 1
            streak_result = ok
            verdict = Health.PASSING if ok else Health.CRITICAL
            # The first probe of a new instance decides at once; afterwards a change needs a streak.
            if verdict is not health and (first or streak >= probe.threshold):
                if not await guard.run(functools.partial(self._registry.set_health, key, verdict)):
                    continue  # not stored: the next probe decides again
                logger.info("instance %s/%s is now %s", key[0], key[1], verdict)
                health = verdict
                critical_since = self._now() if verdict is Health.CRITICAL else None
            first = False
            if (
                critical_since is not None
                and probe.deregister_critical_after_s
                and self._now() - critical_since >= probe.deregister_critical_after_s
            ):
                logger.info(
                    "deregistering %s/%s: critical for %.0fs", key[0], key[1], self._now() - critical_since
                )
                if await guard.run(
                    functools.partial(self._registry.evict, key, DownReason.CRITICAL_TOO_LONG)
                ):
                    return
                continue
            await self._wait([], probe.interval_s)

    async def _check(self, instance: Instance, probe: ProbeSpec) -> bool:
        """One probe; a checker that raises (rather than answering False) counts as a failed probe."""
        try:
            return await self._checker.check(instance.address, probe.service_name, probe.timeout_s)
        except Exception:
            logger.exception("probing %s/%s raised", *instance.key)
            return False
