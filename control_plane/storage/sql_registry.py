"""The Registry's SQL: run on a connection by a backend (in its writer or reader), never by the core."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from control_plane.models import ChangeType, Health, Instance, ProbeSpec, RegistryChange
from control_plane.storage.base import RegistrySnapshot
from control_plane.storage.connection import Connection

_INSTANCE_COLUMNS = (
    "service, instance_id, address, version, tags, metadata, probe, health, "
    "lease_id, ttl_s, registered_at, revision"
)

# Portable upsert (SQLite >= 3.24 and PostgreSQL); unlike INSERT OR REPLACE it never deletes a row that
# collides on another unique column (lease_id), it fails instead.
_UPSERT_INSTANCE = (
    f"INSERT INTO registry_instances ({_INSTANCE_COLUMNS}) VALUES ({', '.join(['?'] * 12)}) "
    "ON CONFLICT (service, instance_id) DO UPDATE SET "
    + ", ".join(
        f"{c} = excluded.{c}"
        for c in (
            "address",
            "version",
            "tags",
            "metadata",
            "probe",
            "health",
            "lease_id",
            "ttl_s",
            "revision",
        )
    )
)


def _instance_row(instance: Instance) -> tuple[Any, ...]:
    """The column values of `instance`, in _INSTANCE_COLUMNS order."""
    probe = json.dumps(dataclasses.asdict(instance.probe)) if instance.probe else None
    return (
        instance.service,
        instance.instance_id,
        instance.address,
        instance.version,
        json.dumps(list(instance.tags)),
        json.dumps(instance.metadata, sort_keys=True),
        probe,
        instance.health.value,
        instance.lease_id,
        instance.ttl_s,
        instance.registered_at,
        instance.revision,
    )


def _instance_from_row(row: tuple[Any, ...]) -> Instance:
    """Rebuild an instance from a row in _INSTANCE_COLUMNS order."""
    (service, instance_id, address, version, tags, metadata, probe, health, lease_id, ttl_s, at, rev) = row
    return Instance(
        service=service,
        instance_id=instance_id,
        address=address,
        version=version,
        tags=tuple(json.loads(tags)),
        metadata=json.loads(metadata),
        probe=ProbeSpec(**json.loads(probe)) if probe else None,
        health=Health(health),
        lease_id=lease_id,
        ttl_s=float(ttl_s),
        registered_at=float(at),
        revision=int(rev),
    )


def _instance_json(instance: Instance) -> str:
    """The whole instance as one JSON document, for the change log."""
    return json.dumps(_instance_row(instance))


def _change(revision: int, type_: str, instance: str, reason: str, time: float) -> RegistryChange:
    """Rebuild a change-log entry."""
    return RegistryChange(
        revision=int(revision),
        type=ChangeType(type_),
        instance=_instance_from_row(tuple(json.loads(instance))),
        time=float(time),
        reason=reason,
    )


def commit(
    conn: Connection, instance: Instance, change_type: ChangeType, reason: str, now: float
) -> RegistryChange:
    """Store or delete the instance and append its change, at the next revision."""
    (revision,) = conn.execute(
        "UPDATE counters SET value = value + 1 WHERE name = 'registry_revision' RETURNING value"
    ).fetchone()
    stored = dataclasses.replace(instance, revision=revision)
    if change_type is ChangeType.DOWN:
        conn.execute(
            "DELETE FROM registry_instances WHERE service = ? AND instance_id = ?",
            (instance.service, instance.instance_id),
        )
        conn.execute("DELETE FROM registry_leases WHERE lease_id = ?", (instance.lease_id,))
    else:
        conn.execute(_UPSERT_INSTANCE, _instance_row(stored))
    conn.execute(
        "INSERT INTO registry_changes (revision, type, service, instance, reason, time) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (revision, change_type.value, instance.service, _instance_json(stored), reason, now),
    )
    return RegistryChange(revision, change_type, stored, now, reason)


def remove(conn: Connection, instances: list[Instance], reason: str, now: float) -> list[RegistryChange]:
    """Delete `instances` and append their DOWN changes, at consecutive revisions."""
    (last,) = conn.execute(
        "UPDATE counters SET value = value + ? WHERE name = 'registry_revision' RETURNING value",
        (len(instances),),
    ).fetchone()
    first = int(last) - len(instances) + 1
    stored = [dataclasses.replace(i, revision=first + n) for n, i in enumerate(instances)]
    conn.executemany(
        "DELETE FROM registry_instances WHERE service = ? AND instance_id = ?",
        [(i.service, i.instance_id) for i in stored],
    )
    conn.executemany("DELETE FROM registry_leases WHERE lease_id = ?", [(i.lease_id,) for i in stored])
    conn.executemany(
        "INSERT INTO registry_changes (revision, type, service, instance, reason, time) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(i.revision, ChangeType.DOWN.value, i.service, _instance_json(i), reason, now) for i in stored],
    )
    return [RegistryChange(i.revision, ChangeType.DOWN, i, now, reason) for i in stored]


def load(conn: Connection, history: int) -> RegistrySnapshot:
    """Every stored instance, the current revision and the last `history` changes, read consistently."""
    conn.execute("BEGIN")
    try:
        rows = conn.execute(f"SELECT {_INSTANCE_COLUMNS} FROM registry_instances").fetchall()
        (revision,) = conn.execute("SELECT value FROM counters WHERE name = 'registry_revision'").fetchone()
        changes = conn.execute(
            "SELECT revision, type, instance, reason, time FROM registry_changes "
            "ORDER BY revision DESC LIMIT ?",
            (history,),
        ).fetchall()
    finally:
        conn.execute("COMMIT")
    return RegistrySnapshot(
        instances=[_instance_from_row(r) for r in rows],
        revision=int(revision),
        changes=[_change(*c) for c in reversed(changes)],
    )


def changes_after(conn: Connection, revision: int, limit: int) -> list[RegistryChange]:
    """Up to `limit` changes after `revision`, in order."""
    rows = conn.execute(
        "SELECT revision, type, instance, reason, time FROM registry_changes "
        "WHERE revision > ? ORDER BY revision LIMIT ?",
        (revision, limit),
    ).fetchall()
    return [_change(*row) for row in rows]


def renew(conn: Connection, leases: dict[str, float]) -> None:
    """Record lease renewals (lease id -> wall-clock expiry), never moving an expiry earlier."""
    conn.executemany(
        "INSERT INTO registry_leases (lease_id, expires_at) VALUES (?, ?) ON CONFLICT (lease_id) "
        "DO UPDATE SET expires_at = excluded.expires_at WHERE registry_leases.expires_at < excluded.expires_at",
        list(leases.items()),
    )


def lease_expiry(conn: Connection, lease_ids: list[str]) -> dict[str, float]:
    """The latest recorded expiry of each lease that any replica renewed."""
    marks = ",".join("?" * len(lease_ids))
    rows = conn.execute(
        f"SELECT lease_id, expires_at FROM registry_leases WHERE lease_id IN ({marks})", lease_ids
    )
    return {lease: float(at) for lease, at in rows}


def revision(conn: Connection) -> int:
    """The last committed revision, whichever replica committed it."""
    (value,) = conn.execute("SELECT value FROM counters WHERE name = 'registry_revision'").fetchone()
    return int(value)


def compact(conn: Connection, keep: int) -> int:
    """Forget all but the last `keep` changes; returns how many were dropped."""
    cursor = conn.execute(
        "DELETE FROM registry_changes WHERE revision <= "
        "(SELECT value FROM counters WHERE name = 'registry_revision') - ?",
        (keep,),
    )
    return cursor.rowcount
