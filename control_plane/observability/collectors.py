"""Registry metrics: gauges read from the registry's own state when Prometheus asks, and probe results.

Reading state at scrape time costs nothing on the hot paths and is exact (no counter to keep in
step with the truth). Labels are bounded by configuration, never by traffic: service names, health
states, never an instance, process or message id.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from control_plane.core.registry import Registry
from control_plane.models import DownReason
from control_plane.observability.instruments import CounterFamily, HistogramFamily

# Seconds; a probe is one gRPC health check, bounded by its timeout (at most its interval).
PROBE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Reasons for which the registry removes an instance itself (a deregistration is the instance's own).
_EVICTIONS = (DownReason.LEASE_EXPIRED.value, DownReason.CRITICAL_TOO_LONG.value)


class RegistryCollector(Collector):
    """Instances by service and health, the revision, the connected watchers and the evictions."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        """One sample per service and health state, plus the revision, watchers and evictions."""
        instances = GaugeMetricFamily(
            "mgmt_registry_instances",
            "Registered instances by service and health.",
            labels=["service", "health"],
        )
        counts = Tally((i.service, i.health.value) for i in self._registry.instances())
        for (service, health), count in sorted(counts.items()):
            instances.add_metric([service, health], count)
        yield instances
        yield GaugeMetricFamily(
            "mgmt_registry_revision", "The registry's current revision.", value=self._registry.feed.revision
        )
        yield GaugeMetricFamily(
            "mgmt_registry_watchers", "Open Watch streams.", value=self._registry.feed.watcher_count
        )
        evictions = CounterMetricFamily(
            "mgmt_registry_evictions",
            "Instances this replica removed: its lease lapsed (lease_expired) or it stayed critical "
            "too long (critical_too_long).",
            labels=["service", "reason"],
        )
        counted = dict(self._registry.evictions)
        services = {service for service, _ in counted} | {service for service, _ in counts}
        for service in sorted(services):
            for reason in _EVICTIONS:
                evictions.add_metric([service, reason], counted.get((service, reason), 0))
        yield evictions


class ProbeMetrics:
    """Health probe results and durations by service, fed by the prober as each probe ends."""

    def __init__(self, metrics: CollectorRegistry) -> None:
        self._results = CounterFamily(
            "mgmt_registry_probes",
            "Health probes run by this replica, by service and result (passing, critical).",
            ["service", "result"],
        )
        self._seconds = HistogramFamily(
            "mgmt_registry_probe_duration_seconds",
            "How long a health probe took to answer (or time out), by service.",
            ["service"],
            PROBE_BUCKETS,
        )
        metrics.register(self._results)
        metrics.register(self._seconds)

    def observe(self, service: str, ok: bool, seconds: float) -> None:
        """One probe of an instance of `service`."""
        self._results.child(service, "passing" if ok else "critical").value += 1
        self._seconds.child(service).observe(seconds)
