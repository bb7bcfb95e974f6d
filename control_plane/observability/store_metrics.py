"""Store metrics: commit latency and group-commit batch size as commits happen, the rest at scrape time.

On PostgreSQL, where replicas share the store, also whether this replica leads and how far its
in-memory views (the Bus log, the registry's revision) trail what the others committed.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from control_plane.core.bus.bus import Bus
from control_plane.core.registry import Registry
from control_plane.observability.instruments import HistogramFamily
from control_plane.storage import Store

# Seconds per shared commit: an fsync is a fraction of a millisecond on SSD, tens on a busy disk.
COMMIT_BUCKETS: tuple[float, ...] = (
    *(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
    *(2.5, 5.0),
)
# Writes per commit: the writer takes up to 512 at once.
BATCH_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0)


class StoreCollector(Collector):
    """Write queue, retried transactions, leadership and (replicas) follower lag."""

    def __init__(self, store: Store, bus: Bus, registry: Registry) -> None:
        self._store = store
        self._bus = bus
        self._registry = registry
        self._lag = {"bus": 0, "registry": 0}

    async def refresh(self) -> None:
        """With replicas: compare the heads of the shared logs with what this replica has applied."""
        if not self._store.cluster.shared:
            return  # nobody else writes: nothing to follow, the lag stays 0
        _, last_sequence = await self._store.bus_bounds()
        revision = await self._store.registry_revision()
        # Read after the store: what this replica applied meanwhile makes the lag smaller, never negative.
        self._lag = {
            "bus": max(0, last_sequence - self._bus.log.last_sequence),
            "registry": max(0, revision - self._registry.feed.revision),
        }

    def collect(self) -> Iterator[Metric]:
        """Every store family; follower lag as of the last `refresh`."""
        store = self._store
        yield GaugeMetricFamily(
            "mgmt_store_write_queue_depth",
            "Writes submitted and not yet committed (the group-commit queue; 4,096 at most).",
            value=store.pending_writes,
        )
        yield CounterMetricFamily(
            "mgmt_store_transactions_retried",
            "Workflow transitions run again after losing a race with another replica.",
            value=store.stats.transactions_retried,
        )
        yield GaugeMetricFamily(
            "mgmt_store_leader",
            "1 when this replica leads (lease expiry, probes, retention, timers of dead replicas); "
            "always 1 on SQLite.",
            value=1 if store.cluster.leader else 0,
        )
        lag = GaugeMetricFamily(
            "mgmt_store_follower_lag",
            "Entries other replicas committed that this one has not applied yet: Bus messages "
            "(log=bus), registry changes (log=registry); always 0 on SQLite.",
            labels=["log"],
        )
        for log, behind in sorted(self._lag.items()):
            lag.add_metric([log], behind)
        yield lag


class CommitHistograms:
    """Duration and size of each group commit, observed on the store's writer thread.

    Only that thread writes these series (see instruments: no lock needed); a scrape reads them."""

    def __init__(self, metrics: CollectorRegistry) -> None:
        seconds = HistogramFamily(
            "mgmt_store_commit_duration_seconds",
            "One shared commit, from BEGIN to COMMIT, fsync included.",
            (),
            COMMIT_BUCKETS,
        )
        writes = HistogramFamily(
            "mgmt_store_commit_batch_size",
            "Writes (callers' transactions) carried by one shared commit.",
            (),
            BATCH_BUCKETS,
        )
        metrics.register(seconds)
        metrics.register(writes)
        # Unlabelled: the one series exists (at zero) from the start, as prometheus_client's would.
        self._seconds = seconds.child()
        self._writes = writes.child()

    def committed(self, seconds: float, writes: int) -> None:
        """One commit."""
        self._seconds.observe(seconds)
        self._writes.observe(writes)
