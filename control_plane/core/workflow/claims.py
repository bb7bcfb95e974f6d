"""Task attempts among replicas: each replica hands out the attempts it owns, and claims those nobody owns.

An attempt is created owned by the replica whose transition made it. When that replica has no
worker of its service (or loses its last one), it releases the attempt in the store; replicas with
such workers claim released attempts (the store skips rows another replica is claiming), as far as
their workers' credit goes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from control_plane.core.signal import Signal, wait_any
from control_plane.core.workflow.dispatch import Dispatcher
from control_plane.models import TaskAttempt
from control_plane.storage.base import Store

logger = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, None]], None]
# Claims are looked for at least this often, even without a notification (one can be lost).
SWEEP_EVERY_S = 1.0


class Claims:
    """Releases what no worker here can run, claims what nobody owns for the workers here."""

    def __init__(self, store: Store, dispatcher: Dispatcher, spawn: Spawn) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._spawn = spawn
        self._unowned: set[str] = set()  # services that may have attempts no replica owns
        self._wakeup = Signal()
        dispatcher.on_unserved = self.release
        store.cluster.subscribe("tasks", self.unowned)

    def unowned(self, service: str) -> None:
        """Attempts of `service` may wait for an owner (released elsewhere, or a worker just attached)."""
        self._unowned.add(service)
        self._wakeup.notify()

    def credit_freed(self) -> None:
        """Workers here finished attempts: claim more if some may be waiting."""
        if self._unowned:
            self._wakeup.notify()

    def keep(self, tasks: list[TaskAttempt]) -> list[TaskAttempt]:
        """New attempts made here: those a worker here can run; the others are released."""
        kept: list[TaskAttempt] = []
        foreign: list[TaskAttempt] = []
        for task in tasks:
            (kept if self._dispatcher.accepts(task) else foreign).append(task)
        if foreign:
            self.release(foreign)
        return kept

    def release(self, tasks: list[TaskAttempt]) -> None:
        """Hand attempts no worker here can run to the replicas that have such workers."""

        async def release() -> None:
            try:
                await self._store.wf_release_tasks(tasks)
            except Exception:
                logger.exception("releasing %d task attempts failed", len(tasks))

        self._spawn(release())

    async def release_owned(self) -> None:
        """Give back everything this replica owns (it is stopping), not only when the leader notices it is gone."""
        try:
            await self._store.wf_release_owned()
        except Exception:
            logger.exception("releasing this replica's task attempts failed")

    async def run(self, stop: asyncio.Event) -> None:
        """Take attempts nobody owns for the workers attached here, as far as their credit goes."""
        stopping = asyncio.ensure_future(stop.wait())
        swept = time.monotonic()
        try:
            while not stop.is_set():
                wakeup = self._wakeup.waiter()
                for service, (room, task_types) in self._dispatcher.wanted().items():
                    if service in self._unowned:
                        await self._claim(service, room, task_types)
                await wait_any([wakeup, stopping], SWEEP_EVERY_S)
                if time.monotonic() - swept >= SWEEP_EVERY_S:
                    swept = time.monotonic()
                    self._unowned.update(self._dispatcher.wanted())
        finally:
            stopping.cancel()

    async def _claim(self, service: str, room: int, task_types: frozenset[str] | None) -> None:
        try:
            claimed = await self._store.wf_claim_tasks(service, room, task_types)
        except Exception:
            logger.exception("claiming task attempts of %s failed", service)
            return
        # Of the task types asked for, but possibly of a version no worker here runs: given back.
        kept = [task for task in claimed if self._dispatcher.accepts(task)]
        if len(kept) < len(claimed):
            self.release([task for task in claimed if not self._dispatcher.accepts(task)])
        if len(claimed) < room or not kept:
            self._unowned.discard(service)  # the sweep looks again; no spinning on what is given back
        self._dispatcher.offer(kept)
