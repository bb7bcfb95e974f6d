"""Page tokens: one opaque format for every paged listing (gRPC and console), checked like any other input.

A token is the unpadded urlsafe base64 of a small JSON array: the listing it belongs to, then the
position to resume after (a name, a sequence, a creation time and id). Clients only hand tokens back,
but anyone can read and forge one, so a token is decoded as untrusted input: a token of another
listing, one not made here, or one whose position is out of range is refused with INVALID_ARGUMENT on
`page_token`, never answered with a wrong page or an internal error. The cores never see a token: the
edges (servicers, console) decode it into a position the core takes.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable
from typing import Any, TypeVar

from control_plane.core.limits import DEFAULT_PAGE, MAX_PAGE
from control_plane.errors import InvalidArgument

T = TypeVar("T")
Part = str | int | float

_NOT_A_TOKEN = "not a token from a previous page"
# Far longer than any token made here (a position is a name, a subject or an id and a number).
_TOKEN_MAX = 2048
_SEQUENCE_MAX = 2**63 - 1  # integer positions are sequences, stored as signed 64-bit integers


def encode(listing: str, *position: Part) -> str:
    """The token that resumes `listing` after `position`."""
    text = json.dumps([listing, *position], separators=(",", ":"), allow_nan=False)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(token: str, listing: str, *types: type[Part], field: str = "page_token") -> tuple[Any, ...]:
    """The position a token of `listing` holds, one part of each of `types`; INVALID_ARGUMENT on `field` otherwise."""
    parts = _parts(token)
    if parts is None or len(parts) != len(types) + 1 or parts[0] != listing:
        raise InvalidArgument.field(field, _NOT_A_TOKEN)
    position = tuple(parts[1:])
    if not all(_fits(part, kind) for part, kind in zip(position, types, strict=True)):
        raise InvalidArgument.field(field, _NOT_A_TOKEN)
    return position


def page(items: list[T], key: Callable[[T], str], size: int, token: str, listing: str) -> tuple[list[T], str]:
    """One page of `items` (sorted by `key`) after `token`, and the token of the next page ("" at the end)."""
    if not 0 <= size <= MAX_PAGE:
        raise InvalidArgument.field("page_size", f"must be between 1 and {MAX_PAGE}")
    size = size or DEFAULT_PAGE
    after: str = decode(token, listing, str)[0] if token else ""
    rest = [item for item in items if key(item) > after] if after else items
    chunk = rest[:size]
    more = len(rest) > size
    next_token = encode(listing, key(chunk[-1])) if more and chunk else ""
    return chunk, next_token


def _parts(token: str) -> list[Any] | None:
    """The JSON array a token carries, or None when it carries none."""
    if len(token) > _TOKEN_MAX:
        return None
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        parts = json.loads(text, parse_constant=_no_constant)
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError):
        return None
    return parts if isinstance(parts, list) and parts else None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a position")


def _fits(part: Any, kind: type[Part]) -> bool:
    """Whether a decoded part is a `kind` this control plane could have written."""
    if kind is int:
        return type(part) is int and 0 <= part <= _SEQUENCE_MAX
    if kind is float:
        return type(part) in (int, float) and math.isfinite(part)
    return type(part) is kind
