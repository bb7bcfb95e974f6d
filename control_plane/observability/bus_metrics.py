"""Bus metrics: the Bus's own counters and its durable consumers' state, read when Prometheus asks.

Messages are labelled by their subject's first token (capped, see core.bus.stats), consumers by
name for durable ones only: both bounded by configuration, whatever the traffic.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from control_plane.core.bus.bus import Bus, ConsumerView


class BusCollector(Collector):
    """Published and delivered messages and bytes, consumer lag and acks pending, subscribers, gaps."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._views: list[ConsumerView] = []

    async def refresh(self) -> None:
        """Read the durable consumers' positions (their backlog may have to be counted in the store)."""
        self._views = await self._bus.consumers(include_ephemeral=False)

    def collect(self) -> Iterator[Metric]:
        """Every Bus family; consumers as of the last `refresh`."""
        stats = self._bus.stats
        # Both directions show every token seen, delivered or not yet: zero rather than nothing.
        tokens = sorted(stats.published.keys() | stats.delivered.keys())
        yield _by_token(
            "mgmt_bus_messages_published",
            "Messages committed to the log by this replica (publishes, dead letters, workflow events), "
            "by the first token of their subject.",
            stats.published,
            tokens,
        )
        yield _by_token(
            "mgmt_bus_published_bytes",
            "Bytes of message data committed by this replica, by the first token of the subject.",
            stats.published_bytes,
            tokens,
        )
        yield _by_token(
            "mgmt_bus_messages_delivered",
            "Messages handed to subscribers (every attempt), by the first token of their subject.",
            stats.delivered,
            tokens,
        )
        yield _by_token(
            "mgmt_bus_delivered_bytes",
            "Bytes of message data handed to subscribers, by the first token of the subject.",
            stats.delivered_bytes,
            tokens,
        )
        yield GaugeMetricFamily(
            "mgmt_bus_log_sequence", "The last log sequence visible here.", value=self._bus.log.last_sequence
        )
        views = self._views
        ack_pending = GaugeMetricFamily(
            "mgmt_bus_consumer_ack_pending",
            "Messages delivered to a durable consumer and not yet acknowledged.",
            labels=["consumer"],
        )
        lag = GaugeMetricFamily(
            "mgmt_bus_consumer_lag_messages",
            "Messages of a durable consumer's subjects not yet settled: not yet delivered, plus "
            "delivered and awaiting their ack.",
            labels=["consumer"],
        )
        for view in views:
            ack_pending.add_metric([view.config.name], view.num_ack_pending)
            lag.add_metric([view.config.name], view.num_pending + view.num_ack_pending)
        yield ack_pending
        yield lag
        durable = {view.config.name for view in views}
        yield _by_consumer(
            "mgmt_bus_consumer_redeliveries",
            "Deliveries sent again (ack deadline passed, or nacked), by durable consumer "
            "(_ephemeral: every other consumer).",
            stats.redeliveries,
            durable,
        )
        yield _by_consumer(
            "mgmt_bus_consumer_dead_letters",
            "Deliveries moved to the dead-letter subject, by durable consumer (_ephemeral: every other).",
            stats.dead_letters,
            durable,
        )
        on_durable, on_ephemeral = self._bus.subscribers()
        subscribers = GaugeMetricFamily(
            "mgmt_bus_subscribers",
            "Subscribe streams open on this replica, by the kind of consumer they read.",
            labels=["kind"],
        )
        subscribers.add_metric(["durable"], on_durable)
        subscribers.add_metric(["ephemeral"], on_ephemeral)
        yield subscribers
        yield CounterMetricFamily(
            "mgmt_bus_gaps",
            "Gap markers sent: an at-most-once subscriber fell too far behind and skipped ahead.",
            value=stats.gaps,
        )
        yield CounterMetricFamily(
            "mgmt_bus_gap_skipped_messages",
            "Messages skipped by at-most-once subscribers that fell too far behind.",
            value=stats.gap_messages,
        )


def _by_token(
    name: str, documentation: str, counts: dict[str, int], tokens: list[str]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=["first_token"])
    for token in tokens:
        family.add_metric([token], counts.get(token, 0))
    return family


def _by_consumer(
    name: str, documentation: str, counts: dict[str, int], durable: set[str]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=["consumer"])
    for consumer in sorted(durable | set(counts)):
        family.add_metric([consumer], counts.get(consumer, 0))
    return family
