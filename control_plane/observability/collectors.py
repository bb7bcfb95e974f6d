"""Scrape-time collectors: gauges read from the cores' own state when Prometheus asks.

Reading state at scrape time costs nothing on the hot paths and is exact (no counter to keep in
step with the truth). Labels are bounded by configuration, never by traffic: service names, health
states, never an instance, process or message id.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from control_plane.core.registry import Registry


class RegistryCollector(Collector):
    """Instances by service and health, the revision and the connected watchers."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One sample per service and health state, plus the revision and watcher count."""
        instances = GaugeMetricFamily(
            "mgmt_registry_instances",
            "Registered instances by service and health.",
            labels=["service", "health"],
        )
        counts = Counter((i.service, i.health.value) for i in self._registry.instances())
        for (service, health), count in sorted(counts.items()):
            instances.add_metric([service, health], count)
        yield instances
        yield GaugeMetricFamily(
            "mgmt_registry_revision", "The registry's current revision.", value=self._registry.feed.revision
        )
        yield GaugeMetricFamily(
            "mgmt_registry_watchers", "Open Watch streams.", value=self._registry.feed.watcher_count
        )
