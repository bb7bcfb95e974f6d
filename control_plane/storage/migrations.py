"""Versioned schema migrations shipped as sortable SQL files beside this module."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)(?:\.(?P<dialect>sqlite|postgres))?\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: applied once, in version order, inside a transaction."""

    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """The SQL split into statements (the files hold no semicolons inside literals)."""
        without_comments = "\n".join(line.split("--", 1)[0] for line in self.sql.splitlines())
        return [s.strip() for s in without_comments.split(";") if s.strip()]


def migrations(dialect: str) -> list[Migration]:
    """Every migration for `dialect`: a `NNNN_x.<dialect>.sql` file replaces the portable `NNNN_x.sql`."""
    chosen: dict[int, Migration] = {}
    specific: set[int] = set()
    folder = resources.files("control_plane.storage") / "migrations"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        match = _NAME.match(entry.name)
        if match is None or match["dialect"] not in (None, dialect):
            continue
        version = int(match["version"])
        if version in specific:
            continue
        chosen[version] = Migration(version, match["name"], entry.read_text(encoding="utf-8"))
        if match["dialect"]:
            specific.add(version)
    return [chosen[v] for v in sorted(chosen)]
