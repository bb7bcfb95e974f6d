"""The control plane's Prometheus registry: every collector, and the hooks the cores call.

The cores count with plain ints and know nothing of Prometheus; here their counts become metric
families at scrape time, and their hooks (a step ended, a task was handed out, a commit, a probe)
feed the histograms. Some values need the store (a consumer's backlog beyond the memory tail, and,
with replicas, processes by state and the shared logs' heads): `refresh` reads them before a scrape.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from control_plane.core.bus.bus import Bus
from control_plane.core.registry import Prober, Registry
from control_plane.core.workflow.workflows import Workflows
from control_plane.observability.bus_metrics import BusCollector
from control_plane.observability.collectors import ProbeMetrics, RegistryCollector
from control_plane.observability.store_metrics import CommitHistograms, StoreCollector
from control_plane.observability.workflow_metrics import WorkflowCollector, WorkflowHistograms
from control_plane.storage import Store

logger = logging.getLogger(__name__)

Refresh = Callable[[], Awaitable[None]]
# A scrape waits at most this long for the values read from the store; past it, older ones are shown.
REFRESH_TIMEOUT_S = 5.0


@dataclass(slots=True)
class Metrics:
    """One control plane's metrics (tests run several control planes in one process, so never global)."""

    registry: CollectorRegistry
    refreshers: list[Refresh] = field(default_factory=list)

    async def refresh(self) -> None:
        """Read what the collectors need from the store; a failure, or the time running out, leaves the
        previous values (a scrape must answer within Prometheus's timeout, 10 s by default)."""
        try:
            async with asyncio.timeout(REFRESH_TIMEOUT_S):
                for refresher in self.refreshers:
                    try:
                        await refresher()
                    except Exception as exc:
                        logger.warning("metrics: %s failed: %s", _name(refresher), exc)
        except TimeoutError:
            logger.warning(
                "metrics: reading from the store took over %.0f s; showing older values", REFRESH_TIMEOUT_S
            )


def _name(refresher: Refresh) -> str:
    inner = getattr(refresher, "func", refresher)  # functools.partial
    return str(getattr(inner, "__qualname__", refresher))


def build_metrics(
    registry: Registry, prober: Prober, bus: Bus, workflows: Workflows, store: Store
) -> Metrics:
    """Register every collector and attach the histogram hooks to the cores."""
    metrics = CollectorRegistry()
    ProcessCollector(registry=metrics)
    PlatformCollector(registry=metrics)
    GCCollector(registry=metrics)
    metrics.register(RegistryCollector(registry))
    prober.observer = ProbeMetrics(metrics).observe
    bus_collector = BusCollector(bus)
    metrics.register(bus_collector)
    workflow_collector = WorkflowCollector(workflows)
    metrics.register(workflow_collector)
    histograms = WorkflowHistograms(metrics)
    workflows.stats.step_observer = histograms.step_ended
    workflows.dispatcher.on_handed = histograms.task_handed
    store_collector = StoreCollector(store, bus, registry)
    metrics.register(store_collector)
    store.stats.on_commit = CommitHistograms(metrics).committed
    refreshers = [bus_collector.refresh, workflow_collector.refresh, store_collector.refresh]
    return Metrics(metrics, [*refreshers, functools.partial(histograms.prepare, workflows)])
