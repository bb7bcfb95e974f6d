"""Reading a definition document: YAML (or JSON) into plain values, with the line of every path."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from control_plane.errors import FieldViolation, InvalidArgument

try:
    # libyaml scans several times faster than pure Python, and its nodes carry the same marks.
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

# A location in the document: keys and list indexes from the root.
Path = tuple[str | int, ...]

# Aliases let a small document expand to billions of nodes; depth past this is never a real definition.
_MAX_NODES = 100_000
_MAX_DEPTH = 64


def field_path(path: Path) -> str:
    """A path as the field name errors use: `steps[2].retry.max_attempts`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


class _Loader(_SafeLoader):
    """SafeLoader reading what JSON would: dates stay strings, and only true/false are booleans."""


# YAML 1.1 makes `2024-01-01` a date and `no`/`on` booleans; the JSON form of the same document would
# hold strings, so the two would parse (and hash) differently.
_BOOL_TAG, _TIMESTAMP_TAG, _MERGE_TAG = (
    f"tag:yaml.org,2002:{name}" for name in ("bool", "timestamp", "merge")
)
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_BOOL_TAG, _TIMESTAMP_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def load_document(source: str) -> tuple[Any, dict[Path, int], list[FieldViolation]]:
    """The document, the line of each path, and problems only the YAML nodes show (duplicate keys)."""
    try:
        return _load_yaml(source)
    except yaml.YAMLError as exc:
        error = exc
    try:
        document = json.loads(source)
    except (ValueError, RecursionError):
        raise InvalidArgument.field("source", _yaml_reason(error)) from None
    # PyYAML refuses tab indentation, which pretty-printed JSON may have. Valid JSON holds no raw tab
    # inside a string, so with tabs as spaces YAML reads it too, and gives us line numbers.
    try:
        return _load_yaml(source.replace("\t", " "))
    except yaml.YAMLError:
        return document, {}, []


def _load_yaml(source: str) -> tuple[Any, dict[Path, int], list[FieldViolation]]:
    loader = _Loader(source)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise InvalidArgument.field("source", "nested too deeply") from None
        if node is None:
            return None, {}, []
        index = _NodeIndex()
        index.visit(node, (), 0, ())
        return loader.construct_document(node), index.lines, index.duplicates
    finally:
        loader.dispose()


class _NodeIndex:
    """Walks the composed YAML nodes: the line of every path, duplicate keys, and size limits."""

    def __init__(self) -> None:
        self.lines: dict[Path, int] = {}
        self.duplicates: list[FieldViolation] = []
        self._visited = 0

    def visit(self, node: yaml.Node, path: Path, depth: int, ancestors: tuple[int, ...]) -> None:
        line = node.start_mark.line + 1
        self.lines.setdefault(path, line)
        self._visited += 1
        if self._visited > _MAX_NODES:
            raise InvalidArgument.field("source", f"more than {_MAX_NODES} nodes once aliases are expanded")
        if depth > _MAX_DEPTH:
            raise InvalidArgument.field("source", f"nested deeper than {_MAX_DEPTH} levels (line {line})")
        if id(node) in ancestors:
            raise InvalidArgument.field("source", f"an alias refers to a node that contains it (line {line})")
        inner = (*ancestors, id(node))
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = str(key_node.value)
                key_line = key_node.start_mark.line + 1
                if key in seen:
                    message = f"duplicate key {key!r} (line {key_line})"
                    self.duplicates.append(FieldViolation(field_path((*path, key)), message))
                seen.add(key)
                self.lines.setdefault((*path, key), key_line)
                self.visit(value_node, (*path, key), depth + 1, inner)
        elif isinstance(node, yaml.SequenceNode):
            for position, item in enumerate(node.value):
                self.visit(item, (*path, position), depth + 1, inner)


def _yaml_reason(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        problem = ", ".join(part for part in (error.context, error.problem) if part) or "syntax error"
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        return f"not valid YAML or JSON: {problem}{where}"
    return f"not valid YAML or JSON: {error}"
