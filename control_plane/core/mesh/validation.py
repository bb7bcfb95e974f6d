"""What the mesh accepts: a policy is checked whole and refused with all its violations at once."""

from __future__ import annotations

from control_plane.core import validate
from control_plane.core.versions import parse_version_filter
from control_plane.errors import FieldViolation, InvalidArgument
from control_plane.models import RoutePolicy

# The status codes gRPC's xDS clients retry on (gRFC A44); Envoy's other retry_on values mean nothing to them.
RETRYABLE_CODES = frozenset(
    {"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}
)
MAX_SPLITS = 16
MAX_WEIGHT = 10_000
# gRPC makes at most 5 attempts whatever the policy says.
MAX_RETRIES = 4
MAX_TIMEOUT_S = 3600.0
# grpcio 1.85 left calls retried with a 1 ms backoff hanging until their deadline (10 ms and more work).
MIN_BACKOFF_S = 0.01
MAX_BACKOFF_S = 3600.0
MAX_CONCURRENT = 1_000_000


def check_route(route: RoutePolicy) -> None:
    """Refuse a policy that breaks any rule (field names as on the wire, under `route.`)."""
    violations = validate.check_name("route.service", route.service)
    if len(route.splits) > MAX_SPLITS:
        violations.append(
            FieldViolation("route.splits", f"at most {MAX_SPLITS} splits (got {len(route.splits)})")
        )
    seen: set[str] = set()
    for n, split in enumerate(route.splits):
        at = f"route.splits[{n}]"
        if not split.version_range.strip():
            violations.append(FieldViolation(f"{at}.version_range", "must not be empty"))
        else:
            try:
                parse_version_filter(split.version_range)
            except ValueError as exc:
                violations.append(FieldViolation(f"{at}.version_range", str(exc)))
            if split.version_range.strip() in seen:
                violations.append(FieldViolation(f"{at}.version_range", "appears twice"))
            seen.add(split.version_range.strip())
        if not 1 <= split.weight <= MAX_WEIGHT:
            violations.append(FieldViolation(f"{at}.weight", f"must be 1..{MAX_WEIGHT} (got {split.weight})"))
    if not 0 <= route.timeout_s <= MAX_TIMEOUT_S:
        violations.append(FieldViolation("route.timeout", f"must be 0..{MAX_TIMEOUT_S:g}s"))
    if route.retry is not None:
        retry = route.retry
        if not retry.retry_on:
            violations.append(FieldViolation("route.retry.retry_on", "name at least one status code"))
        for n, code in enumerate(retry.retry_on):
            if code not in RETRYABLE_CODES:
                violations.append(
                    FieldViolation(
                        f"route.retry.retry_on[{n}]",
                        f"{code[:40]!r} is not one of {', '.join(sorted(RETRYABLE_CODES))}",
                    )
                )
        if not 1 <= retry.num_retries <= MAX_RETRIES:
            violations.append(
                FieldViolation(
                    "route.retry.num_retries", f"must be 1..{MAX_RETRIES} (got {retry.num_retries})"
                )
            )
        if not MIN_BACKOFF_S <= retry.base_interval_s <= MAX_BACKOFF_S:
            violations.append(FieldViolation("route.retry.base_interval", "must be 10ms..1h"))
        if not retry.base_interval_s <= retry.max_interval_s <= MAX_BACKOFF_S:
            violations.append(FieldViolation("route.retry.max_interval", "must be base_interval..1h"))
    if not 0 <= route.max_concurrent_requests <= MAX_CONCURRENT:
        violations.append(FieldViolation("route.max_concurrent_requests", f"must be 0..{MAX_CONCURRENT}"))
    if violations:
        raise InvalidArgument(violations)


def check_service(service: str) -> None:
    """Refuse a service name that could not be registered."""
    violations = validate.check_name("service", service)
    if violations:
        raise InvalidArgument(violations)
