"""Domain values shared by the cores and the store: frozen dataclasses and StrEnums, no protobuf."""

from control_plane.models.bus import (
    NO_HEADERS,
    AckMode,
    AppendResult,
    ConsumerConfig,
    OutgoingMessage,
    Position,
    RetentionPolicy,
    StartPosition,
    StoredConsumer,
    StoredMessage,
    SubjectStats,
)
from control_plane.models.registry import (
    ChangeType,
    DownReason,
    Health,
    Instance,
    ProbeSpec,
    RegistryChange,
)

__all__ = [
    "NO_HEADERS",
    "AckMode",
    "AppendResult",
    "ChangeType",
    "ConsumerConfig",
    "DownReason",
    "Health",
    "Instance",
    "OutgoingMessage",
    "Position",
    "ProbeSpec",
    "RegistryChange",
    "RetentionPolicy",
    "StartPosition",
    "StoredConsumer",
    "StoredMessage",
    "SubjectStats",
]
