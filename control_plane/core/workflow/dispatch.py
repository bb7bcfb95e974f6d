"""Task dispatch: attempts wait in per-service queues and go to live workers with free credit."""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from control_plane.core.deadlines import Deadlines
from control_plane.core.signal import Signal, Wait, wait_any
from control_plane.core.versions import parse_version_filter
from control_plane.errors import NotRegistered, Unavailable
from control_plane.models import TaskAttempt

logger = logging.getLogger(__name__)

TimeoutHandler = Callable[[TaskAttempt, str], None]
# Told of each attempt handed to a worker, with how long it waited in the queue for one (s).
HandedObserver = Callable[[TaskAttempt, float], None]


@dataclass(slots=True)
class Held:
    """A task attempt a worker holds, with the deadlines that bound it (monotonic clock), and the
    start-to-close deadline on the wall clock, as the worker is told it."""

    task: TaskAttempt
    deadline: float | None
    heartbeat_deadline: float | None
    wall_deadline: float | None = None

    @property
    def next_deadline(self) -> float | None:
        """The deadline that comes first, None when the attempt has neither."""
        dues = [due for due in (self.deadline, self.heartbeat_deadline) if due is not None]
        return min(dues) if dues else None


@dataclass(slots=True)
class WorkerSession:
    """One SubscribeTasks stream: what it accepts, what it holds, what it has yet to be sent."""

    id: int
    service: str
    instance_id: str
    version: str
    task_types: frozenset[str]
    max_in_flight: int
    held: dict[str, Held] = field(default_factory=dict)
    to_send: list[TaskAttempt] = field(default_factory=list)
    cancellations: list[tuple[str, str]] = field(default_factory=list)
    changed: Signal = field(default_factory=Signal)
    closed: Exception | None = None

    @property
    def free(self) -> int:
        """Credit left: tasks it may still be given."""
        return self.max_in_flight - len(self.held)

    def deadline_of(self, task: TaskAttempt, now: float) -> float | None:
        """The wall-clock start-to-close deadline of an attempt handed to this worker (counted from `now`
        for one it no longer holds, withdrawn before it was sent)."""
        held = self.held.get(task.token)
        if held is not None:
            return held.wall_deadline
        return now + task.timeout_s if task.timeout_s else None

    def accepts(self, task: TaskAttempt) -> bool:
        """Whether this worker can run `task` (service, type and version range)."""
        if task.service != self.service or (self.task_types and task.task_type not in self.task_types):
            return False
        return not task.version or parse_version_filter(task.version).matches(self.version)

    async def next_frame(self) -> tuple[list[TaskAttempt], list[tuple[str, str]]]:
        """The tasks and cancellations to send next, waiting until there are some."""
        while not self.to_send and not self.cancellations:
            if self.closed is not None:
                raise self.closed
            await wait_any([self.changed.waiter()], None)
        tasks, self.to_send = self.to_send, []
        cancellations, self.cancellations = self.cancellations, []
        return tasks, cancellations


class Dispatcher:
    """Hands queued attempts to workers, requeues what a departed worker held, times attempts out."""

    def __init__(
        self,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        wait: Wait = wait_any,
    ) -> None:
        self._now = monotonic
        self._wall = wall
        self._wait = wait  # times attempt deadlines on the `monotonic` clock
        self._queues: dict[str, collections.deque[TaskAttempt]] = collections.defaultdict(collections.deque)
        self._sessions: dict[str, list[WorkerSession]] = collections.defaultdict(list)
        self._holder: dict[str, WorkerSession] = {}
        # When each queued attempt joined its queue (monotonic): it leaves with the attempt.
        self._queued_at: dict[str, float] = {}
        # One deadline per held attempt (the earlier of its two), moved by heartbeats, gone when it ends.
        self._deadlines: Deadlines[str] = Deadlines()
        self._wakeup = Signal()
        self._ids = itertools.count(1)
        self.on_timeout: TimeoutHandler = lambda task, kind: None
        # Where replicas share the store: called with the queued attempts of a service that no worker
        # here serves any more, so that a replica with such a worker can claim them.
        self.on_unserved: Callable[[list[TaskAttempt]], None] | None = None
        # Set by the edge for metrics; None costs nothing.
        self.on_handed: HandedObserver | None = None

    # -- workers --------------------------------------------------------------------------------

    def attach(
        self, service: str, instance_id: str, version: str, task_types: frozenset[str], max_in_flight: int
    ) -> WorkerSession:
        """Add a worker stream and give it what is queued for it."""
        session = WorkerSession(next(self._ids), service, instance_id, version, task_types, max_in_flight)
        self._sessions[service].append(session)
        self._fill(session)
        return session

    def detach(self, session: WorkerSession, reason: Exception | None = None) -> None:
        """Remove a worker stream; what it held goes back to the front of the queue at once."""
        if session.closed is None:
            session.closed = reason or Unavailable("worker stream closed")
        session.changed.notify()
        sessions = self._sessions.get(session.service, [])
        if session in sessions:
            sessions.remove(session)
        requeue = [held.task for held in session.held.values()]
        session.held.clear()
        now = self._now()
        for task in requeue:
            self._holder.pop(task.token, None)
            self._deadlines.discard(task.token)
            self._queued_at[task.token] = now
        queue = self._queues[session.service]
        queue.extendleft(reversed(requeue))
        if requeue:
            logger.info(
                "requeued %d task(s) of worker %s/%s", len(requeue), session.service, session.instance_id
            )
        self._drain(session.service)
        if queue and self.on_unserved is not None:
            unserved = [task for task in queue if not self.accepts(task)]
            if unserved:
                kept = [task for task in queue if self.accepts(task)]
                queue.clear()
                queue.extend(kept)
                for task in unserved:
                    self._queued_at.pop(task.token, None)
                self.on_unserved(unserved)

    def instance_gone(self, service: str, instance_id: str, why: str) -> None:
        """The registry dropped an instance: end its streams (telling it to register again) and requeue
        their tasks now.
        """
        for session in list(self._sessions.get(service, [])):
            if session.instance_id == instance_id:
                self.detach(session, NotRegistered(service, instance_id, why))

    # -- tasks ----------------------------------------------------------------------------------

    def offer(self, tasks: list[TaskAttempt]) -> None:
        """New attempts: to a worker now if one has credit, else to the back of the queue."""
        for task in tasks:
            if not self._assign(task):
                self._queues[task.service].append(task)
                self._queued_at[task.token] = self._now()

    def settle(self, token: str) -> None:
        """An attempt ended (completed, failed, cancelled): free its worker's credit."""
        session = self._holder.pop(token, None)
        if session is not None:
            session.held.pop(token, None)
            self._deadlines.discard(token)
            self._fill(session)
        else:
            self._remove_queued(token)

    def withdraw(self, token: str, reason: str) -> None:
        """Tell the worker holding an attempt to stop; drop it from the queue if nobody holds it."""
        session = self._holder.pop(token, None)
        if session is None:
            self._remove_queued(token)
            return
        session.held.pop(token, None)
        self._deadlines.discard(token)
        session.cancellations.append((token, reason))
        session.changed.notify()
        self._fill(session)

    def heartbeat(self, token: str) -> bool:
        """Push an attempt's heartbeat deadline; False when no worker holds it."""
        session = self._holder.get(token)
        held = session.held.get(token) if session else None
        if held is None:
            return False
        if held.task.heartbeat_timeout_s:
            held.heartbeat_deadline = self._now() + held.task.heartbeat_timeout_s
            self._arm(token, held)
        return True

    def start(self, token: str) -> tuple[str, float | None] | None:
        """A worker began an attempt (it counts as a heartbeat): the instance id of the worker holding
        it and its wall-clock deadline; None when no worker holds it."""
        session = self._holder.get(token)
        held = session.held.get(token) if session else None
        if session is None or held is None:
            return None
        self.heartbeat(token)
        return session.instance_id, held.wall_deadline

    def serves(self, service: str) -> bool:
        """Whether a worker of `service` is attached here."""
        return any(s.closed is None for s in self._sessions.get(service, ()))

    def accepts(self, task: TaskAttempt) -> bool:
        """Whether a worker attached here can run `task` (its service, task type and version)."""
        return any(s.closed is None and s.accepts(task) for s in self._sessions.get(task.service, ()))

    def wanted(self) -> dict[str, tuple[int, frozenset[str] | None]]:
        """Per service with workers here that have free credit: how many more attempts they could take
        than are queued for them, and of which task types (None: any)."""
        room: dict[str, tuple[int, frozenset[str] | None]] = {}
        for service, sessions in self._sessions.items():
            free_sessions = [s for s in sessions if s.closed is None and s.free > 0]
            if not free_sessions:
                continue
            # Queued attempts that none of them accepts (another task type) wait for other workers:
            # they take nobody's credit here.
            queued = sum(1 for t in self._queues.get(service, ()) if any(s.accepts(t) for s in free_sessions))
            free = sum(s.free for s in free_sessions) - queued
            if free > 0:
                types = (
                    None
                    if any(not s.task_types for s in free_sessions)
                    else frozenset().union(*(s.task_types for s in free_sessions))
                )
                room[service] = (free, types)
        return room

    def holder(self, token: str) -> str:
        """Instance id of the worker holding an attempt, "" if none."""
        session = self._holder.get(token)
        return session.instance_id if session else ""

    def queued(self) -> int:
        """Attempts waiting for a worker."""
        return sum(len(q) for q in self._queues.values())

    def queue_depths(self) -> dict[tuple[str, str], int]:
        """Attempts waiting for a worker, by (service, task type)."""
        depths: dict[tuple[str, str], int] = {}
        for queue in self._queues.values():
            for task in queue:
                key = (task.service, task.task_type)
                depths[key] = depths.get(key, 0) + 1
        return depths

    async def run(self, stop: asyncio.Event) -> None:
        """Time out attempts whose start-to-close or heartbeat deadline passed, until `stop`."""
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                now = self._now()
                for token in self._deadlines.pop_due(now):
                    session = self._holder.get(token)
                    held = session.held.get(token) if session else None
                    if held is None:
                        continue
                    # The deadline that came first decides (both may have passed by now).
                    kind = "TIMEOUT" if held.deadline == held.next_deadline else "HEARTBEAT_TIMEOUT"
                    self.on_timeout(held.task, kind)
                next_due = self._deadlines.next_due()
                delay = next_due - self._now() if next_due is not None else None
                await self._wait([self._wakeup.waiter(), stopping], delay)
        finally:
            stopping.cancel()

    # -- internals ------------------------------------------------------------------------------

    def _assign(self, task: TaskAttempt) -> bool:
        best: WorkerSession | None = None
        for session in self._sessions.get(task.service, ()):
            eligible = session.closed is None and session.free > 0 and session.accepts(task)
            if eligible and (best is None or session.free > best.free):
                best = session
        if best is None:
            return False
        self._hand(best, task)
        return True

    def _hand(self, session: WorkerSession, task: TaskAttempt) -> None:
        now = self._now()
        queued_at = self._queued_at.pop(task.token, now)
        if self.on_handed is not None:
            self.on_handed(task, now - queued_at)
        deadline = now + task.timeout_s if task.timeout_s else None
        beat = now + task.heartbeat_timeout_s if task.heartbeat_timeout_s else None
        wall_deadline = self._wall() + task.timeout_s if task.timeout_s else None
        held = session.held[task.token] = Held(task, deadline, beat, wall_deadline)
        session.to_send.append(task)
        self._holder[task.token] = session
        self._arm(task.token, held)
        session.changed.notify()

    def _arm(self, token: str, held: Held) -> None:
        """Set (or move) the attempt's one deadline entry; wake the timeout loop if it comes first now."""
        due = held.next_deadline
        if due is None:
            self._deadlines.discard(token)
        elif self._deadlines.set(token, due):
            self._wakeup.notify()

    def _fill(self, session: WorkerSession) -> None:
        """Give a worker with free credit what is queued for it, oldest first."""
        if session.closed is not None or session.free <= 0:
            return
        queue = self._queues.get(session.service)
        if not queue:
            return
        kept: collections.deque[TaskAttempt] = collections.deque()
        while queue and session.free > 0:
            task = queue.popleft()
            if session.accepts(task):
                self._hand(session, task)
            else:
                kept.append(task)
        queue.extendleft(reversed(kept))

    def _drain(self, service: str) -> None:
        for session in list(self._sessions.get(service, [])):
            self._fill(session)

    def _remove_queued(self, token: str) -> None:
        for queue in self._queues.values():
            for task in queue:
                if task.token == token:
                    queue.remove(task)
                    self._queued_at.pop(token, None)
                    return
