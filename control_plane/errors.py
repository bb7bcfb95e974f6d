"""The domain errors, under the server's own name.

They are defined once, in the client distribution (`hms_mgmt.errors`, plain Python without gRPC),
because the SDK raises the same types for the statuses the servicers map them to: a caller catches
`errors.NotFound` whether it runs in the server or talks to it. The server may import the SDK, never
the reverse (import-linter contracts in pyproject.toml).
"""

from __future__ import annotations

from hms_mgmt.errors import (
    QUOTE_MAX,
    AlreadyExists,
    ControlPlaneError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    NotRegistered,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
    quote,
)

__all__ = [
    "QUOTE_MAX",
    "AlreadyExists",
    "ControlPlaneError",
    "FailedPrecondition",
    "FieldViolation",
    "InvalidArgument",
    "NotFound",
    "NotRegistered",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "Unavailable",
    "quote",
]
