"""The definition parser: a YAML or JSON document, validated whole (every problem with its path and line), compiled to a `Definition`."""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from control_plane.core.bus.subjects import check_pattern
from control_plane.core.validate import check_name
from control_plane.core.versions import parse_version_filter
from control_plane.core.workflow.definition import (
    Branch,
    CallSpec,
    Definition,
    MapSpec,
    OnFailure,
    RetryPolicy,
    Step,
    StepKind,
    TaskSpec,
)
from control_plane.core.workflow.documents import Path, field_path, load_document
from control_plane.core.workflow.durations import format_duration, parse_duration
from control_plane.core.workflow.expressions import (
    MESSAGE_VARIABLES,
    VARIABLES,
    Expression,
    ExpressionError,
    ExpressionRefused,
    compile_expression,
)
from control_plane.core.workflow.input_schema import check_schema
from control_plane.errors import FieldViolation, InvalidArgument

DAY = 86400.0
TIMEOUT_MIN, TIMEOUT_MAX = 1.0, 30 * DAY
INTERVAL_MAX = DAY
SLEEP_MAX = 30 * DAY
MAX_ATTEMPTS = 100
MAX_BACKOFF = 100.0
DESCRIPTION_MAX = 4096
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,127}")
_STEP_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")

_TASK_KEYS = frozenset({"service", "type", "version"})
_COMPENSATE_KEYS = _TASK_KEYS | {"input", "retry", "timeout", "heartbeat_timeout"}
_RETRY_KEYS = frozenset({"max_attempts", "initial_interval", "backoff", "max_interval", "non_retryable"})
_STEP_KEYS: dict[StepKind, frozenset[str]] = {
    StepKind.TASK: frozenset(
        {"id", "task", "input", "retry", "timeout", "heartbeat_timeout", "compensate", "on_failure"}
    ),
    StepKind.CHOICE: frozenset({"id", "choice", "default"}),
    StepKind.PARALLEL: frozenset({"id", "parallel"}),
    StepKind.WAIT_SIGNAL: frozenset({"id", "wait_signal"}),
    StepKind.SLEEP: frozenset({"id", "sleep"}),
    StepKind.CALL: frozenset({"id", "call"}),
    StepKind.MAP: frozenset({"id", "map"}),
}
_CALL_KEYS = frozenset({"definition", "version", "input"})
_MAP_KEYS = frozenset(
    {"items", "max_concurrency", "tolerated_failures", "tolerated_failure_percent", "steps"}
)
MAX_CONCURRENCY = 1000
# What the steps inside a map step see besides input and steps: the item and its position.
ITEM_VARIABLES = VARIABLES | {"item", "index"}
_DOCUMENT_KEYS = frozenset(
    {"name", "description", "input_schema", "timeout", "steps", "output", "on_failure", "search_attributes"}
)
MAX_SEARCH_ATTRIBUTES = 16
_ATTRIBUTE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


def parse_definition(source: str, pause: Callable[[], None] = lambda: None) -> Definition:
    """Parse and validate a YAML or JSON definition; InvalidArgument lists every problem with its path.

    `pause` is called between steps of the work (a worker thread gives the event loop the GIL there).
    """
    document, lines, problems = load_document(source)
    return _compile(document, lines, problems, None, pause)


def build_definition(
    document: dict[str, Any], digest: str, pause: Callable[[], None] = lambda: None
) -> Definition:
    """Compile a document that `parse_definition` accepted elsewhere (in a child process).

    Compiled CEL programs cannot cross processes, so the document is compiled again here; the YAML is
    not read again, and the digest is taken as given.
    """
    return _compile(document, {}, [], digest, pause)


def _compile(
    document: Any,
    lines: dict[Path, int],
    problems: list[FieldViolation],
    digest: str | None,
    pause: Callable[[], None],
) -> Definition:
    parser = _Parser(lines, problems, pause)
    definition = parser.document(document, digest)
    if parser.violations or definition is None:
        raise InvalidArgument(parser.violations)
    return definition


def canonical_digest(spec: Any) -> str:
    """Hex SHA-256 of the canonical JSON of `spec`: equal for equal content, whatever the formatting."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------------
# Validating and compiling


# Steps completed before a point of the document, as ranges of declaration order (depth-first, in
# document order): a step list adds the range of the ids declared in it so far to what its parent saw.
# A set per step instead grew with the document: quadratic time and memory for 6,000 steps.
_Available = tuple[tuple[int, int], ...]
_EVERY_STEP: _Available = ((0, 1 << 62),)


@dataclass(frozen=True, slots=True)
class _Scope:
    """What an expression may see: the step it belongs to and the steps completed before it."""

    step: str
    available: _Available
    ancestors: tuple[str, ...]
    variables: frozenset[str] = VARIABLES


@dataclass(frozen=True, slots=True)
class _Use:
    expression: Expression
    path: Path
    scope: _Scope


class _Parser:
    """One pass over the document collecting every violation; references are checked at the end."""

    def __init__(
        self, lines: dict[Path, int], problems: list[FieldViolation], pause: Callable[[], None]
    ) -> None:
        self.pause = pause
        self.lines = lines
        self.violations = list(problems)
        self.ids: dict[str, Path] = {}
        self.order: dict[str, int] = {}
        self.uses: list[_Use] = []
        self.maps: set[str] = set()  # ids of map steps
        self.item_owner: dict[str, str] = {}  # id of a step run once per item -> its map step

    # -- the document ------------------------------------------------------------------------------

    def document(self, document: Any, digest: str | None) -> Definition | None:
        if not isinstance(document, dict):
            self.error(
                ("source",), f"the document must be a mapping with name and steps, got {_kind(document)}"
            )
            return None
        if not self.json_compatible(document, ()):
            return None
        body = document
        self.mapping(body, (), _DOCUMENT_KEYS, {"name", "steps"})
        name = self.string(body, ("name",))
        if name and not _NAME.fullmatch(name):
            self.error(("name",), "must be 1-128 letters, digits, '_' or '-', starting with a letter")
        description = self.string(body, ("description",), required=False)
        if len(description) > DESCRIPTION_MAX:
            self.error(("description",), f"must be at most {DESCRIPTION_MAX} characters")
        schema = self.input_schema(body.get("input_schema"))
        timeout = self.duration(body, ("timeout",), TIMEOUT_MIN, TIMEOUT_MAX)
        steps = self.steps(body["steps"], ("steps",), (), ())[0] if "steps" in body else ()
        output = self.template(body.get("output"), ("output",), _Scope("", _EVERY_STEP, ()))
        on_failure = self.on_failure(body, ())
        attributes = self.search_attributes(body.get("search_attributes"))
        self.check_uses()
        if self.violations:
            return None
        return Definition(
            name=name,
            description=description,
            steps=steps,
            input_schema=schema,
            output=output,
            timeout_s=timeout,
            spec=document,
            digest=digest or canonical_digest(document),
            on_failure=on_failure or OnFailure.COMPENSATE,
            search_attributes=MappingProxyType(attributes),
        )

    def on_failure(self, body: dict[str, Any], path: Path) -> OnFailure | None:
        """A definition's or task step's `on_failure`; None when absent (or reported)."""
        if "on_failure" not in body:
            return None
        value = body["on_failure"]
        choices = [policy.value for policy in OnFailure]
        if value not in choices:
            self.error((*path, "on_failure"), f"must be one of {', '.join(choices)}, got {value!r}")
            return None
        return OnFailure(value)

    def search_attributes(self, value: Any) -> dict[str, Expression]:
        """`search_attributes`: name -> CEL over the input and any step's output, indexed for ListProcesses."""
        path: Path = ("search_attributes",)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, f"must be a map of attribute name to CEL expression, got {_kind(value)}")
            return {}
        if len(value) > MAX_SEARCH_ATTRIBUTES:
            self.error(path, f"at most {MAX_SEARCH_ATTRIBUTES} attributes")
        attributes: dict[str, Expression] = {}
        for name, text in value.items():
            if not _ATTRIBUTE.fullmatch(name):
                self.error((*path, name), "names are 1-64 letters, digits or '_', starting with a letter")
                continue
            # Any step may have completed when an attribute is evaluated: a missing one leaves it unset.
            expression = self.expression(text, (*path, name), _Scope("", _EVERY_STEP, ()))
            if expression is not None:
                attributes[name] = expression
        return attributes

    def input_schema(self, schema: Any) -> Mapping[str, Any] | None:
        path: Path = ("input_schema",)
        if schema is None:
            return None
        if not isinstance(schema, dict):
            self.error(path, f"must be a JSON Schema (a map), got {_kind(schema)}")
            return None
        for where, message in check_schema(schema, path):
            self.error(where, message)
        return schema

    # -- steps -------------------------------------------------------------------------------------

    def steps(
        self, value: Any, path: Path, available: _Available, ancestors: tuple[str, ...]
    ) -> tuple[tuple[Step, ...], set[str]]:
        """A list of steps run in order; returns them and every id they hold, nested ones included."""
        if not isinstance(value, list):
            self.error(path, f"must be a non-empty list of steps, got {_kind(value)}")
            return (), set()
        if not value:
            self.error(path, "must not be empty")
        parent = ancestors[-1] if ancestors else ""
        result: list[Step] = []
        ids: set[str] = set()
        start = len(self.order)
        for position, item in enumerate(value):
            earlier = (*available, (start, len(self.order)))  # the ids declared in this list so far
            step, step_ids = self.step(item, (*path, position), earlier, ancestors, parent)
            if step is not None:
                result.append(step)
            ids |= step_ids
        return tuple(result), ids

    def step(
        self, value: Any, path: Path, available: _Available, ancestors: tuple[str, ...], parent: str
    ) -> tuple[Step | None, set[str]]:
        self.pause()
        if not isinstance(value, dict):
            self.error(path, f"must be a step (a map with id and one of {_kinds()}), got {_kind(value)}")
            return None, set()
        step_id = self.step_id(value, path)
        ids = {step_id} if step_id else set()
        kinds = [kind for kind in StepKind if kind.value in value]
        if len(kinds) != 1:
            found = f"; found {' and '.join(kinds)}" if kinds else ""
            self.error(path, f"a step has exactly one of {_kinds()}{found}")
        keys = frozenset().union(*(_STEP_KEYS[kind] for kind in kinds or StepKind))
        kind = kinds[0] if kinds else None
        self.mapping(value, path, keys, {"id"}, wrong_kind=kind)
        if kind is None:
            return None, ids
        in_map = bool(parent) and parent in self.maps
        scope = _Scope(step_id, available, ancestors, ITEM_VARIABLES if in_map else VARIABLES)
        inner = (*ancestors, step_id)
        if in_map:
            self.item_owner[step_id] = parent
            if kind is not StepKind.TASK:
                self.error(path, f"the steps of a map step are task steps, not {kind} steps")
                return None, ids
            if "compensate" in value:
                self.error((*path, "compensate"), "a step run per item of a map step has no compensate")
        match kind:
            case StepKind.TASK:
                task = self.task(value, path, scope)
                compensate = None
                if "compensate" in value:
                    # A compensation runs after its step completed, so it may read that step's output.
                    itself = self.order.get(step_id, -1)
                    after = _Scope(step_id, (*available, (itself, itself + 1)), ancestors, scope.variables)
                    compensate = self.compensation(value["compensate"], (*path, "compensate"), after)
                on_failure = self.on_failure(value, path)
                step = Step(
                    step_id, kind, task=task, compensate=compensate, parent=parent, on_failure=on_failure
                )
                return step, ids
            case StepKind.CHOICE:
                branches, nested = self.choice(value, path, scope, inner)
                return Step(step_id, kind, branches=branches, parent=parent), ids | nested
            case StepKind.PARALLEL:
                branches, nested = self.parallel(value["parallel"], (*path, "parallel"), available, inner)
                return Step(step_id, kind, branches=branches, parent=parent), ids | nested
            case StepKind.WAIT_SIGNAL:
                return self.wait_signal(value["wait_signal"], (*path, "wait_signal"), scope, parent), ids
            case StepKind.SLEEP:
                sleep = self.duration(value, (*path, "sleep"), 0.0, SLEEP_MAX, exclusive_low=True)
                return Step(step_id, kind, sleep_s=sleep or 0.0, parent=parent), ids
            case StepKind.CALL:
                call = self.call(value["call"], (*path, "call"), scope)
                return Step(step_id, kind, call=call, parent=parent), ids
            case StepKind.MAP:
                spec, nested = self.map(value["map"], (*path, "map"), scope, inner)
                return Step(step_id, kind, map=spec, parent=parent), ids | nested

    def call(self, value: Any, path: Path, scope: _Scope) -> CallSpec | None:
        body = self.mapping(value, path, _CALL_KEYS, {"definition"})
        if body is None:
            return None
        name = self.string(body, (*path, "definition"))
        if name and not _NAME.fullmatch(name):
            self.error((*path, "definition"), "must be a definition name: 1-128 letters, digits, '_' or '-'")
        version = self.string(body, (*path, "version"), required=False).strip()
        if version and not version.isdigit():
            try:
                parse_version_filter(version)
                if not version.startswith(("<", ">", "=", "!", "~")):
                    raise ValueError(f"not a version or a version range: {version!r}")
            except ValueError as exc:
                self.error(
                    (*path, "version"),
                    f'{exc}; a definition version is a whole number (or a range: ">=2,<3")',
                )
        return CallSpec(name, version, self.template(body.get("input"), (*path, "input"), scope))

    def map(
        self, value: Any, path: Path, scope: _Scope, inner: tuple[str, ...]
    ) -> tuple[MapSpec | None, set[str]]:
        body = self.mapping(value, path, _MAP_KEYS, {"items", "steps"})
        if body is None:
            return None, set()
        if scope.step:
            self.maps.add(scope.step)
        if scope.variables is ITEM_VARIABLES:
            self.error(path, "a map step cannot run inside another map step")
        items = self.expression(body.get("items"), (*path, "items"), scope) if "items" in body else None
        concurrency = self.whole(
            body, (*path, "max_concurrency"), 1, MAX_CONCURRENCY, default=MAX_CONCURRENCY
        )
        failures = self.whole(body, (*path, "tolerated_failures"), 0, 1 << 31, default=None)
        percent = body.get("tolerated_failure_percent")
        if percent is not None and (
            isinstance(percent, bool) or not isinstance(percent, int | float) or not 0 <= percent <= 100
        ):
            self.error(
                (*path, "tolerated_failure_percent"), f"must be a number from 0 to 100, got {percent!r}"
            )
            percent = None
        steps: tuple[Step, ...] = ()
        nested: set[str] = set()
        if "steps" in body:
            # The items' steps see what the map step sees, plus item and index.
            steps, nested = self.steps(body["steps"], (*path, "steps"), scope.available, inner)
        if items is None or not steps:
            return None, nested
        return MapSpec(items, concurrency or MAX_CONCURRENCY, failures, percent, steps), nested

    def whole(
        self, body: dict[str, Any], path: Path, low: int, high: int, *, default: int | None
    ) -> int | None:
        """The whole number at `path` within [low, high], `default` when absent or wrong (reported)."""
        key = str(path[-1])
        if key not in body:
            return default
        value = body[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.error(path, f"must be a whole number from {low} to {high}, got {value!r}")
            return default
        return value

    def step_id(self, body: dict[str, Any], path: Path) -> str:
        step_id = self.string(body, (*path, "id"))
        if not step_id:
            return ""
        if not _STEP_ID.fullmatch(step_id):
            self.error((*path, "id"), "must be 1-64 letters, digits, '_' or '-', starting with a letter")
            return ""
        if step_id in self.ids:
            self.error(
                (*path, "id"), f"duplicate step id {step_id!r} (first at {field_path(self.ids[step_id])})"
            )
            return ""
        self.ids[step_id] = (*path, "id")
        self.order[step_id] = len(self.order)
        return step_id

    def task(self, body: dict[str, Any], path: Path, scope: _Scope) -> TaskSpec:
        spec = self.mapping(body["task"], (*path, "task"), _TASK_KEYS, {"service", "type"})
        return self.task_spec(spec or {}, (*path, "task"), body, path, scope)

    def compensation(self, value: Any, path: Path, scope: _Scope) -> TaskSpec | None:
        body = self.mapping(value, path, _COMPENSATE_KEYS, {"service", "type"})
        if body is None:
            return None
        return self.task_spec(body, path, body, path, scope)

    def task_spec(
        self, target: dict[str, Any], target_path: Path, body: dict[str, Any], path: Path, scope: _Scope
    ) -> TaskSpec:
        """A task from its `target` (service, type, version: a step's `task:` block, or a compensation
        itself) and the `body` that holds its input, retry and timeouts (the step, or the compensation)."""
        service, task_type, version = self.task_target(target, target_path)
        return TaskSpec(
            service=service,
            task_type=task_type,
            version=version,
            input=self.template(body.get("input"), (*path, "input"), scope),
            retry=self.retry(body.get("retry"), (*path, "retry")),
            timeout_s=self.duration(body, (*path, "timeout"), TIMEOUT_MIN, TIMEOUT_MAX),
            heartbeat_timeout_s=self.duration(body, (*path, "heartbeat_timeout"), TIMEOUT_MIN, TIMEOUT_MAX),
        )

    def task_target(self, body: dict[str, Any], path: Path) -> tuple[str, str, str]:
        """The service, task type and version filter of a task."""
        service = self.string(body, (*path, "service"))
        task_type = self.string(body, (*path, "type"))
        for key, text in (("service", service), ("type", task_type)):
            for violation in check_name("", text, required=False):
                self.error((*path, key), violation.description)
        version = self.string(body, (*path, "version"), required=False)
        if version:
            try:
                parse_version_filter(version)
            except ValueError as exc:
                self.error((*path, "version"), str(exc))
        return service, task_type, version

    def retry(self, value: Any, path: Path) -> RetryPolicy:
        default = RetryPolicy()
        if value is None:
            return default
        body = self.mapping(value, path, _RETRY_KEYS, set())
        if body is None:
            return default
        attempts = body.get("max_attempts", default.max_attempts)
        if isinstance(attempts, bool) or not isinstance(attempts, int):
            self.error((*path, "max_attempts"), f"must be a whole number, got {_kind(attempts)}")
            attempts = default.max_attempts
        elif not 1 <= attempts <= MAX_ATTEMPTS:
            self.error((*path, "max_attempts"), f"must be between 1 and {MAX_ATTEMPTS}, got {attempts}")
        initial = self.duration(body, (*path, "initial_interval"), 0.0, INTERVAL_MAX)
        initial = default.initial_interval_s if initial is None else initial
        backoff = body.get("backoff", default.backoff)
        if isinstance(backoff, bool) or not isinstance(backoff, int | float):
            self.error((*path, "backoff"), f"must be a number, got {_kind(backoff)}")
            backoff = default.backoff
        elif not 1 <= backoff <= MAX_BACKOFF:
            self.error((*path, "backoff"), f"must be between 1 and {MAX_BACKOFF:g}, got {backoff:g}")
        maximum = self.duration(body, (*path, "max_interval"), 0.0, INTERVAL_MAX)
        if maximum is None:
            maximum = 100 * initial
        elif maximum < initial:
            self.error(
                (*path, "max_interval"),
                f"must be at least initial_interval ({format_duration(initial)}), got {format_duration(maximum)}",
            )
        codes = body.get("non_retryable", [])
        if not isinstance(codes, list) or not all(isinstance(code, str) and code for code in codes):
            self.error((*path, "non_retryable"), "must be a list of error codes (non-empty strings)")
            codes = []
        return RetryPolicy(attempts, initial, float(backoff), maximum, frozenset(codes))

    def choice(
        self, body: dict[str, Any], path: Path, scope: _Scope, inner: tuple[str, ...]
    ) -> tuple[tuple[Branch, ...], set[str]]:
        value, branches, ids = body["choice"], [], set()
        if not isinstance(value, list) or not value:
            self.error((*path, "choice"), "must be a non-empty list of {when, steps} branches")
            value = []
        for position, item in enumerate(value):
            where = (*path, "choice", position)
            branch = self.mapping(item, where, {"when", "steps"}, {"when", "steps"})
            if branch is None:
                continue
            when = None
            if "when" in branch:
                when = self.expression(branch["when"], (*where, "when"), scope)
            if "steps" in branch:
                steps, nested = self.steps(branch["steps"], (*where, "steps"), scope.available, inner)
                branches.append(Branch(when, steps))
                ids |= nested
        if "default" in body:
            steps, nested = self.steps(body["default"], (*path, "default"), scope.available, inner)
            branches.append(Branch(None, steps))
            ids |= nested
        return tuple(branches), ids

    def parallel(
        self, value: Any, path: Path, available: _Available, inner: tuple[str, ...]
    ) -> tuple[tuple[Branch, ...], set[str]]:
        branches, ids = [], set()
        if not isinstance(value, list) or not value:
            self.error(path, "must be a non-empty list of {steps} branches")
            value = []
        for position, item in enumerate(value):
            branch = self.mapping(item, (*path, position), {"steps"}, {"steps"})
            if branch is None or "steps" not in branch:
                continue
            # Each branch sees only what completed before the parallel step: siblings run concurrently.
            steps, nested = self.steps(branch["steps"], (*path, position, "steps"), available, inner)
            branches.append(Branch(None, steps))
            ids |= nested
        return tuple(branches), ids

    def wait_signal(self, value: Any, path: Path, scope: _Scope, parent: str) -> Step:
        body = self.mapping(value, path, {"name", "subject", "correlate", "timeout"}, set()) or {}
        name = self.string(body, (*path, "name"), required=False)
        subject = self.string(body, (*path, "subject"), required=False)
        if "name" in body and "subject" in body:
            self.error(path, "takes either name (a signal) or subject (a Bus message), not both")
        elif "name" not in body and "subject" not in body and isinstance(value, dict):
            self.error(path, "needs name (a signal to wait for) or subject (a Bus message pattern)")
        if name:
            for violation in check_name("", name):
                self.error((*path, "name"), violation.description)
        if subject:
            for violation in check_pattern("", subject):
                self.error((*path, "subject"), violation.description)
        correlate = None
        if "correlate" in body:
            if "subject" not in body:
                self.error((*path, "correlate"), "applies only to a Bus message wait (with subject)")
            message_scope = _Scope(scope.step, scope.available, scope.ancestors, MESSAGE_VARIABLES)
            correlate = self.expression(body["correlate"], (*path, "correlate"), message_scope)
        timeout = self.duration(body, (*path, "timeout"), TIMEOUT_MIN, TIMEOUT_MAX)
        return Step(
            scope.step,
            StepKind.WAIT_SIGNAL,
            signal=name,
            subject=subject,
            correlate=correlate,
            wait_timeout_s=timeout,
            parent=parent,
        )

    # -- values ------------------------------------------------------------------------------------

    def template(self, value: Any, path: Path, scope: _Scope) -> Mapping[str, Any] | Expression | None:
        """An input/output mapping (string leaves are CEL), or one CEL expression whose value is a map."""
        if value is None:
            return None
        if isinstance(value, str):
            return self.expression(value, path, scope)
        if isinstance(value, dict):
            tree: Mapping[str, Any] = self.tree(value, path, scope)
            return tree
        self.error(path, f"must be a map (string values are CEL) or a CEL expression, got {_kind(value)}")
        return None

    def tree(self, value: Any, path: Path, scope: _Scope) -> Any:
        if isinstance(value, str):
            return self.expression(value, path, scope)
        if isinstance(value, dict):
            return MappingProxyType(
                {key: self.tree(item, (*path, key), scope) for key, item in value.items()}
            )
        if isinstance(value, list):
            return tuple(self.tree(item, (*path, position), scope) for position, item in enumerate(value))
        return value

    def expression(self, value: Any, path: Path, scope: _Scope) -> Expression | None:
        if not isinstance(value, str):
            self.error(path, f"must be a CEL expression (a string), got {_kind(value)}")
            return None
        try:
            expression = compile_expression(value)
        except ExpressionRefused as exc:
            self.error(path, f"CEL expression refused: {exc}")
            return None
        except ExpressionError as exc:
            self.error(path, f"CEL expression does not compile: {exc}")
            return None
        self.uses.append(_Use(expression, path, scope))
        return expression

    def check_uses(self) -> None:
        """Unknown variables, and step references that are unknown or cannot have completed yet."""
        for use in self.uses:
            self.pause()
            expression, scope = use.expression, use.scope
            # `steps.a-b` also reads a variable `b`; the subtraction is reported instead.
            unknown = set() if expression.dotted_hyphen_refs else expression.free_variables - scope.variables
            for name in sorted(unknown):
                hint = " (only a wait_signal correlate sees message)" if name == "message" else ""
                self.error(
                    use.path, f"unknown variable {name!r}{hint}; expressions see {_names(scope.variables)}"
                )
            for ref in sorted(expression.dotted_hyphen_refs):
                self.error(use.path, f"write steps[{ref!r}]: CEL reads steps.{ref} as a subtraction")
            for ref in sorted(expression.step_refs - expression.dotted_hyphen_refs):
                problem = self.reference_problem(ref, scope)
                if problem:
                    self.error(use.path, problem)

    def reference_problem(self, ref: str, scope: _Scope) -> str:
        if ref not in self.ids:
            close = difflib.get_close_matches(ref, self.ids, n=1)
            return f"unknown step {ref!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
        owner = self.item_owner.get(ref)
        if owner and owner not in scope.ancestors:
            return (
                f"step {ref!r} runs once per item of map step {owner!r}: "
                f"read steps.{owner}.output, the items' outputs in item order"
            )
        at = self.order[ref]
        if any(low <= at < high for low, high in scope.available):
            return ""
        if ref == scope.step:
            return f"step {ref!r} refers to itself: its output exists only once it has completed"
        if ref in scope.ancestors:
            return f"refers to step {ref!r}, which encloses this one and has not completed yet"
        if self.order[ref] > self.order.get(scope.step, -1):
            return f"refers to step {ref!r}, which runs later"
        return f"refers to step {ref!r} in another branch, which need not have run before this one"

    def mapping(
        self,
        value: Any,
        path: Path,
        allowed: frozenset[str] | set[str],
        required: set[str],
        wrong_kind: StepKind | None = None,
    ) -> dict[str, Any] | None:
        """`value` as a map, reporting unknown and missing keys; None (reported) when it is not one."""
        if not isinstance(value, dict):
            self.error(path, f"must be a map, got {_kind(value)}")
            return None
        for key in value:
            if key in allowed:
                continue
            owner = next((kind for kind, keys in _STEP_KEYS.items() if key in keys), None)
            if wrong_kind is not None and owner is not None:
                self.error((*path, key), f"{key!r} applies only to {owner} steps, not {wrong_kind} steps")
                continue
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.error((*path, key), f"unknown field {key!r}{hint}")
        for key in sorted(required - value.keys()):
            self.error((*path, key), "is required")
        return value

    def string(self, body: dict[str, Any], path: Path, required: bool = True) -> str:
        """The string at `path`, "" when absent (a missing required key is reported by `mapping`)."""
        key = str(path[-1])
        if key not in body:
            return ""
        value = body[key]
        if value is None:
            if required:
                self.error(path, "must not be empty")
            return ""
        if isinstance(value, str):
            if required and not value:
                self.error(path, "must not be empty")
            return value
        hint = f'; quote it ("{value}")' if isinstance(value, int | float) else ""
        self.error(path, f"must be a string, got {_kind(value)}{hint}")
        return ""

    def duration(
        self,
        body: dict[str, Any],
        path: Path,
        low: float,
        high: float,
        exclusive_low: bool = False,
    ) -> float | None:
        """The duration at `path` (None when absent) within [low, high]."""
        key = str(path[-1])
        if key not in body:
            return None
        try:
            seconds = parse_duration(body[key], allow_zero=low == 0 and not exclusive_low)
        except ValueError as exc:
            self.error(path, str(exc))
            return None
        if not low <= seconds <= high:
            span = f"between {format_duration(low)} and {format_duration(high)}"
            self.error(path, f"must be {span}, got {format_duration(seconds)}")
            return None
        return seconds

    def json_compatible(self, value: Any, path: Path) -> bool:
        """Whether the document holds only what JSON can (the spec is stored and hashed as JSON)."""
        ok = True
        if isinstance(value, dict):
            self.pause()
            for key, item in value.items():
                if not isinstance(key, str):
                    self.error((*path, str(key)), f"keys must be strings, got {_kind(key)}")
                    ok = False
                ok = self.json_compatible(item, (*path, str(key))) and ok
        elif isinstance(value, list):
            for position, item in enumerate(value):
                ok = self.json_compatible(item, (*path, position)) and ok
        elif isinstance(value, float) and not math.isfinite(value):
            self.error(path, f"must be a finite number, got {value}")
            ok = False
        elif not isinstance(value, str | int | float | bool | type(None)):
            self.error(
                path, f"must be a JSON value (string, number, boolean, null, map or list), got {_kind(value)}"
            )
            ok = False
        return ok

    def error(self, path: Path, message: str) -> None:
        """Record a violation at `path`, with the line of the nearest node that has one."""
        line = next((self.lines[path[:n]] for n in range(len(path), -1, -1) if path[:n] in self.lines), None)
        suffix = f" (line {line})" if line is not None and "(line " not in message else ""
        self.violations.append(FieldViolation(field_path(path), message + suffix))


# ---------------------------------------------------------------------------------------------------
# Small pieces


def _kinds() -> str:
    return ", ".join(kind.value for kind in StepKind)


def _names(names: frozenset[str]) -> str:
    return " and ".join(sorted(names))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    kinds: dict[type, str] = {
        dict: "a map",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }
    return kinds.get(type(value), type(value).__name__)
