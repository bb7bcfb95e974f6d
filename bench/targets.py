"""The target table of issue 18: every figure it names, computed from one run, with met / not met.

Each row is a figure of results.json or the ratio of two figures of the same run, because machines
here differ by up to 2x from one day to the next: only ratios of figures taken side by side compare.
`python -m bench.targets` prints the table from bench/results.json (whose figures may come from
different runs when groups were run apart); a full `make bench` prints it from its own figures.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.figures import Target
from bench.report import RESULTS, format_value


@dataclass(frozen=True, slots=True)
class Row:
    """A figure of the table: `name`, or `name / divisor` when the table asks for a ratio of two figures."""

    name: str
    target: Target
    divisor: str | None = None

    @property
    def label(self) -> str:
        """The figure as the issue writes it."""
        return self.name if self.divisor is None else f"{self.name} / {self.divisor}"

    def value(self, figures: Mapping[str, float]) -> float | None:
        """The row's value from `figures`, or None when a figure it needs was not measured."""
        value = figures.get(self.name)
        if value is None or self.divisor is None:
            return value
        divisor = figures.get(self.divisor)
        return None if not divisor else value / divisor


TABLE: tuple[Row, ...] = (
    Row("workflow.vs_restate_100", Target(2.0, at_least=True)),
    Row("workflow.vs_restate_1", Target(1.5, at_least=True)),
    Row("workflow.cp_cpu_per_step_vs_echo_call", Target(1.7, at_least=False)),
    Row("workflow.step_p99_ms_half_load", Target(10.0, at_least=False)),
    Row("workflow.rss_mb_1m_waiting", Target(1500, at_least=False)),
    Row("bus.amo_1sub_vs_nats", Target(0.5, at_least=True)),
    Row("bus.alo_vs_js_fsync", Target(3.0, at_least=True)),
    Row("bus.p99_ms_at_1000", Target(3.0, at_least=False), divisor="baseline.unary_p99_ms_at_1000"),
    Row("scale.pg1_vs_sqlite1_steps", Target(0.75, at_least=True)),
    Row("registry.lookup_vs_echo", Target(0.6, at_least=True)),
    Row("registry.watch_p99_ms", Target(5.0, at_least=False)),
)


def table(figures: Mapping[str, float]) -> str:
    """One line per row of `TABLE`: figure, value, target, and `met`, `NOT MET` or `not measured`."""
    rows = [("issue 18 target", "value", "target", "")]
    for row in TABLE:
        value = row.value(figures)
        if value is None:
            rows.append((row.label, "-", str(row.target), "not measured"))
        else:
            verdict = "met" if row.target.met(value) else "NOT MET"
            rows.append((row.label, format_value(value), str(row.target), verdict))
    widths = [max(len(r[column]) for r in rows) for column in range(4)]
    lines = [
        f"{label:<{widths[0]}}  {value:>{widths[1]}}  {bound:<{widths[2]}}  {verdict}".rstrip()
        for label, value, bound, verdict in rows
    ]
    return "\n".join(lines)


def load(path: Path) -> dict[str, float]:
    """The figures of a results file, by name."""
    return {entry["name"]: float(entry["value"]) for entry in json.loads(path.read_text())}


def main() -> None:
    """Print the table from a results file (default bench/results.json)."""
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS
    print(table(load(path)))


if __name__ == "__main__":
    main()
