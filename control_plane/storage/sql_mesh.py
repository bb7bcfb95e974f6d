"""The mesh's SQL: route policies as JSON documents, and the mesh revision counter."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from control_plane.models import LoadBalancing, MeshSnapshot, RetryPolicy, RoutePolicy, VersionSplit
from control_plane.storage.connection import Connection


def _document(route: RoutePolicy) -> str:
    """The policy's settings (not its service, revision or time, which have columns) as JSON."""
    return json.dumps(
        {
            "splits": [[s.version_range, s.weight] for s in route.splits],
            "timeout_s": route.timeout_s,
            "retry": dataclasses.asdict(route.retry) if route.retry else None,
            "max_concurrent_requests": route.max_concurrent_requests,
            "load_balancing": route.load_balancing.value,
        },
        sort_keys=True,
    )


def _route(row: tuple[Any, ...]) -> RoutePolicy:
    service, policy, revision, updated_at = row
    doc = json.loads(policy)
    retry = doc.get("retry")
    return RoutePolicy(
        service=service,
        splits=tuple(VersionSplit(r, int(w)) for r, w in doc.get("splits", [])),
        timeout_s=float(doc.get("timeout_s", 0.0)),
        retry=RetryPolicy(**{**retry, "retry_on": tuple(retry["retry_on"])}) if retry else None,
        max_concurrent_requests=int(doc.get("max_concurrent_requests", 0)),
        load_balancing=LoadBalancing(doc.get("load_balancing", LoadBalancing.ROUND_ROBIN.value)),
        revision=int(revision),
        updated_at=float(updated_at),
    )


def _next_revision(conn: Connection) -> int:
    # The counter's row lock orders changes made by different replicas.
    (revision,) = conn.execute(
        "UPDATE counters SET value = value + 1 WHERE name = 'mesh_revision' RETURNING value"
    ).fetchone()
    return int(revision)


def load(conn: Connection) -> MeshSnapshot:
    """Every stored policy, and the revision of the last change."""
    (revision,) = conn.execute("SELECT value FROM counters WHERE name = 'mesh_revision'").fetchone()
    rows = conn.execute(
        "SELECT service, policy, revision, updated_at FROM mesh_routes ORDER BY service"
    ).fetchall()
    return MeshSnapshot(int(revision), tuple(_route(row) for row in rows))


def put(conn: Connection, route: RoutePolicy, now: float) -> RoutePolicy:
    """Store (create or replace) a policy at the next mesh revision."""
    stored = dataclasses.replace(route, revision=_next_revision(conn), updated_at=now)
    conn.execute(
        "INSERT INTO mesh_routes (service, policy, revision, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (service) DO UPDATE SET policy = excluded.policy, revision = excluded.revision, "
        "updated_at = excluded.updated_at",
        (stored.service, _document(stored), stored.revision, stored.updated_at),
    )
    return stored


def delete(conn: Connection, service: str) -> int | None:
    """Remove a policy at the next mesh revision; None (and no new revision) when there was none."""
    if conn.execute("SELECT 1 FROM mesh_routes WHERE service = ?", (service,)).fetchone() is None:
        return None
    revision = _next_revision(conn)
    conn.execute("DELETE FROM mesh_routes WHERE service = ?", (service,))
    return revision
