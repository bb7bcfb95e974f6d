"""Keyset paging over name-ordered listings: the token is the last key of the previous page."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import TypeVar

from control_plane.core.limits import DEFAULT_PAGE, MAX_PAGE
from control_plane.errors import InvalidArgument

T = TypeVar("T")


def page(items: list[T], key: Callable[[T], str], size: int, token: str) -> tuple[list[T], str]:
    """One page of `items` (sorted by `key`) after `token`, and the token of the next page ("" at the end)."""
    if not 0 <= size <= MAX_PAGE:
        raise InvalidArgument.field("page_size", f"must be between 1 and {MAX_PAGE}")
    size = size or DEFAULT_PAGE
    after = ""
    if token:
        try:
            after = base64.urlsafe_b64decode(token.encode()).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise InvalidArgument.field("page_token", "not a token from a previous page") from None
    rest = [item for item in items if key(item) > after] if after else items
    chunk = rest[:size]
    more = len(rest) > size
    next_token = base64.urlsafe_b64encode(key(chunk[-1]).encode()).decode() if more and chunk else ""
    return chunk, next_token
