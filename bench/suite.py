"""The table of benchmark groups, and the runner that runs them one after another.

Adding a group (`bus`, `workflow`, `peers`, `scale`) is one module with `async def run(RunContext) ->
GroupResult` and one line in `GROUPS`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from bench import baseline, bus, bus_nats, console, mesh, peers, registry, scale, workflow
from bench.figures import GroupResult, Load, RunContext

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Group:
    """A named benchmark group; `requires` lists groups whose figures it needs from the same run."""

    name: str
    run: Callable[[RunContext], Awaitable[GroupResult]]
    requires: tuple[str, ...] = ()


# Run order: a group comes after everything it requires.
GROUPS: tuple[Group, ...] = (
    Group(baseline.GROUP, baseline.run),
    Group(registry.GROUP, registry.run, requires=(baseline.GROUP,)),
    Group(bus_nats.GROUP, bus_nats.run),
    Group(bus.GROUP, bus.run, requires=(baseline.GROUP, bus_nats.GROUP)),
    Group(workflow.GROUP, workflow.run, requires=(baseline.GROUP,)),
    # Right after the workflow group: its ratios divide that run's figures by the peers'.
    Group(peers.GROUP, peers.run, requires=(workflow.GROUP,)),
    Group(scale.GROUP, scale.run),
    Group(console.GROUP, console.run),
    Group(mesh.GROUP, mesh.run),
)
NAMES = tuple(group.name for group in GROUPS)


class UnknownGroupError(ValueError):
    """A group name that is not in `GROUPS`."""


def resolve(names: Sequence[str]) -> list[Group]:
    """The groups to run for `names` (all when empty), with what they require, in table order."""
    by_name = {group.name: group for group in GROUPS}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise UnknownGroupError(f"unknown benchmark group(s) {', '.join(unknown)}; known: {', '.join(NAMES)}")
    wanted: set[str] = set()
    pending = list(names or NAMES)
    while pending:
        name = pending.pop()
        if name not in wanted:
            wanted.add(name)
            pending += by_name[name].requires
    return [group for group in GROUPS if group.name in wanted]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a run produced: the groups that finished, and those that failed or could not run."""

    results: list[GroupResult]
    failed: list[str]


async def run(groups: Sequence[Group], load: Load) -> Outcome:
    """Run `groups` one at a time (each stops its children before the next starts).

    A group that fails does not stop the run: the groups that do not need its figures still run, so
    that one peer's hiccup (a client child that would not stop) costs its own figures only. Those that
    need them are left out, named in the log, and the run counts as failed."""
    context = RunContext(load)
    results: list[GroupResult] = []
    failed: list[str] = []
    for group in groups:
        missing = [name for name in group.requires if name in failed]
        if missing:
            logger.error(
                "benchmark group %s not run: it needs the figures of %s", group.name, ", ".join(missing)
            )
            failed.append(group.name)
            continue
        logger.info("== %s ==", group.name)
        started = time.perf_counter()
        try:
            result = await group.run(context)
        except Exception:
            logger.exception("benchmark group %s failed", group.name)
            failed.append(group.name)
            continue
        logger.info("== %s done in %.1f s ==", group.name, time.perf_counter() - started)
        results.append(result)
        context.measured.update((figure.name, figure) for figure in result.figures)
    return Outcome(results, failed)
