"""The current snapshot of xDS resources, rebuilt once per version and shared by every ADS stream."""

from __future__ import annotations

from control_plane.core.mesh import Mesh
from control_plane.core.registry import Registry
from control_plane.core.signal import Signal
from control_plane.models import RegistryChange
from control_plane.servicers.xds.resources import Snapshot, build, version_info


class Snapshots:
    """Follows the registry and the mesh; `changed` wakes the streams after every applied change."""

    def __init__(self, registry: Registry, mesh: Mesh) -> None:
        self._registry = registry
        self._mesh = mesh
        self._current: Snapshot | None = None
        self.changed = Signal()
        registry.listeners.append(self._on_registry_change)
        mesh.listeners.append(self.changed.notify)

    def _on_registry_change(self, change: RegistryChange) -> None:
        self.changed.notify()

    @property
    def version(self) -> str:
        """The version of what this replica has applied: registry revision, mesh revision."""
        return version_info(self._registry.feed.revision, self._mesh.revision)

    def current(self) -> Snapshot:
        """The resources at the applied version (built on first use after each change)."""
        version = self.version
        if self._current is None or self._current.version != version:
            routes = {route.service: route for route in self._mesh.routes()}
            self._current = build(version, self._registry.instances(), routes)
        return self._current
