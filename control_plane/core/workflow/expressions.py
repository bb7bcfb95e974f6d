"""CEL expressions over a process: conditions, input and output mappings, Bus message correlation."""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import orjson

from control_plane.core.workflow.cel_binding import load_extension
from control_plane.core.workflow.cel_shape import MAX_COST, Shape, ShapeError, shape_of

if TYPE_CHECKING:
    from cel import cel
else:
    # The library's Rust extension module, not the `cel` package (see cel_binding).
    cel = load_extension()

# What expressions may name: the process input, earlier step outputs, and (in `correlate`) the message.
VARIABLES = frozenset({"input", "steps"})
MESSAGE_VARIABLES = VARIABLES | {"message"}

# References are found in the text rather than the AST, which the CEL binding does not expose: a
# reference is written `steps.<id>` or `steps['<id>']`. The look-behind skips `input.steps.x`.
# A name followed by `(` is a method or macro on the map itself (`input.all(k, ...)`), not a key.
_STEP_DOT = re.compile(r"(?<![\w.])steps\s*\.\s*([A-Za-z][A-Za-z0-9_-]*)(?![\w-]|\s*\()")
_FIELD_DOT = r"(?<![\w.]){}\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)(?!\w|\s*\()"
_FIELD_INDEX = r"""(?<![\w.]){}\s*\[\s*(?:'([^'\\]*)'|"([^"\\]*)")\s*\]"""
_NAME = r"(?<![\w.]){}\b"
# Names bound by comprehension macros and cel.bind show up in Program.variables() like free ones.
_BOUND = re.compile(
    r"\b(?:all|exists|exists_one|map|filter|transformList|transformMap|transformMapEntry|sortBy|optMap"
    r"|optFlatMap|bind)\s*\(\s*([A-Za-z_]\w*)\s*,(?:\s*([A-Za-z_]\w*)\s*,)?"
)
# Type names and function namespaces that Program.variables() reports as identifiers.
_BUILTIN_NAMES = frozenset(
    {"int", "uint", "double", "bool", "string", "bytes", "list", "map", "null_type", "type", "dyn"}
    | {"timestamp", "duration", "optional", "cel", "math", "strings", "base64", "sets", "lists", "google"}
)
_PLAIN = (str, int, float, bool, type(None))


class ExpressionError(Exception):
    """An expression that does not compile, or that failed while being evaluated."""


class ExpressionRefused(ExpressionError):
    """An expression CEL would run, refused for what it could cost: too deep, or loops nested over data."""


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled CEL expression; immutable, and cheap to evaluate many times."""

    text: str
    program: cel.Program = field(compare=False, repr=False)
    # Top-level names the expression reads (bound macro variables and builtins left out).
    free_variables: frozenset[str] = field(compare=False, repr=False)
    # Step ids named as `steps.<id>` or `steps['<id>']`, and those written `steps.a-b` (which CEL reads
    # as a subtraction, so the definition check refuses them).
    step_refs: frozenset[str] = field(compare=False, repr=False)
    dotted_hyphen_refs: frozenset[str] = field(compare=False, repr=False)
    # Variable -> the only keys the expression reads from it, when every use names a key. Converting
    # the activation to CEL values is most of the cost of an evaluation, so only those keys are passed.
    projections: Mapping[str, frozenset[str]] = field(compare=False, repr=False)
    # Every identifier CEL reports, bound ones included: only these are taken from the activation.
    reads: tuple[str, ...] = field(compare=False, repr=False)
    # Its comprehensions, for the cost estimated before each evaluation (the CEL core has no limit).
    shape: Shape = field(compare=False, repr=False, default=Shape(()))
    # The keys of an expression that only selects fields (`input`, `steps.s1.output.id`), else None:
    # followed in Python where every key is there (see _follow), as the CEL core would, at a fraction of
    # the cost (a process's input mappings are mostly such paths).
    path: tuple[str, ...] | None = field(compare=False, repr=False, default=None)

    def evaluate(self, activation: Mapping[str, Any]) -> Any:
        """The value of the expression over `activation`, as plain JSON-like Python.

        Refused (ExpressionError) when it would cost more than MAX_COST steps over these values: the
        evaluation cannot be interrupted, and it holds the GIL, so it would stall the whole process.
        """
        if self.path is not None:
            found = _follow(self.path, activation)
            if found is not _NOT_FOLLOWED:
                return found
        variables = {name: self._project(name, activation[name]) for name in self.reads if name in activation}
        cost = self.shape.estimate_cost(variables)
        if cost > MAX_COST:
            raise ExpressionError(
                f"{self.text!r}: too costly to evaluate over this data"
                f" (more than {MAX_COST:,} steps; the lists or strings it reads are too long)"
            )
        try:
            result = self.program.execute(variables)
        except KeyError as exc:
            raise ExpressionError(f"{self.text!r}: no such key: {exc.args[0] if exc.args else exc}") from None
        except Exception as exc:  # the Rust core raises ValueError, TypeError, RuntimeError, ...
            raise ExpressionError(f"{self.text!r}: {exc}") from None
        return result if isinstance(result, _PLAIN) else _to_plain(result)

    def holds(self, activation: Mapping[str, Any]) -> bool:
        """Evaluate a condition; raises ExpressionError unless the value is a bool."""
        value = self.evaluate(activation)
        if not isinstance(value, bool):
            raise ExpressionError(f"{self.text!r}: a condition must be true or false, got {_kind(value)}")
        return value

    def _project(self, name: str, value: Any) -> Any:
        keys = self.projections.get(name)
        if keys is not None and isinstance(value, Mapping):
            return {key: value[key] for key in keys if key in value}
        return value


@lru_cache(maxsize=4096)
def compile_expression(text: str) -> Expression:
    """Compile (and cache) `text`; raises ExpressionError with CEL's reason when it does not compile."""
    if not text.strip():
        raise ExpressionError("empty expression")
    try:
        # Before CEL sees it: the Rust parser overflows its stack on 30,000 chained fields.
        shape = shape_of(text, MESSAGE_VARIABLES)
        unreadable = None
    except ShapeError as exc:
        if exc.refused:
            raise ExpressionRefused(str(exc)) from None
        shape, unreadable = Shape(()), exc  # CEL says what is wrong, in its words
    try:
        program = cel.compile(text)
        names = set(program.variables())
    except Exception as exc:  # ValueError for syntax errors; anything else from the Rust core alike
        raise ExpressionError(_compile_reason(text, str(exc))) from None
    except BaseException as exc:  # a Rust panic is a BaseException: it must not end the caller
        if type(exc).__name__ != "PanicException":
            raise
        raise ExpressionError("does not compile (the CEL parser failed on it)") from None
    if unreadable is not None:
        raise ExpressionError(str(unreadable))
    bound = {name for match in _BOUND.finditer(text) for name in match.groups() if name}
    projections: dict[str, frozenset[str]] = {}
    step_refs: set[str] = set()
    for variable in sorted(MESSAGE_VARIABLES):
        dotted, indexed = _references(text, variable)
        if variable == "steps":
            # Step ids may hold '-': capture `steps.a-b` whole to tell the author to write steps['a-b'].
            dotted = _STEP_DOT.findall(text)
            step_refs = set(dotted) | set(indexed)
        uses = len(re.findall(_NAME.format(variable), text))
        if uses and uses == len(dotted) + len(indexed):
            projections[variable] = frozenset(dotted) | frozenset(indexed)
    return Expression(
        text=text,
        program=program,
        free_variables=frozenset(names - bound - _BUILTIN_NAMES),
        step_refs=frozenset(step_refs),
        dotted_hyphen_refs=frozenset(ref for ref in _STEP_DOT.findall(text) if "-" in ref),
        projections=MappingProxyType(projections),
        reads=tuple(sorted(names)),
        shape=shape,
        path=_path_of(text),
    )


# A field selection only: identifiers joined by dots (CEL has already compiled it, so none is a keyword).
_PATH = re.compile(r"\s*([A-Za-z_]\w*(?:\s*\.\s*[A-Za-z_]\w*)*)\s*")
_NOT_FOLLOWED = object()


def _path_of(text: str) -> tuple[str, ...] | None:
    match = _PATH.fullmatch(text)
    return tuple(key.strip() for key in match.group(1).split(".")) if match else None


def _follow(path: tuple[str, ...], activation: Mapping[str, Any]) -> Any:
    """The value at `path`, copied as the CEL core would give it back; _NOT_FOLLOWED when a key is
    missing, a value on the way is not a map, or the value is not plain JSON with integers CEL keeps
    exact (strictly: within 53 bits): CEL then evaluates it, with its own answer or error."""
    value: Any = activation
    for key in path:
        if type(value) is not dict or key not in value:
            return _NOT_FOLLOWED
        value = value[key]
    if type(value) in _SCALARS:
        return value
    try:
        # A copy, as CEL's conversion makes one: the caller may keep it while the record changes.
        return orjson.loads(orjson.dumps(value, option=orjson.OPT_STRICT_INTEGER))
    except TypeError:  # orjson.JSONEncodeError: a key or value that is not plain JSON, a big integer
        return _NOT_FOLLOWED


_SCALARS = frozenset({str, float, bool, type(None)})


def _references(text: str, variable: str) -> tuple[list[str], list[str]]:
    """Keys read from `variable` as `variable.key` and as `variable['key']`."""
    dotted = re.findall(_FIELD_DOT.format(variable), text)
    indexed = [single or double for single, double in re.findall(_FIELD_INDEX.format(variable), text)]
    return dotted, indexed


def evaluate_mapping(mapping: Any, activation: Mapping[str, Any]) -> Any:
    """Evaluate a compiled `input`/`output` mapping: Expression leaves are evaluated, other leaves kept."""
    if isinstance(mapping, Expression):
        value = mapping.evaluate(activation)
        if not isinstance(value, dict):
            raise ExpressionError(f"{mapping.text!r}: must evaluate to a map, got {_kind(value)}")
        return value
    return _evaluate_tree(mapping, activation)


def _evaluate_tree(node: Any, activation: Mapping[str, Any]) -> Any:
    if isinstance(node, Expression):
        return node.evaluate(activation)
    if isinstance(node, str):
        return compile_expression(node).evaluate(activation)
    if isinstance(node, Mapping):
        return {key: _evaluate_tree(value, activation) for key, value in node.items()}
    if isinstance(node, list | tuple):
        return [_evaluate_tree(value, activation) for value in node]
    return node


def _to_plain(value: Any) -> Any:
    """CEL results to what JSON (and protobuf Struct) can hold."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Mapping):
        return {_key(key): _to_plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(item) for item in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dt.datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, dt.timedelta):
        # The protobuf JSON form of a Duration, as CEL's string(duration) writes it.
        return f"{value.total_seconds():g}s"
    if isinstance(value, cel.OptionalValue):
        return _to_plain(value.value()) if value.has_value() else None
    return str(value)


def _key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return key if isinstance(key, str) else str(key)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "a map", list: "a list", str: "a string", bool: "a bool"}.get(
        type(value), type(value).__name__
    )


def _compile_reason(text: str, message: str) -> str:
    # cel prefixes "Failed to parse expression '<text>': " and appends the text with a caret on later
    # lines; the first line, which has the line:column, is what fits a field violation.
    reason = message.removeprefix(f"Failed to parse expression '{text}': ").strip()
    return reason.splitlines()[0] if reason else "does not compile"
