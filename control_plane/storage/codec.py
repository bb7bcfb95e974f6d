"""Row <-> domain conversion shared by every SQL backend."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from control_plane.models import ChangeType, Health, Instance, ProbeSpec, RegistryChange

INSTANCE_COLUMNS = (
    "service, instance_id, address, version, tags, metadata, probe, health, "
    "lease_id, ttl_s, registered_at, revision"
)

# Portable upsert (SQLite >= 3.24 and PostgreSQL); unlike INSERT OR REPLACE it never deletes a row that
# collides on another unique column (lease_id), it fails instead.
UPSERT_INSTANCE = (
    f"INSERT INTO registry_instances ({INSTANCE_COLUMNS}) VALUES ({', '.join(['%s'] * 12)}) "
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


def instance_row(instance: Instance) -> tuple[Any, ...]:
    """The column values of `instance`, in INSTANCE_COLUMNS order."""
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


def instance_from_row(row: tuple[Any, ...]) -> Instance:
    """Rebuild an instance from a row in INSTANCE_COLUMNS order."""
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


def instance_to_json(instance: Instance) -> str:
    """The whole instance as one JSON document, for the change log."""
    return json.dumps(instance_row(instance))


def change_from_row(revision: int, type_: str, instance: str, reason: str, time: float) -> RegistryChange:
    """Rebuild a change-log entry."""
    return RegistryChange(
        revision=int(revision),
        type=ChangeType(type_),
        instance=instance_from_row(tuple(json.loads(instance))),
        time=float(time),
        reason=reason,
    )
