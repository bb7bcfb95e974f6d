"""What a benchmark produces: figures, their targets, and the context a group runs in."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Target:
    """A bound a figure must meet: at least `bound` (higher is better) or at most `bound`."""

    bound: float
    at_least: bool

    def met(self, value: float) -> bool:
        """Whether `value` meets the bound."""
        return value >= self.bound if self.at_least else value <= self.bound

    def __str__(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.bound:g}"


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured value, named `group.what_unit` as it appears in results.json."""

    name: str
    value: float
    unit: str
    target: Target | None = None

    @property
    def group(self) -> str:
        """The benchmark group the figure belongs to (the part of the name before the first dot)."""
        return self.name.partition(".")[0]


@dataclass(frozen=True, slots=True)
class Load:
    """How a closed-loop or streaming measurement runs: warm up, then count for a fixed duration.

    `repeats`: how many times the measurements compared with a peer (the workflow loops, the
    peers') run; their median is reported.
    """

    warmup_s: float = 1.0
    duration_s: float = 5.0
    in_flight: int = 50
    repeats: int = 3


@dataclass(frozen=True, slots=True)
class GroupResult:
    """What one group measured, and a line saying how (printed above the table)."""

    group: str
    setup: str
    figures: list[Figure]


@dataclass(slots=True)
class RunContext:
    """Shared by the groups of one run: the load shape and the figures measured so far."""

    load: Load
    measured: dict[str, Figure] = field(default_factory=dict)

    def figure(self, name: str) -> Figure:
        """A figure measured earlier in this run; KeyError names the missing dependency."""
        try:
            return self.measured[name]
        except KeyError:
            raise KeyError(f"{name} was not measured in this run; its group must run first") from None
