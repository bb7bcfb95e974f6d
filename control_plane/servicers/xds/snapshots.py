"""The xDS resources this replica serves, kept current service by service, and the streams to wake.

A registry change touches one service, so it rebuilds that service's ClusterLoadAssignments alone
(all of its resources when the service appears or goes); a mesh change rebuilds the services whose
policy it altered. A rebuilt resource is serialized once (encoding.Resource) and replaces the stored
one only when its bytes differ: an unchanged resource keeps its object, and a stream holding it has
nothing to send. Only the streams subscribed to a resource that changed (by name, or to every
resource of its type) are woken. Pending changes are applied at the next turn of the event loop
(a burst, such as a replica catching up, rebuilds each service once) or sooner when a stream reads:
what a stream reads always matches `version`.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, TypeVar

from control_plane.core.mesh import Mesh
from control_plane.core.registry import Registry
from control_plane.models import RegistryChange
from control_plane.servicers.xds import encoding, resources
from control_plane.servicers.xds.encoding import Resource
from control_plane.servicers.xds.resources import TYPES, version_info

# What a subscription index is keyed by: a type, or a (type, name).
_Key = TypeVar("_Key", str, tuple[str, str])


class Subscriber(Protocol):
    """A stream, told when a resource it subscribed to changed (hashed by identity)."""

    def changed(self, type_url: str) -> None:
        """A resource of `type_url` it subscribed to changed (once per type and refresh; must not block)."""


class Snapshots:
    """Follows the registry and the mesh; wakes each subscribed stream whose resources changed."""

    def __init__(self, registry: Registry, mesh: Mesh) -> None:
        self._registry = registry
        self._mesh = mesh
        self._resources: dict[str, dict[str, Resource]] = {type_url: {} for type_url in TYPES}
        # The (type, name) of each service's resources: a rebuild removes those it no longer makes.
        self._owned: dict[str, frozenset[tuple[str, str]]] = {}
        # Services to rebuild: True for all their resources (policy changed), False for assignments.
        self._dirty: dict[str, bool] = {}
        self._built = False
        self._refresh_pending = False
        # The (registry revision, mesh revision) applied, and its version_info.
        self._at = (-1, -1)
        self._version = ""
        # Response bodies of this version, by (type, names): streams asking the same share one.
        self._bodies: dict[tuple[str, tuple[str, ...]], bytes] = {}
        # Subscribed streams (each a wake-up event) by (type, name), and by type for "every resource".
        self._by_name: dict[tuple[str, str], set[Subscriber]] = {}
        self._by_type: dict[str, set[Subscriber]] = {}
        self._subscriptions: dict[Subscriber, dict[str, frozenset[str]]] = {}
        registry.listeners.append(self._on_registry_change)
        mesh.listeners.append(self._on_mesh_change)

    @property
    def version(self) -> str:
        """The version of the resources as last refreshed: `<registry revision>.<mesh revision>`."""
        return self._version

    # -- subscriptions -----------------------------------------------------------------------

    def subscribe(self, stream: Subscriber, type_url: str, names: frozenset[str]) -> None:
        """`stream` holds `names` of `type_url` (every resource of it when empty): set it when they change."""
        held = self._subscriptions.setdefault(stream, {})
        before = held.get(type_url)
        if before is not None:
            self._unindex(stream, type_url, before)
        held[type_url] = names
        if names:
            for name in names:
                self._by_name.setdefault((type_url, name), set()).add(stream)
        else:
            self._by_type.setdefault(type_url, set()).add(stream)

    def unsubscribe(self, stream: Subscriber) -> None:
        """The stream ended: wake it no more."""
        for type_url, names in self._subscriptions.pop(stream, {}).items():
            self._unindex(stream, type_url, names)

    def _unindex(self, stream: Subscriber, type_url: str, names: frozenset[str]) -> None:
        if not names:
            _discard(self._by_type, type_url, stream)
        for name in names:
            _discard(self._by_name, (type_url, name), stream)

    # -- reading -----------------------------------------------------------------------------

    def pick(self, type_url: str, names: frozenset[str]) -> dict[str, Resource]:
        """The resources of `type_url` among `names` (every one of the type when `names` is empty)."""
        of_type = self._resources[type_url]
        if not names:
            return dict(of_type)
        return {name: of_type[name] for name in names if name in of_type}

    def body(self, type_url: str, chosen: dict[str, Resource]) -> bytes:
        """The response body (all but the nonce) sending `chosen`, as `pick` gave it at this version."""
        key = (type_url, tuple(sorted(chosen)))
        found = self._bodies.get(key)
        if found is None:
            found = encoding.body(self._version, type_url, [chosen[name] for name in key[1]])
            self._bodies[key] = found
        return found

    # -- following changes -------------------------------------------------------------------

    def _on_registry_change(self, change: RegistryChange) -> None:
        self._dirty.setdefault(change.instance.service, False)
        self._schedule()

    def _on_mesh_change(self, services: frozenset[str]) -> None:
        for service in services:
            self._dirty[service] = True
        self._schedule()

    def _schedule(self) -> None:
        if self._refresh_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a synchronous caller): the next read refreshes
        self._refresh_pending = True
        loop.call_soon(self._scheduled_refresh)

    def _scheduled_refresh(self) -> None:
        self._refresh_pending = False
        self.refresh()

    def refresh(self) -> None:
        """Apply what changed since the last refresh, and wake the streams that hold it."""
        at = (self._registry.feed.revision, self._mesh.revision)
        if at == self._at and not self._dirty:
            return
        changed: list[tuple[str, str]] = []
        if self._built:
            dirty, self._dirty = self._dirty, {}
        else:
            # The first read: every service, as the registry and the mesh were loaded.
            self._built = True
            self._dirty = {}
            dirty = dict.fromkeys({i.service for i in self._registry.instances()}, True)
            dirty.update(dict.fromkeys((r.service for r in self._mesh.routes()), True))
        for service in sorted(dirty):
            self._rebuild(service, dirty[service], changed)
        self._at = at
        self._version = version_info(*at)
        self._bodies.clear()
        woken: set[tuple[Subscriber, str]] = set()
        for type_url, name in changed:
            woken.update((stream, type_url) for stream in self._by_name.get((type_url, name), ()))
            woken.update((stream, type_url) for stream in self._by_type.get(type_url, ()))
        for stream, type_url in woken:
            stream.changed(type_url)

    def _rebuild(self, service: str, whole: bool, changed: list[tuple[str, str]]) -> None:
        """Rebuild one service's resources (only its assignments unless `whole` or it came or went)."""
        members = self._registry.instances(service)
        route = self._mesh.route(service)
        owned = self._owned.get(service, frozenset())
        exists = bool(members) or route is not None
        if whole or not owned or not exists:
            built = resources.for_service(service, members, route)
            gone = owned - built.keys()
            if built:
                self._owned[service] = frozenset(built)
            else:
                self._owned.pop(service, None)
        else:
            # Same policy, still there: only the instances changed, and they are in the assignments.
            built = resources.assignments(service, members, route)
            gone = frozenset()
        for (type_url, name), message in built.items():
            resource = Resource.of(name, message)
            of_type = self._resources[type_url]
            held = of_type.get(name)
            if held is None or held.element != resource.element:
                of_type[name] = resource
                changed.append((type_url, name))
        for type_url, name in gone:
            del self._resources[type_url][name]
            changed.append((type_url, name))


def _discard(index: dict[_Key, set[Subscriber]], key: _Key, stream: Subscriber) -> None:
    streams = index.get(key)
    if streams is not None:
        streams.discard(stream)
        if not streams:
            del index[key]
