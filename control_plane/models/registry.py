"""Registry values: instances, their health and the change log."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Health(StrEnum):
    """An instance's health as the registry judges it."""

    PASSING = "passing"
    CRITICAL = "critical"


class ChangeType(StrEnum):
    """What happened to an instance at one registry revision."""

    UP = "up"
    UPDATED = "updated"
    HEALTH = "health"
    DOWN = "down"


class DownReason(StrEnum):
    """Why an instance left the registry."""

    DEREGISTERED = "deregistered"
    LEASE_EXPIRED = "lease_expired"
    CRITICAL_TOO_LONG = "critical_too_long"


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """How to probe an instance with grpc.health.v1.Health/Check."""

    service_name: str = ""
    interval_s: float = 10.0
    timeout_s: float = 2.0
    threshold: int = 3
    deregister_critical_after_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Instance:
    """One registered instance of a service."""

    service: str
    instance_id: str
    address: str
    lease_id: str
    ttl_s: float
    registered_at: float
    version: str = ""
    tags: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    probe: ProbeSpec | None = None
    health: Health = Health.PASSING
    revision: int = 0

    @property
    def key(self) -> tuple[str, str]:
        """The (service, instance id) pair that identifies the instance."""
        return (self.service, self.instance_id)


@dataclass(frozen=True, slots=True)
class RegistryChange:
    """One committed change of the registry, at one global revision."""

    revision: int
    type: ChangeType
    instance: Instance
    time: float
    reason: str = ""
