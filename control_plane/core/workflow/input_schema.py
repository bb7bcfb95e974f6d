"""A definition's `input_schema`: checked as a JSON Schema when registered, then checked against every process input.

Inputs are checked in Rust (jsonschema-rs), in time linear in the input: its patterns run on an
engine that does not backtrack, where Python's `re` took seconds on `(a+)+$` and 26 a's. The schema
itself is checked with `jsonschema` (its meta-schemas name the field at fault), and every `$ref` must
resolve within the schema: nothing is ever fetched.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any, cast

import jsonschema
import jsonschema_rs
import referencing
import referencing.exceptions
import referencing.jsonschema
from jsonschema import validators

from control_plane.core.workflow.documents import Path
from control_plane.errors import FieldViolation, InvalidArgument

_MESSAGE_MAX = 300
# Violations named for one process input: one per item of a 100,000-item list would swamp the reply.
_INPUT_VIOLATIONS_MAX = 20
_UNSUPPORTED_PATTERN = (
    "pattern {pattern} is not supported: patterns run on an engine that does not backtrack, so that"
    " checking an input takes time linear in its length; it has no backreferences and no look-around"
)


class InputSchema:
    """A schema that `check_schema` accepted, compiled to check process inputs."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self._validator = _validator(schema)

    def check(self, value: Any) -> None:
        """Refuse a process input that does not match the schema, naming the errors found."""
        violations = [
            FieldViolation(_input_field(error.instance_path), _short(error.message))
            for error in itertools.islice(self._validator.iter_errors(value), _INPUT_VIOLATIONS_MAX)
        ]
        if violations:
            raise InvalidArgument(violations)


def check_schema(schema: dict[str, Any], path: Path) -> list[tuple[Path, str]]:
    """What makes `schema` (found at `path`) unusable as an input schema, each problem with its path."""
    unknown = cast(Any, object())
    cls = validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    if "$schema" in schema and validators.validator_for(schema, default=unknown) is unknown:
        return [((*path, "$schema"), f"unknown JSON Schema dialect {schema['$schema']!r}")]
    problems: list[tuple[Path, str]] = [
        ((*path, *error.absolute_path), f"not a valid JSON Schema: {_short(error.message)}")
        for error in cls(cls.META_SCHEMA).iter_errors(schema)
    ]
    if problems:
        return problems
    problems = _unresolvable_refs(schema, path)
    if problems:
        return problems
    try:
        _validator(schema)
    except jsonschema_rs.ValidationError as exc:
        where = (*path, *exc.instance_path)
        if exc.kind.name == "format" and exc.message.endswith('is not a "regex"'):
            return [(where, _UNSUPPORTED_PATTERN.format(pattern=_short(repr(exc.instance))))]
        return [(where, f"not a usable JSON Schema: {_short(exc.message)}")]
    return []


def _short(message: str) -> str:
    # JSON Schema messages start with the offending instance, which may be large, and end with what it
    # broke ("does not match '^a+$'"): keep both ends.
    if len(message) <= _MESSAGE_MAX:
        return message
    half = (_MESSAGE_MAX - 3) // 2
    return message[:half] + "..." + message[-half:]


def _unresolvable_refs(schema: dict[str, Any], path: Path) -> list[tuple[Path, str]]:
    """Refuse `$ref`s that cannot be resolved within the schema: nothing is fetched from the network."""
    resource = referencing.Resource.from_contents(
        schema, default_specification=referencing.jsonschema.DRAFT202012
    )
    resolver = referencing.Registry().with_resource("", resource).resolver()
    problems: list[tuple[Path, str]] = []
    for ref_path, ref in _refs(schema, path):
        try:
            resolver.lookup(ref)
        except referencing.exceptions.Unresolvable:
            problems.append((ref_path, f"cannot resolve $ref {ref!r} within the schema"))
    return problems


def _validator(schema: Mapping[str, Any]) -> jsonschema_rs.Validator:
    # Formats (email, date, ...) are checked: a schema that names one means it. Patterns compile for
    # Rust's `regex`, which never backtracks; a `$ref` is never fetched (refs were checked to resolve
    # within the schema when it was registered).
    return jsonschema_rs.validator_for(
        dict(schema),
        validate_formats=True,
        pattern_options=jsonschema_rs.RegexOptions(),
        retriever=_no_retrieval,
    )


def _no_retrieval(uri: str) -> Any:
    raise ValueError(f"{uri}: schemas are never fetched")


def _refs(schema: Any, path: Path) -> Iterator[tuple[Path, str]]:
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str):
                yield (*path, key), value
            elif key not in ("const", "enum", "default", "examples"):
                yield from _refs(value, (*path, key))
    elif isinstance(schema, list):
        for position, item in enumerate(schema):
            yield from _refs(item, (*path, position))


def _input_field(path: list[str | int]) -> str:
    return "input" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)
