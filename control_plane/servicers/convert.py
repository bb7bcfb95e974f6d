"""Conversions between wire messages and domain values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from google.protobuf import duration_pb2, timestamp_pb2

from control_plane.core.registry import Lease, Registration, ServiceSummary
from control_plane.errors import InvalidArgument
from control_plane.models import ChangeType, Health, Instance, ProbeSpec, RegistryChange
from hms.mgmt.v1 import common_pb2, registry_pb2

_HEALTH = {
    Health.PASSING: common_pb2.HEALTH_STATUS_PASSING,
    Health.CRITICAL: common_pb2.HEALTH_STATUS_CRITICAL,
}
_CHANGE = {
    ChangeType.UP: registry_pb2.CHANGE_TYPE_UP,
    ChangeType.UPDATED: registry_pb2.CHANGE_TYPE_UPDATED,
    ChangeType.HEALTH: registry_pb2.CHANGE_TYPE_HEALTH,
    ChangeType.DOWN: registry_pb2.CHANGE_TYPE_DOWN,
}
_PROBE_DEFAULTS = ProbeSpec()
# The ranges google/protobuf/duration.proto and timestamp.proto define: about ±10,000 years, and
# 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z. A message outside them is not a valid value.
_DURATION_MAX_S = 315_576_000_000
_NANOS_MAX = 999_999_999
_TIMESTAMP_MIN_S, _TIMESTAMP_MAX_S = -62_135_596_800, 253_402_300_799

E = TypeVar("E")
K = TypeVar("K", bound=int)


def seconds(duration: duration_pb2.Duration, field: str) -> float:
    """A request's Duration as float seconds; INVALID_ARGUMENT naming `field` if it is not a valid one."""
    s, n = duration.seconds, duration.nanos
    if abs(s) > _DURATION_MAX_S or abs(n) > _NANOS_MAX or (s and n and (s < 0) != (n < 0)):
        raise InvalidArgument.field(
            field, "not a valid Duration (seconds within ±315,576,000,000, nanos of the same sign)"
        )
    return s + n / 1e9


def time_seconds(stamp: timestamp_pb2.Timestamp, field: str) -> float:
    """A request's Timestamp as Unix seconds; INVALID_ARGUMENT naming `field` if it is not a valid one."""
    if not _TIMESTAMP_MIN_S <= stamp.seconds <= _TIMESTAMP_MAX_S or not 0 <= stamp.nanos <= _NANOS_MAX:
        raise InvalidArgument.field(
            field, "not a valid Timestamp (years 0001 to 9999, nanos 0 to 999,999,999)"
        )
    return stamp.seconds + stamp.nanos / 1e9


def enum_value(field: str, table: Mapping[K, E], value: K) -> E:
    """The domain value of a wire enum; INVALID_ARGUMENT naming `field` for a number outside the enum."""
    found = table.get(value)
    if found is None:
        known = ", ".join(str(number) for number in sorted(table))
        raise InvalidArgument.field(field, f"{value} is not a known value (expected one of {known})")
    return found


def duration(value_s: float) -> duration_pb2.Duration:
    """Float seconds as a Duration."""
    message = duration_pb2.Duration()
    message.FromNanoseconds(round(value_s * 1e9))
    return message


def timestamp(value_s: float) -> timestamp_pb2.Timestamp:
    """Unix seconds as a Timestamp."""
    message = timestamp_pb2.Timestamp()
    message.FromNanoseconds(round(value_s * 1e9))
    return message


def registration_from_proto(request: registry_pb2.RegisterRequest) -> Registration:
    """The domain registration asked for by a RegisterRequest (zero values mean defaults)."""
    wire = request.instance
    probe = None
    if wire.HasField("probe"):
        p = wire.probe
        probe = ProbeSpec(
            service_name=p.service_name,
            interval_s=(
                seconds(p.interval, "instance.probe.interval")
                if p.HasField("interval")
                else _PROBE_DEFAULTS.interval_s
            ),
            timeout_s=(
                seconds(p.timeout, "instance.probe.timeout")
                if p.HasField("timeout")
                else _PROBE_DEFAULTS.timeout_s
            ),
            threshold=p.threshold or _PROBE_DEFAULTS.threshold,
            deregister_critical_after_s=(
                seconds(p.deregister_critical_after, "instance.probe.deregister_critical_after")
                if p.HasField("deregister_critical_after")
                else _PROBE_DEFAULTS.deregister_critical_after_s
            ),
        )
    return Registration(
        service=wire.service,
        address=wire.address,
        instance_id=wire.instance_id,
        version=wire.version,
        tags=tuple(wire.tags),
        metadata=dict(wire.metadata),
        probe=probe,
        ttl_s=seconds(request.ttl, "ttl") if request.HasField("ttl") else 0.0,
    )


def instance_to_proto(instance: Instance) -> registry_pb2.ServiceInstance:
    """The wire form of an instance."""
    message = registry_pb2.ServiceInstance(
        service=instance.service,
        instance_id=instance.instance_id,
        address=instance.address,
        version=instance.version,
        tags=instance.tags,
        metadata=instance.metadata,
        health=_HEALTH[instance.health],
        lease_id=instance.lease_id,
        registered_at=timestamp(instance.registered_at),
        revision=instance.revision,
    )
    if instance.probe is not None:
        p = instance.probe
        message.probe.CopyFrom(
            registry_pb2.HealthProbe(
                service_name=p.service_name,
                interval=duration(p.interval_s),
                timeout=duration(p.timeout_s),
                threshold=p.threshold,
                deregister_critical_after=duration(p.deregister_critical_after_s),
            )
        )
    return message


def lease_to_proto(lease: Lease) -> registry_pb2.Lease:
    """The wire form of a lease."""
    return registry_pb2.Lease(
        lease_id=lease.lease_id, ttl=duration(lease.ttl_s), expires_at=timestamp(lease.expires_at)
    )


def change_to_proto(change: RegistryChange) -> registry_pb2.RegistryChange:
    """The wire form of a change-log entry."""
    return registry_pb2.RegistryChange(
        revision=change.revision,
        type=_CHANGE[change.type],
        instance=instance_to_proto(change.instance),
        reason=change.reason,
        time=timestamp(change.time),
    )


def summary_to_proto(summary: ServiceSummary) -> registry_pb2.ServiceSummary:
    """The wire form of a service summary."""
    return registry_pb2.ServiceSummary(
        name=summary.name, instances=summary.instances, passing=summary.passing, versions=summary.versions
    )
