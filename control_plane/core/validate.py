"""Field checks shared by the cores: each returns violations instead of raising one at a time."""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Any

import orjson

from control_plane.core.limits import MAX_ADDRESS, MAX_JSON_DEPTH, NAME_MAX
from control_plane.errors import FieldViolation, quote

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HOSTNAME = re.compile(
    r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def check_name(field: str, value: str, *, required: bool = True) -> list[FieldViolation]:
    """A service or instance name: 1-128 characters of [A-Za-z0-9._-], not starting with punctuation."""
    if not value:
        return [FieldViolation(field, "must not be empty")] if required else []
    if len(value) > NAME_MAX:
        return [FieldViolation(field, f"must be at most {NAME_MAX} characters (got {len(value)})")]
    if not _NAME.match(value):
        return [
            FieldViolation(
                field, "may contain only letters, digits, '.', '_' and '-', starting with a letter or digit"
            )
        ]
    return []


def check_address(field: str, value: str) -> list[FieldViolation]:
    """A `host:port` address; IPv6 hosts in brackets."""
    if not value:
        return [FieldViolation(field, "must not be empty; expected host:port")]
    if len(value) > MAX_ADDRESS:
        return [FieldViolation(field, f"must be at most {MAX_ADDRESS} characters")]
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        return [FieldViolation(field, f"expected host:port, got {quote(value)}")]
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:  # "²".isdigit() too
        return [FieldViolation(field, f"port must be a number from 1 to 65535, got {quote(port)}")]
    if host.startswith("["):
        if not host.endswith("]"):
            return [FieldViolation(field, f"unterminated IPv6 host in {quote(value)}")]
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return [FieldViolation(field, f"not an IPv6 address: {quote(host[1:-1])}")]
        return []
    if ":" in host:
        return [FieldViolation(field, "IPv6 hosts must be written in brackets, e.g. [::1]:50051")]
    if not _HOSTNAME.match(host):
        return [FieldViolation(field, f"not a valid host name or IPv4 address: {quote(host)}")]
    return []


def check_range(field: str, value: float, low: float, high: float, unit: str = "s") -> list[FieldViolation]:
    """A number within [low, high]."""
    if not low <= value <= high:
        return [
            FieldViolation(field, f"must be between {low:g}{unit} and {high:g}{unit} (got {value:g}{unit})")
        ]
    return []


def check_text(field: str, value: str, max_len: int) -> list[FieldViolation]:
    """Free text of bounded length."""
    if len(value) > max_len:
        return [FieldViolation(field, f"must be at most {max_len} characters (got {len(value)})")]
    return []


def check_json(field: str, value: Any, max_bytes: int) -> list[FieldViolation]:
    """A JSON value to store: finite numbers, nested at most MAX_JSON_DEPTH levels, at most `max_bytes`.

    The size is that of the compact UTF-8 JSON text, the form values are stored and published in.
    """
    problem = _json_problem(field, value)
    if problem is not None:
        return [problem]
    try:
        size = len(orjson.dumps(value, default=str))  # compact UTF-8, as the store keeps it
    except orjson.JSONEncodeError as exc:  # e.g. an integer beyond 64 bits
        return [FieldViolation(field, f"not representable as JSON ({exc})")]
    if size > max_bytes:
        return [FieldViolation(field, f"must be at most {max_bytes} bytes as compact JSON (got {size})")]
    return []


def _json_problem(field: str, value: Any) -> FieldViolation | None:
    """The first non-finite number or too-deep nesting in `value`, with its path (iterative: any depth).

    Runs on every payload a client sends, so the path is kept as links (parent, key) and spelled out
    only for the item at fault.
    """
    stack: list[tuple[_Link | None, object, Any, int]] = [(None, _TOP, value, 0)]
    while stack:
        link, key, item, depth = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return FieldViolation(
                _path(field, (link, key)), f"{item} is not a JSON number (NaN and infinities are not allowed)"
            )
        if isinstance(item, dict | list):
            if depth == MAX_JSON_DEPTH:
                return FieldViolation(
                    _path(field, (link, key)),
                    f"objects and lists may nest at most {MAX_JSON_DEPTH} levels deep",
                )
            here = (link, key)
            if isinstance(item, dict):
                stack.extend((here, k, child, depth + 1) for k, child in item.items())
            else:
                stack.extend((here, _Index(n), child, depth + 1) for n, child in enumerate(item))
    return None


class _Index(int):
    """A position in a list (told apart from an object's key, which may be anything)."""


_TOP = object()  # the key of the top value, which has none
# A path step: the link of the container and the key of the item in it.
_Link = tuple["_Link | None", object]


def _path(field: str, link: _Link) -> str:
    keys: list[object] = []
    node: _Link | None = link
    while node is not None:
        parent, key = node
        if key is not _TOP:
            keys.append(key)
        node = parent
    path = field
    for key in reversed(keys):
        path = f"{path}[{int(key)}]" if isinstance(key, _Index) else _key_path(path, key)
    return path


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")


def _key_path(path: str, key: object) -> str:
    text = str(key)
    return f"{path}.{text}" if _IDENTIFIER.match(text) else f"{path}[{quote(text, 32)}]"
