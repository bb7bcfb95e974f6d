"""Counters and histograms that cost the hot path an attribute update, exported when Prometheus asks.

prometheus_client's instruments take a lock per update and walk the buckets one by one: a
histogram observation cost 1.2 us and a `.labels(...)` lookup 1.5 us more (measured in this
process). Here a series is a plain object whose owner keeps a reference to it: a count is
`cell.value += 1`, an observation a `bisect` and two additions (about 0.25 us). Each family is a
Collector that builds, at scrape time, the very samples prometheus_client's `Counter` and
`Histogram` export (`_total`, `_bucket`/`_count`/`_sum`, and `_created` unless
PROMETHEUS_DISABLE_CREATED_SERIES is set), in the order the series were first made.

Not locked: each series is written by one thread only (the event loop's, or the store writer's for
commits) and a scrape that reads it meanwhile sees an observation in its buckets a moment before
its sum, as prometheus_client's separately locked values may show too.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client import metrics as prometheus_metrics
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# How prometheus_client writes a bucket's `le` ("0.005", "+Inf"); untyped there.
_le_text: Callable[[float], str] = floatToGoString


def _created_series() -> bool:
    """Whether `_created` samples are exported: prometheus_client's switch (its env var or its
    `disable_created_metrics()`), read at each scrape as its own instruments do."""
    return bool(getattr(prometheus_metrics, "_use_created", True))


class Count:
    """One counter series: the owner adds to `value` directly."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0
        self.created = time.time()


class Buckets:
    """One histogram series: observation counts per bucket (not cumulative) and their sum."""

    __slots__ = ("_bounds", "counts", "created", "total")

    def __init__(self, bounds: list[float]) -> None:
        self._bounds = bounds
        # counts[i]: observations v with bounds[i - 1] < v <= bounds[i] (the last bound is +Inf).
        self.counts = [0] * len(bounds)
        self.total = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        """One observation: the first bucket whose upper bound is >= `value`, as Prometheus's `le`."""
        self.counts[bisect_left(self._bounds, value)] += 1
        self.total += value


Series = TypeVar("Series", Count, Buckets)


class _Family(Collector, Generic[Series]):
    """A family's series by label values, made on first use by `new` (a family's kind of series)."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], new: Callable[[], Series]
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._new: Callable[[], Series] = new
        self._children: dict[tuple[str, ...], Series] = {}

    def child(self, *labels: str) -> Series:
        """The series of `labels` (made empty the first time; an unlabelled family: `child()`)."""
        found = self._children.get(labels)
        if found is None:
            if len(labels) != len(self._labelnames):
                raise ValueError(f"{self._name}: labels {self._labelnames}, got {labels}")
            found = self._children[labels] = self._new()
        return found


class CounterFamily(_Family[Count]):
    """A labelled counter; `child(...)` once per label set, then `child.value += n` on the hot path."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        # prometheus_client names a counter family without `_total` and adds it to the sample.
        super().__init__(name.removesuffix("_total"), documentation, labelnames, Count)

    def collect(self) -> Iterator[Metric]:
        """The family with one `_total` (and `_created`) sample per series."""
        metric = Metric(self._name, self._documentation, "counter")
        created = _created_series()
        names = self._labelnames
        total, made = self._name + "_total", self._name + "_created"
        for labels, cell in list(self._children.items()):
            tags = dict(zip(names, labels, strict=True))
            metric.add_sample(total, tags, float(cell.value))
            if created:
                metric.add_sample(made, tags, cell.created)
        yield metric


class HistogramFamily(_Family[Buckets]):
    """A (possibly labelled) histogram; `child(...)` once per label set, then `child.observe(v)`."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> None:
        bounds = [float(b) for b in buckets]
        if bounds != sorted(bounds):
            raise ValueError(f"{name}: buckets not in increasing order")
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        super().__init__(name, documentation, labelnames, lambda: Buckets(bounds))
        self._bounds = bounds
        self._le = [_le_text(b) for b in bounds]

    def collect(self) -> Iterator[Metric]:
        """The family: cumulative `_bucket` samples by `le`, then `_count`, `_sum` (and `_created`)."""
        metric = Metric(self._name, self._documentation, "histogram")
        created = _created_series()
        name = self._name
        bucket, count, total, made = name + "_bucket", name + "_count", name + "_sum", name + "_created"
        for labels, series in list(self._children.items()):
            tags = dict(zip(self._labelnames, labels, strict=True))
            counts, observed_sum = list(series.counts), series.total
            running = 0.0
            for le, n in zip(self._le, counts, strict=True):
                running += n
                metric.add_sample(bucket, {**tags, "le": le}, running)
            metric.add_sample(count, tags, running)
            if self._bounds[0] >= 0:  # as prometheus_client: no sum when negative values are expected
                metric.add_sample(total, tags, observed_sum)
            if created:
                metric.add_sample(made, tags, series.created)
        yield metric
