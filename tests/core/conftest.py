"""The cores (registry, prober, Bus, workflows) on a real SQLite store, with their clocks faked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from control_plane.core.bus.bus import Bus
from control_plane.core.registry import Prober, Registry
from control_plane.core.workflow.workflows import Workflows
from control_plane.models import RegistryChange
from control_plane.server import connect
from control_plane.settings import BusSettings, RegistrySettings
from control_plane.storage import Store, open_store
from tests.core.clock import FakeClock

# Loops that always wait on the clock: lease expiry, attempt deadlines, durable timers.
_LOOPS = 3


@dataclass
class Checker:
    """A HealthChecker whose instances answer what the test says: serving, unless told otherwise."""

    serving: dict[str, bool] = field(default_factory=dict)
    checks: list[tuple[float, str]] = field(default_factory=list)
    clock: FakeClock | None = None

    async def check(self, address: str, service_name: str, timeout_s: float) -> bool:
        """Answer at once (a probe's own timeout is the real checker's business)."""
        self.checks.append((self.clock.elapsed if self.clock else 0.0, address))
        return self.serving.get(address, True)

    def forget(self, address: str) -> None:
        """Nothing kept."""


@dataclass
class Cores:
    """The four cores sharing one store and one fake clock, their loops running."""

    clock: FakeClock
    store: Store
    registry: Registry
    prober: Prober
    bus: Bus
    workflows: Workflows
    checker: Checker
    changes: list[RegistryChange]

    async def settle(self, extra: int = 0) -> None:
        """Wait until every loop on the clock waits: the fixed ones, a probe per probed instance, `extra`."""
        probed = sum(1 for i in self.registry.instances() if i.probe is not None)
        await self.clock.settle(waiting=_LOOPS + probed + extra)

    async def advance_to(self, elapsed: float, extra: int = 0) -> None:
        """Move the clock to `elapsed` once every loop waits (see `settle`)."""
        await self.settle(extra)
        await self.clock.advance_to(elapsed)


@asynccontextmanager
async def running_cores(
    url: str,
    clock: FakeClock,
    registry: RegistrySettings | None = None,
    bus: BusSettings | None = None,
) -> AsyncIterator[Cores]:
    """Load the cores from the store at `url` and run their loops for the duration of the block."""
    store = await open_store(url)
    checker = Checker(clock=clock)
    timing: dict[str, Any] = {"wall_clock": clock.wall, "monotonic": clock.monotonic, "wait": clock.wait}
    try:
        reg = Registry(store, registry or RegistrySettings(), **timing)
        changes: list[RegistryChange] = []
        reg.listeners.append(changes.append)
        await reg.load()
        prober = Prober(reg, checker, monotonic=clock.monotonic, wait=clock.wait)
        the_bus = Bus(store, bus or BusSettings(), **timing)
        await the_bus.load()
        workflows = Workflows(store, the_bus, reg, **timing)
        await workflows.load()
        connect(reg, prober, the_bus, workflows)
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as tasks:
            for run in (reg.run, prober.run, the_bus.run, workflows.run):
                tasks.create_task(run(stop))
            cores = Cores(clock, store, reg, prober, the_bus, workflows, checker, changes)
            try:
                await cores.settle()
                yield cores
            finally:
                stop.set()
                the_bus.close()
                reg.feed.close()
    finally:
        await store.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def core_url(tmp_path: Path) -> str:
    # synchronous=normal: what these tests check is timing, not durability across power cuts.
    return f"sqlite:///{tmp_path / 'cp.db'}?synchronous=normal"


@pytest.fixture
async def cores(core_url: str, clock: FakeClock) -> AsyncIterator[Cores]:
    """The cores with default settings, on a fresh store, their clock at 0."""
    async with running_cores(core_url, clock) as running:
        yield running
