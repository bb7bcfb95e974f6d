"""Route policies of the services: kept in memory for the xDS edge, persisted first, followed across replicas."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from control_plane.core.loops import on_signal
from control_plane.core.mesh import validation
from control_plane.core.signal import Signal
from control_plane.errors import NotFound
from control_plane.models import RoutePolicy
from control_plane.storage.base import Store

logger = logging.getLogger(__name__)

# Replicas follow each other by notification; this bounds how long a lost one could delay a change.
_FOLLOW_FALLBACK_S = 5.0


class Mesh:
    """The route policy of each service and the mesh revision; every change is stored before it is seen."""

    def __init__(self, store: Store, *, wall_clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._wall = wall_clock
        self._routes: dict[str, RoutePolicy] = {}
        self.revision = 0
        # Called after each change is applied (here or, with replicas, from another replica), with the
        # services whose policy it set, replaced or removed: the xDS edge rebuilds those alone.
        self.listeners: list[Callable[[frozenset[str]], None]] = []
        self._cluster = store.cluster
        self._follow_wakeup = Signal()
        self._cluster.subscribe("mesh", lambda _: self._follow_wakeup.notify())
        # Changes are applied in revision order: one reload at a time, never going back.
        self._reloading = asyncio.Lock()

    async def load(self) -> None:
        """Read every stored policy (at start, and when another replica changed one)."""
        async with self._reloading:
            snapshot = await self._store.mesh_load()
            if snapshot.revision <= self.revision:
                return
            routes = {route.service: route for route in snapshot.routes}
            changed = frozenset(
                service
                for service in routes.keys() | self._routes.keys()
                if routes.get(service) != self._routes.get(service)
            )
            self._routes = routes
            self.revision = snapshot.revision
        self._announce(changed)

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the other replicas' changes until `stop` (nothing to do on a store no one shares)."""
        if self._cluster.shared:
            await on_signal(
                stop, self.load, [self._follow_wakeup], _FOLLOW_FALLBACK_S, "following mesh changes"
            )

    async def set_route(self, route: RoutePolicy) -> RoutePolicy:
        """Store a service's policy (replacing any); returns it with its revision."""
        validation.check_route(route)
        stored = await self._store.mesh_put(route, now=self._wall())
        # Read back whole (a few rows): changes of other replicas in between are applied in order too.
        await self.load()
        return stored

    async def delete_route(self, service: str) -> int:
        """Remove a service's policy; NotFound when it has none. Returns the revision of the removal."""
        validation.check_service(service)
        revision = await self._store.mesh_delete(service)
        if revision is None:
            raise NotFound("route", service)
        await self.load()
        return revision

    def route(self, service: str) -> RoutePolicy | None:
        """The policy of `service`, or None (defaults apply)."""
        return self._routes.get(service)

    def get_route(self, service: str) -> RoutePolicy:
        """The policy of `service`; NotFound when it has none."""
        validation.check_service(service)
        route = self._routes.get(service)
        if route is None:
            raise NotFound("route", service)
        return route

    def routes(self) -> list[RoutePolicy]:
        """Every policy, in service name order."""
        return [self._routes[name] for name in sorted(self._routes)]

    def _announce(self, services: frozenset[str]) -> None:
        for listener in self.listeners:
            listener(services)
