"""The definition model: what a validated, compiled workflow definition holds, as the engine reads it."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from control_plane.core.workflow.expressions import Expression
from control_plane.core.workflow.input_schema import InputSchema


class OnFailure(StrEnum):
    """What a task step that failed for good does to its process."""

    COMPENSATE = "compensate"  # compensate the completed steps (or fail, when there are none): the default
    INCIDENT = "incident"  # stay RUNNING, the step in INCIDENT, until an operator retries, skips or fails it


class StepKind(StrEnum):
    """What a step does; exactly one per step."""

    TASK = "task"
    CHOICE = "choice"
    PARALLEL = "parallel"
    WAIT_SIGNAL = "wait_signal"
    SLEEP = "sleep"
    CALL = "call"
    MAP = "map"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a failed task attempt is tried again: Temporal's policy, with attempts bounded."""

    max_attempts: int = 3
    initial_interval_s: float = 1.0
    backoff: float = 2.0
    max_interval_s: float = 100.0
    non_retryable: frozenset[str] = frozenset()

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after attempt `attempt` (1-based) failed, before attempt + 1 starts."""
        try:
            delay = self.initial_interval_s * self.backoff ** max(attempt - 1, 0)
        except OverflowError:
            delay = math.inf
        return min(delay, self.max_interval_s)

    def retries(self, attempt: int, error_code: str) -> bool:
        """Whether attempt `attempt`, failed with `error_code`, is followed by another."""
        return attempt < self.max_attempts and error_code not in self.non_retryable


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """A task for a worker of `service`: a step's `task`, or its `compensate`."""

    service: str
    task_type: str
    version: str
    input: Mapping[str, Any] | Expression | None
    retry: RetryPolicy
    timeout_s: float | None
    heartbeat_timeout_s: float | None


@dataclass(frozen=True, slots=True)
class CallSpec:
    """A `call` step: a process of another definition, started with mapped input and waited for."""

    definition: str
    version: str  # a version or range of the called definition ("" for its latest)
    input: Mapping[str, Any] | Expression | None


@dataclass(frozen=True, slots=True)
class MapSpec:
    """A `map` step: `steps` run once per item of the CEL list `items`, at most `max_concurrency` at once.

    The step fails once more items failed than tolerated: more than `tolerated_failures`, or more than
    `tolerated_failure_percent` of the items (None: that bound does not apply; both None: none may fail).
    """

    items: Expression
    max_concurrency: int
    tolerated_failures: int | None
    tolerated_failure_percent: float | None
    steps: tuple[Step, ...]

    def tolerates(self, failed: int, total: int) -> bool:
        """Whether `failed` failed items out of `total` still let the map step complete."""
        if self.tolerated_failures is None and self.tolerated_failure_percent is None:
            return failed == 0
        if self.tolerated_failures is not None and failed > self.tolerated_failures:
            return False
        percent = self.tolerated_failure_percent
        return percent is None or failed * 100 <= percent * total


@dataclass(frozen=True, slots=True)
class Branch:
    """A branch of a choice (taken when `when` holds; None is the default) or of a parallel step."""

    when: Expression | None
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a definition, at any depth; `parent` is the id of the choice/parallel step around it."""

    id: str
    kind: StepKind
    task: TaskSpec | None = None
    compensate: TaskSpec | None = None
    branches: tuple[Branch, ...] = ()
    signal: str = ""
    subject: str = ""
    correlate: Expression | None = None
    wait_timeout_s: float | None = None
    sleep_s: float = 0.0
    parent: str = ""
    call: CallSpec | None = None
    map: MapSpec | None = None
    on_failure: OnFailure | None = None  # None: the definition's


@dataclass(frozen=True, slots=True)
class Definition:
    """A validated, compiled definition; `spec` is the parsed document and `digest` its content hash."""

    name: str
    description: str
    steps: tuple[Step, ...]
    input_schema: Mapping[str, Any] | None
    output: Mapping[str, Any] | Expression | None
    timeout_s: float | None
    spec: dict[str, Any]
    digest: str
    on_failure: OnFailure = OnFailure.COMPENSATE
    search_attributes: Mapping[str, Expression] = field(default_factory=lambda: MappingProxyType({}))
    _order: tuple[Step, ...] = field(init=False, compare=False, repr=False)
    _index: Mapping[str, Step] = field(init=False, compare=False, repr=False)
    _input: InputSchema | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        order = tuple(_depth_first(self.steps))
        object.__setattr__(self, "_order", order)
        object.__setattr__(self, "_index", MappingProxyType({step.id: step for step in order}))
        object.__setattr__(
            self, "_input", None if self.input_schema is None else InputSchema(self.input_schema)
        )

    def step(self, step_id: str) -> Step:
        """The step `step_id`, nested ones included; KeyError when there is none."""
        return self._index[step_id]

    def failure_policy(self, step: Step) -> OnFailure:
        """What a failure for good of `step` does: its own `on_failure`, else the definition's."""
        return step.on_failure or self.on_failure

    def all_steps(self) -> list[Step]:
        """Every step, depth-first in document order."""
        return list(self._order)

    def check_input(self, value: Any) -> None:
        """Refuse a process input that does not match `input_schema`, naming the errors found."""
        if self._input is not None:
            self._input.check(value)


def _depth_first(steps: tuple[Step, ...]) -> Iterator[Step]:
    for step in steps:
        yield step
        for branch in step.branches:
            yield from _depth_first(branch.steps)
        if step.map is not None:
            yield from _depth_first(step.map.steps)
