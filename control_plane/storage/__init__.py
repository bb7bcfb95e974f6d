"""Persistence: `open_store(url)` is the only place that picks a backend."""

from __future__ import annotations

import sqlite3
from urllib.parse import urlsplit, urlunsplit

import psycopg

from control_plane.storage.base import RegistrySnapshot, Store
from control_plane.storage.postgres import PostgresStore
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
            try:
                return await PostgresStore.open(url)
            except psycopg.Error as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise StoreURLError(f"cannot open store {_redacted(url)}: {reason}") from exc
        case other:
            raise StoreURLError(f"unsupported store URL scheme {other!r} in {url!r}; use sqlite:///PATH")


def _redacted(url: str) -> str:
    """The URL without its password, for error messages."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
