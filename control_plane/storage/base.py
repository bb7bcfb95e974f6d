"""The Store protocol: the whole persistence API the cores may use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from control_plane.models import ChangeType, Instance, RegistryChange


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    """What the registry reloads at start: live instances, the revision, recent changes."""

    instances: list[Instance]
    revision: int
    changes: list[RegistryChange]


class Store(Protocol):
    """Durable state of the control plane; every write is on disk when its await returns."""

    async def registry_commit(
        self, instance: Instance, change_type: ChangeType, *, reason: str, now: float
    ) -> RegistryChange:
        """Store (or, for DOWN, delete) `instance` and append the change at the next revision."""
        ...

    async def registry_load(self, history: int) -> RegistrySnapshot:
        """Every stored instance, the current revision and the last `history` changes."""
        ...

    async def registry_compact(self, keep: int) -> int:
        """Forget all but the last `keep` changes; return how many were dropped."""
        ...

    async def close(self) -> None:
        """Finish pending writes and release the backend; safe to call twice."""
        ...
