"""Persistence: `open_store(url)` is the only place that picks a backend."""

from __future__ import annotations

import sqlite3

from control_plane.storage.base import RegistrySnapshot, Store
from control_plane.storage.sqlite import SqliteStore

__all__ = ["RegistrySnapshot", "Store", "StoreURLError", "open_store"]


class StoreURLError(ValueError):
    """The store URL names a backend that does not exist or cannot be opened."""


async def open_store(url: str) -> Store:
    """Open the store named by `url` (`sqlite:///path/to/file.db`; PostgreSQL comes next)."""
    match url.partition(":")[0]:
        case "sqlite":
            try:
                return await SqliteStore.open(url)
            except (ValueError, OSError, sqlite3.Error) as exc:
                raise StoreURLError(f"cannot open store {url!r}: {exc}") from exc
        case "postgres" | "postgresql":
            raise StoreURLError("the PostgreSQL store is not available yet; use a sqlite:/// URL")
        case other:
            raise StoreURLError(f"unsupported store URL scheme {other!r} in {url!r}; use sqlite:///PATH")
