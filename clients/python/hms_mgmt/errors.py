"""Domain errors: they carry data for callers and know nothing of gRPC (the edge maps them)."""

from __future__ import annotations

from dataclasses import dataclass

# How much of a caller's value an error message quotes: enough to recognise it, never enough to
# push a status past gRPC's metadata limits (a 10,000-character id echoed back breaks clients).
QUOTE_MAX = 64


def quote(value: str, limit: int = QUOTE_MAX) -> str:
    """`value` as repr() for an error message, cut to a prefix of `limit` characters when longer."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value)} characters)"


class ControlPlaneError(Exception):
    """Base of every error the control plane raises on purpose."""

    reason = "CONTROL_PLANE_ERROR"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One field of a request that is not acceptable, and why."""

    field: str
    description: str


class InvalidArgument(ControlPlaneError):
    """The request is malformed; nothing was changed."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation] | FieldViolation) -> None:
        self.violations = violations if isinstance(violations, list) else [violations]
        super().__init__(
            "; ".join(f"{v.field}: {v.description}" if v.field else v.description for v in self.violations)
        )

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        """Shortcut for a single violation."""
        return cls(FieldViolation(field, description))


class NotFound(ControlPlaneError):
    """The thing named does not exist (any more)."""

    reason = "NOT_FOUND"

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} {quote(key)} not found")
        self.kind, self.key = kind, key


class AlreadyExists(ControlPlaneError):
    """The thing to create exists already."""

    reason = "ALREADY_EXISTS"

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} {quote(key)} already exists")
        self.kind, self.key = kind, key


class FailedPrecondition(ControlPlaneError):
    """The system is not in a state that allows the operation."""

    reason = "FAILED_PRECONDITION"


class PermissionDenied(ControlPlaneError):
    """The caller's token may not act on this resource (a worker token outside its services)."""

    reason = "PERMISSION_DENIED"


class NotRegistered(FailedPrecondition):
    """A worker's instance is not (or no longer) in the registry: it must register again, not just retry.

    `cause` says why it is gone: "not_registered", or the registry's reason ("lease_expired", ...).
    """

    reason = "NOT_REGISTERED"

    def __init__(self, service: str, instance_id: str, cause: str) -> None:
        super().__init__(
            f"instance {service}/{instance_id} is not registered ({cause}): register it again, then subscribe"
        )
        self.service, self.instance_id, self.cause = service, instance_id, cause

    @property
    def metadata(self) -> dict[str, str]:
        """What the wire's ErrorInfo carries besides the reason."""
        return {"service": self.service, "instance_id": self.instance_id, "cause": self.cause}


class OutOfRange(ControlPlaneError):
    """A position (revision, sequence) is outside what is kept."""

    reason = "OUT_OF_RANGE"

    def __init__(self, message: str, **metadata: str) -> None:
        super().__init__(message)
        self.metadata = metadata


class ResourceExhausted(ControlPlaneError):
    """A limit was reached (queue bound, quota); retry later or resume."""

    reason = "RESOURCE_EXHAUSTED"


class Unavailable(ControlPlaneError):
    """The control plane is shutting down or a dependency is unreachable."""

    reason = "UNAVAILABLE"
