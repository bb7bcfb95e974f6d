"""Service registry: instances hold a lease and disappear the moment it lapses."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

from control_plane.core.loops import Guard, on_signal
from control_plane.core.registry import validation
from control_plane.core.registry.leases import Lease, Leases
from control_plane.core.registry.watch import ChangeFeed, Watcher
from control_plane.core.signal import Signal, Wait, wait_any
from control_plane.errors import InvalidArgument, NotFound
from control_plane.models import ChangeType, DownReason, Health, Instance, ProbeSpec, RegistryChange
from control_plane.settings import RegistrySettings
from control_plane.storage.base import Store

logger = logging.getLogger(__name__)

# Mutations of one instance are serialised; striping bounds the number of locks.
_LOCK_STRIPES = 64
# Replicas follow each other by notification; this bounds how long a lost one could delay a change.
_FOLLOW_FALLBACK_S = 5.0
# Lapsed leases evicted per commit: a thousand lapsing together cost two commits, not a thousand.
_EVICT_BATCH = 500


@dataclass(frozen=True, slots=True)
class Registration:
    """What a service asks for when it registers; field names mirror the wire request."""

    service: str
    address: str
    instance_id: str = ""
    version: str = ""
    tags: tuple[str, ...] = ()
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    probe: ProbeSpec | None = None
    ttl_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ServiceSummary:
    """Counts of one service for ListServices."""

    name: str
    instances: int
    passing: int
    versions: tuple[str, ...]


class Registry:
    """Keeps the live view in memory (reads never touch the store) and persists every change first."""

    def __init__(
        self,
        store: Store,
        settings: RegistrySettings,
        *,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        wait: Wait = wait_any,
    ) -> None:
        self._store = store
        self._settings = settings
        self._wall = wall_clock
        self._now = monotonic
        self._wait = wait  # times the expiry sweep on the `monotonic` clock
        self._services: dict[str, dict[str, Instance]] = {}
        self._sorted: dict[str, list[Instance]] = {}
        # The passing members of each service, in the same order: what a Lookup without filters answers,
        # kept as changes apply rather than filtered on every call.
        self._passing: dict[str, list[Instance]] = {}
        self._rotation: dict[str, itertools.count[int]] = {}
        self._leases = Leases()
        self._locks = [asyncio.Lock() for _ in range(_LOCK_STRIPES)]
        self.feed = ChangeFeed(settings.history_size, settings.watch_queue_size)
        # Instances this replica removed for a reason of its own (lease lapsed, critical too long), by
        # (service, reason): counted where the eviction is decided, so replicas do not count it twice.
        self.evictions: dict[tuple[str, str], int] = {}
        # Called with each applied change; the composition root subscribes the prober and the engine.
        self.listeners: list[Callable[[RegistryChange], None]] = []
        # Called with True/False when this replica wins or loses leadership.
        self.leadership_listeners: list[Callable[[bool], None]] = []
        # Replicas sharing the store: their commits arrive by notification, renewals are shared.
        self._cluster = store.cluster
        self._follow_wakeup = Signal()
        self._leadership = Signal()
        self._cluster.subscribe("registry", lambda _: self._follow_wakeup.notify())
        self._cluster.on_leadership(self._on_leadership)

    # -- lifecycle ---------------------------------------------------------------------------

    async def load(self) -> None:
        """Reload stored instances; each lease gets a fresh TTL (or the restart grace) to be renewed."""
        snapshot = await self._store.registry_load(self._settings.history_size)
        self.feed.load(snapshot.revision, snapshot.changes)
        now = self._now()
        for instance in snapshot.instances:
            self._put(instance)
            self._leases.arm(instance.lease_id, now + max(instance.ttl_s, self._settings.restart_grace_s))
        if snapshot.instances:
            logger.info("restored %d instances at revision %d", len(snapshot.instances), snapshot.revision)

    async def run(self, stop: asyncio.Event) -> None:
        """Expire leases and compact the change log (on the leader), follow other replicas, until `stop`."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._expire_leases(stop))
            tasks.create_task(self._compact_history(stop))
            if self._cluster.shared:
                tasks.create_task(
                    on_signal(
                        stop,
                        self.catch_up,
                        [self._follow_wakeup],
                        _FOLLOW_FALLBACK_S,
                        "following registry changes",
                    )
                )
                tasks.create_task(
                    on_signal(
                        stop, self._share_renewals, [self._leases.renewed], None, "sharing lease renewals"
                    )
                )

    @property
    def leader(self) -> bool:
        """Whether this replica runs lease expiry and probes (always, when no other replica shares the store)."""
        return self._cluster.leader

    def _on_leadership(self, leader: bool) -> None:
        if leader:
            # Leases renewed on the old leader get a fresh TTL here, then the shared renewals decide.
            now = self._now()
            for lease_id, key in list(self._leases.held()):
                self._leases.arm(lease_id, now + self._services[key[0]][key[1]].ttl_s)
        self._leadership.notify()
        for listener in self.leadership_listeners:
            listener(leader)

    # -- commands ----------------------------------------------------------------------------

    async def register(self, request: Registration) -> tuple[Instance, Lease]:
        """Register or update an instance; re-registering keeps its lease id and renews it."""
        ttl_s = request.ttl_s or self._settings.default_ttl_s
        validation.check_registration(request, ttl_s, self._settings)
        instance_id = request.instance_id or str(uuid.uuid4())
        key = (request.service, instance_id)
        async with self._lock(key):
            existing = self._services.get(request.service, {}).get(instance_id)
            health = Health.CRITICAL if request.probe else Health.PASSING
            if existing is not None and existing.probe is not None and request.probe is not None:
                health = existing.health
            instance = Instance(
                service=request.service,
                instance_id=instance_id,
                address=request.address,
                lease_id=existing.lease_id if existing else uuid.uuid4().hex,
                ttl_s=ttl_s,
                registered_at=existing.registered_at if existing else self._wall(),
                version=request.version,
                tags=tuple(dict.fromkeys(request.tags)),
                metadata=dict(request.metadata),
                probe=request.probe,
                health=health,
            )
            change_type = ChangeType.UPDATED if existing else ChangeType.UP
            change = await self._store.registry_commit(instance, change_type, reason="", now=self._wall())
            await self._settle(change)
            lease = self._renew(instance.lease_id)
            return change.instance, lease

    def heartbeat(self, lease_id: str) -> Lease:
        """Renew a lease; NotFound once it has lapsed or was revoked."""
        if not lease_id:
            raise InvalidArgument.field("lease_id", "must not be empty")
        if lease_id not in self._leases:
            raise NotFound("lease", lease_id)
        return self._renew(lease_id)

    def renew(self, lease_id: str) -> Lease | None:
        """Renew a lease if it is still known; None otherwise (KeepAlive answers not_found)."""
        return self._renew(lease_id) if lease_id in self._leases else None

    async def deregister(self, service: str, instance_id: str) -> int:
        """Remove an instance now; returns the revision of its DOWN change."""
        validation.check_instance(service, instance_id)
        change = await self._remove((service, instance_id), DownReason.DEREGISTERED, lease_id=None)
        if change is None:
            raise NotFound("instance", f"{service}/{instance_id}")
        return change.revision

    async def set_health(self, key: tuple[str, str], health: Health) -> None:
        """Record a probe verdict; a no-op when the instance is gone or already in that state."""
        async with self._lock(key):
            current = self._services.get(key[0], {}).get(key[1])
            if current is None or current.health is health:
                return
            change = await self._store.registry_commit(
                dataclasses.replace(current, health=health), ChangeType.HEALTH, reason="", now=self._wall()
            )
            await self._settle(change)

    async def evict(self, key: tuple[str, str], reason: DownReason, lease_id: str | None = None) -> None:
        """Remove an instance for `reason` (lease lapsed, critical too long) unless it is already gone."""
        if await self._remove(key, reason, lease_id=lease_id) is not None:
            self._count_eviction(key[0], reason)

    # -- queries -----------------------------------------------------------------------------

    def lookup(
        self,
        service: str,
        *,
        tags: tuple[str, ...] = (),
        version: str = "",
        include_unhealthy: bool = False,
        limit: int = 0,
    ) -> tuple[list[Instance], int]:
        """Matching instances in a rotating order, and the revision they reflect."""
        version_filter = validation.check_lookup(service, version)
        candidates = self._sorted.get(service)
        if not candidates:
            return [], self.feed.revision
        if not tags and version_filter is None:
            matches = candidates if include_unhealthy else self._passing[service]
        else:
            wanted_tags = set(tags)
            matches = [
                i
                for i in candidates
                if (include_unhealthy or i.health is Health.PASSING)
                and (not wanted_tags or wanted_tags.issubset(i.tags))
                and (version_filter is None or version_filter.matches(i.version))
            ]
        if not matches:
            return [], self.feed.revision
        # A new list either way: `matches` may be the live view's own.
        start = next(self._rotation[service]) % len(matches)
        matches = matches[start:] + matches[:start]
        if limit:
            matches = matches[:limit]
        return matches, self.feed.revision

    def list_services(self) -> tuple[list[ServiceSummary], int]:
        """Every service with its counts, in name order."""
        summaries = [
            ServiceSummary(
                name=name,
                instances=len(instances),
                passing=sum(1 for i in instances.values() if i.health is Health.PASSING),
                versions=tuple(sorted({i.version for i in instances.values() if i.version})),
            )
            for name, instances in sorted(self._services.items())
        ]
        return summaries, self.feed.revision

    def instances(self, service: str = "") -> list[Instance]:
        """Every registered instance (of one service, or all), whatever its health."""
        if service:
            return list(self._sorted.get(service, []))
        return [i for name in sorted(self._sorted) for i in self._sorted[name]]

    def lease_left(self, lease_id: str) -> float | None:
        """Seconds until the lease lapses unless renewed (as this replica sees it); None for no such lease."""
        deadline = self._leases.deadline(lease_id)
        return None if deadline is None else max(0.0, deadline - self._now())

    @contextmanager
    def watch(
        self, service: str, after_revision: int | None
    ) -> Iterator[tuple[Watcher, list[Instance], int]]:
        """A watcher, plus the snapshot and revision it starts from (one atomic step)."""
        validation.check_watch(service, after_revision)
        snapshot = self.instances(service) if after_revision is None else []
        with self.feed.watch(service, after_revision) as watcher:
            yield watcher, snapshot, self.feed.revision

    # -- internals ---------------------------------------------------------------------------

    def _lock(self, key: tuple[str, str]) -> asyncio.Lock:
        return self._locks[hash(key) % _LOCK_STRIPES]

    def _put(self, instance: Instance) -> None:
        service, instance_id = instance.key
        members = self._services.setdefault(service, {})
        members[instance_id] = instance
        self._sort(service, members)
        self._rotation.setdefault(service, itertools.count())
        self._leases.hold(instance.lease_id, instance.key)

    def _sort(self, service: str, members: dict[str, Instance]) -> None:
        ordered = self._sorted[service] = [members[i] for i in sorted(members)]
        self._passing[service] = [i for i in ordered if i.health is Health.PASSING]

    def _drop(self, instance: Instance) -> None:
        service, instance_id = instance.key
        members = self._services.get(service, {})
        members.pop(instance_id, None)
        if members:
            self._sort(service, members)
        else:
            self._services.pop(service, None)
            self._sorted.pop(service, None)
            self._passing.pop(service, None)
            self._rotation.pop(service, None)
        self._leases.drop(instance.lease_id)

    async def _settle(self, change: RegistryChange) -> None:
        """Apply a change this replica committed, after any that other replicas committed before it."""
        if change.revision > self.feed.revision + 1 and self._cluster.shared:
            await self.catch_up()
        if change.revision > self.feed.revision:
            self._apply(change)

    async def catch_up(self) -> None:
        """Apply, in order, every change other replicas committed since the last one applied here."""
        while True:
            changes = await self._store.registry_changes_after(self.feed.revision, 1000)
            for change in changes:
                if change.revision <= self.feed.revision:
                    continue  # applied meanwhile
                if change.revision != self.feed.revision + 1:
                    # Compacted away before this replica read it (it was stalled for a long time).
                    logger.error(
                        "registry changes %d..%d are gone", self.feed.revision + 1, change.revision - 1
                    )
                if change.type is not ChangeType.DOWN and change.instance.lease_id not in self._leases:
                    self._leases.arm(change.instance.lease_id, self._now() + change.instance.ttl_s)
                self._apply(change)
            if len(changes) < 1000:
                return

    def _apply(self, change: RegistryChange) -> None:
        """Make a committed change visible: memory, watchers, listeners, in revision order."""
        if change.revision != self.feed.revision + 1:
            logger.warning("registry change %d applied after %d", change.revision, self.feed.revision)
        if change.type is ChangeType.DOWN:
            self._drop(change.instance)
        else:
            self._put(change.instance)
        self.feed.publish(change)
        for listener in self.listeners:
            listener(change)

    async def _share_renewals(self) -> None:
        """Write renewals made here where the leader can see them, a batch at a time.

        A batch whose write fails is kept (merged with renewals made meanwhile) and written on the
        next try: dropped, the leader would expire a lease that was renewed.
        """
        while batch := self._leases.take_renewals():
            try:
                await self._store.registry_renew(batch)
            except BaseException:
                self._leases.keep_renewals(batch)
                raise

    async def _remove(
        self, key: tuple[str, str], reason: DownReason, lease_id: str | None
    ) -> RegistryChange | None:
        async with self._lock(key):
            current = self._services.get(key[0], {}).get(key[1])
            if current is None or (lease_id is not None and current.lease_id != lease_id):
                return None
            # Revoke first so that a heartbeat racing with the commit is refused, not silently lost.
            deadline = self._leases.revoke(current.lease_id)
            try:
                change = await self._store.registry_commit(
                    current, ChangeType.DOWN, reason=reason.value, now=self._wall()
                )
            except BaseException:
                # Not removed: the lease stands as it was.
                self._leases.restore(current.lease_id, current.key, deadline)
                raise
            await self._settle(change)
            return change

    @asynccontextmanager
    async def _locked(self, keys: Iterable[tuple[str, str]]) -> AsyncIterator[None]:
        """Hold the locks of many instances, taken in one order (so two holders cannot deadlock)."""
        async with contextlib.AsyncExitStack() as held:
            for stripe in sorted({hash(key) % _LOCK_STRIPES for key in keys}):
                await held.enter_async_context(self._locks[stripe])
            yield

    def _renew(self, lease_id: str) -> Lease:
        key = self._leases.holder(lease_id)
        instance = self._services[key[0]][key[1]]
        self._leases.arm(lease_id, self._now() + instance.ttl_s)
        expires_at = self._wall() + instance.ttl_s
        if self._cluster.shared:
            self._leases.share(lease_id, expires_at)
        return Lease(lease_id, instance.ttl_s, expires_at)

    async def _expire_leases(self, stop: asyncio.Event) -> None:
        """Evict each instance exactly when its last renewal plus its TTL passes."""
        guard = Guard("lease expiry", stop, wait=self._wait)
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                if not self.leader:
                    await self._wait([self._leadership.waiter(), stopping], None)
                    continue
                # Taken first: a lease armed while this pass evicts wakes the next wait at once.
                wakeup = self._leases.earlier.waiter()
                if not await guard.run(self._expire_due):
                    continue  # what is still due is evicted by the next pass, after the backoff
                deadline = self._leases.next_deadline()
                delay = deadline - self._now() if deadline is not None else None
                await self._wait([wakeup, stopping], delay)
        finally:
            stopping.cancel()

    async def _expire_due(self) -> None:
        """Evict every instance whose lease deadline has passed, many to a commit."""
        due = self._leases.pop_due(self._now())
        try:
            if due and self._cluster.shared:
                due = await self._still_due(due)
            for start in range(0, len(due), _EVICT_BATCH):
                await self._evict_lapsed(due[start : start + _EVICT_BATCH])
        except BaseException:
            self._leases.requeue(due)  # those not evicted stay due: the next pass takes them again
            raise

    async def _evict_lapsed(self, lease_ids: list[str]) -> None:
        """Evict the instances of lapsed leases with one commit (a DOWN change each)."""
        keys = {lease_id: self._leases.holder(lease_id) for lease_id in lease_ids if lease_id in self._leases}
        async with self._locked(keys.values()):
            now = self._now()
            lapsed: list[tuple[Instance, float]] = []
            for lease_id, (service, instance_id) in keys.items():
                current = self._services.get(service, {}).get(instance_id)
                deadline = self._leases.deadline(lease_id)
                if current is None or current.lease_id != lease_id or deadline is None:
                    continue  # removed, or registered anew, while the locks were taken
                if deadline > now:
                    self._leases.requeue([lease_id])  # renewed meanwhile
                    continue
                lapsed.append((current, deadline))
            if not lapsed:
                return
            # Revoked first so that a heartbeat racing with the commit is refused, not silently lost.
            for instance, _ in lapsed:
                self._leases.revoke(instance.lease_id)
            try:
                changes = await self._store.registry_remove(
                    [instance for instance, _ in lapsed],
                    reason=DownReason.LEASE_EXPIRED.value,
                    now=self._wall(),
                )
            except BaseException:
                for instance, deadline in lapsed:
                    self._leases.restore(instance.lease_id, instance.key, deadline)
                raise
            for change in changes:
                self._count_eviction(change.instance.service, DownReason.LEASE_EXPIRED)
                await self._settle(change)

    def _count_eviction(self, service: str, reason: DownReason) -> None:
        counted = (service, reason.value)
        self.evictions[counted] = self.evictions.get(counted, 0) + 1

    async def _still_due(self, due: list[str]) -> list[str]:
        """Of leases due here, those no replica renewed meanwhile; the others are re-armed."""
        try:
            shared = await self._store.registry_lease_expiry(due)
        except Exception:
            logger.exception("reading shared lease renewals failed; expiring later")
            shared = {lease_id: self._wall() + 1.0 for lease_id in due}
        wall, now = self._wall(), self._now()
        lapsed = []
        for lease_id in due:
            expires_at = shared.get(lease_id, 0.0)
            if expires_at > wall and self._leases.deadline(lease_id) is not None:
                self._leases.extend(lease_id, now + (expires_at - wall))
            else:
                lapsed.append(lease_id)
        return lapsed

    async def _compact_history(self, stop: asyncio.Event) -> None:
        """Trim the stored change log to what Watch can still resume from."""
        guard = Guard("registry compaction", stop)
        while not stop.is_set():
            if not guard.failures or not self.leader:  # after a failure the backoff has waited
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._settings.compact_interval_s)
            if not stop.is_set() and self.leader:
                await guard.run(self._compact)

    async def _compact(self) -> None:
        dropped = await self._store.registry_compact(self._settings.history_size)
        if dropped:
            logger.debug("compacted %d registry changes", dropped)
