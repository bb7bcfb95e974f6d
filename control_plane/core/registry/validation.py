"""What the registry accepts: every request is checked whole, and refused with all its violations at once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from control_plane.core import validate
from control_plane.core.limits import (
    MAX_METADATA,
    MAX_METADATA_KEY,
    MAX_METADATA_VALUE,
    MAX_PROBE_SERVICE_NAME,
    MAX_TAG_LEN,
    MAX_TAGS,
    MAX_VERSION_LEN,
    PROBE_DEREGISTER_AFTER_S,
    PROBE_INTERVAL_S,
    PROBE_THRESHOLD,
)
from control_plane.core.versions import VersionFilter, parse_version_filter
from control_plane.errors import FieldViolation, InvalidArgument
from control_plane.models import ProbeSpec
from control_plane.settings import RegistrySettings

if TYPE_CHECKING:
    from control_plane.core.registry.registry import Registration


def check_registration(request: Registration, ttl_s: float, settings: RegistrySettings) -> None:
    """Refuse a registration (with its lease TTL, defaults applied) that breaks any rule."""
    violations = validate.check_name("instance.service", request.service)
    violations += validate.check_name("instance.instance_id", request.instance_id, required=False)
    violations += validate.check_address("instance.address", request.address)
    violations += validate.check_text("instance.version", request.version, MAX_VERSION_LEN)
    violations += validate.check_range("ttl", ttl_s, settings.min_ttl_s, settings.max_ttl_s)
    if len(request.tags) > MAX_TAGS:
        violations.append(
            FieldViolation("instance.tags", f"at most {MAX_TAGS} tags (got {len(request.tags)})")
        )
    for n, tag in enumerate(request.tags):
        if not tag or len(tag) > MAX_TAG_LEN:
            violations.append(FieldViolation(f"instance.tags[{n}]", f"must be 1 to {MAX_TAG_LEN} characters"))
    if len(request.metadata) > MAX_METADATA:
        violations.append(
            FieldViolation(
                "instance.metadata", f"at most {MAX_METADATA} entries (got {len(request.metadata)})"
            )
        )
    for k, v in request.metadata.items():
        if not k or len(k) > MAX_METADATA_KEY:
            violations.append(
                FieldViolation(
                    f"instance.metadata[{k[:32]!r}]", f"keys must be 1 to {MAX_METADATA_KEY} characters"
                )
            )
        if len(v) > MAX_METADATA_VALUE:
            violations.append(
                FieldViolation(
                    f"instance.metadata[{k[:32]!r}]",
                    f"values must be at most {MAX_METADATA_VALUE} characters",
                )
            )
    if request.probe is not None:
        violations += _check_probe(request.probe)
    if violations:
        raise InvalidArgument(violations)


def check_instance(service: str, instance_id: str) -> None:
    """Refuse a (service, instance id) that cannot name an instance."""
    violations = validate.check_name("service", service) + validate.check_name("instance_id", instance_id)
    if violations:
        raise InvalidArgument(violations)


def check_lookup(service: str, version: str) -> VersionFilter | None:
    """Refuse a lookup's service name or version filter; returns the filter (None for any version)."""
    violations = validate.check_name("service", service)
    version_filter: VersionFilter | None = None
    try:
        version_filter = parse_version_filter(version) if version else None
    except ValueError as exc:
        violations.append(FieldViolation("version", str(exc)))
    if violations:
        raise InvalidArgument(violations)
    return version_filter


def check_watch(service: str, after_revision: int | None) -> None:
    """Refuse a watch of a malformed service name (empty: every service) or from a negative revision."""
    if service:
        violations = validate.check_name("service", service)
        if violations:
            raise InvalidArgument(violations)
    if after_revision is not None and after_revision < 0:
        raise InvalidArgument.field("after_revision", "must not be negative")


def _check_probe(probe: ProbeSpec) -> list[FieldViolation]:
    violations = validate.check_range("instance.probe.interval", probe.interval_s, *PROBE_INTERVAL_S)
    violations += validate.check_range("instance.probe.timeout", probe.timeout_s, 0.01, probe.interval_s)
    violations += validate.check_range("instance.probe.threshold", probe.threshold, *PROBE_THRESHOLD, unit="")
    if probe.deregister_critical_after_s:
        violations += validate.check_range(
            "instance.probe.deregister_critical_after",
            probe.deregister_critical_after_s,
            *PROBE_DEREGISTER_AFTER_S,
        )
    violations += validate.check_text(
        "instance.probe.service_name", probe.service_name, MAX_PROBE_SERVICE_NAME
    )
    return violations
