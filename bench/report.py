"""Output of a run: the printed table, and bench/results.json merged with earlier figures."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.figures import Figure, GroupResult

RESULTS = Path(__file__).resolve().parent / "results.json"


def format_value(value: float) -> str:
    """A figure's value, as precise as it is meaningful: whole units from 100 up, else 3 significant digits."""
    # 3 digits, not 2 decimals: a ratio of 0.596 must not print as 0.60 next to "short".
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:#.3g}"


def table(results: Sequence[GroupResult]) -> str:
    """The setup line of each group, then one row per figure: name, value, unit, target, pass/short."""
    lines = [f"{result.group}: {result.setup}" for result in results]
    rows = [("name", "value", "unit", "target", "")]
    for result in results:
        for figure in result.figures:
            target = figure.target
            rows.append(
                (
                    figure.name,
                    format_value(figure.value),
                    figure.unit,
                    str(target) if target else "",
                    ("pass" if target.met(figure.value) else "short") if target else "",
                )
            )
    widths = [max(len(row[column]) for row in rows) for column in range(5)]
    lines.append("")
    for row in rows:
        name, value, unit, bound, verdict = row
        line = (
            f"{name:<{widths[0]}}  {value:>{widths[1]}}  {unit:<{widths[2]}}  {bound:<{widths[3]}}  {verdict}"
        )
        lines.append(line.rstrip())
    return "\n".join(lines)


def _entry(figure: Figure) -> dict[str, Any]:
    return {"name": figure.name, "value": round(figure.value, 4), "unit": figure.unit}


def merge_results(
    path: Path, group_order: Sequence[str], ran: Iterable[str], figures: Sequence[Figure]
) -> int:
    """Write `figures` to `path`, keeping earlier entries of the groups that did not run; returns the count.

    The entries of a group that ran are all replaced, so a renamed figure leaves no stale entry.
    """
    ran_groups = set(ran)
    kept: list[dict[str, Any]] = []
    if path.exists():
        kept = [
            entry
            for entry in json.loads(path.read_text())
            if entry["name"].partition(".")[0] not in ran_groups
        ]
    entries = kept + [_entry(figure) for figure in figures]
    rank = {group: index for index, group in enumerate(group_order)}
    # Stable: within a group the measured order stays; unknown groups go last.
    entries.sort(key=lambda entry: rank.get(entry["name"].partition(".")[0], len(rank)))
    partial = path.with_suffix(".json.tmp")
    partial.write_text(json.dumps(entries, indent=2) + "\n")
    os.replace(partial, path)
    return len(entries)
