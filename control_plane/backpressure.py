"""How long a caller waits for room in a bounded queue: internal work waits, a client's request gives up.

A full queue (the store's group-commit queue) pushes back on whoever adds to it. Work the control plane
does for itself (firing timers, timing out attempts, evicting lapsed leases) must not be dropped, so it
waits for room as long as it takes. A client's request waits a bounded time and then is refused with
RESOURCE_EXHAUSTED, which tells the client to back off instead of piling up requests the control plane
cannot keep up with. The gRPC edge marks each request's task with `limit_wait`; the store reads
`patience()`.
"""

from __future__ import annotations

import asyncio
import weakref
from contextvars import ContextVar
from typing import Any

# (task, seconds): only the task that set the limit is bound by it. Tasks it spawns copy the context,
# and with it this variable, but they are the control plane's own work and wait as long as it takes.
# The task is held weakly: its context holds this variable, so a strong reference would be a cycle
# (task -> context -> task) per request, left to the cyclic collector with everything the request's
# frames held (~10 objects a call), and freed in bursts that paused the loop for 8-20 ms.
_limit: ContextVar[tuple[weakref.ref[asyncio.Task[Any]] | None, float] | None] = ContextVar(
    "patience", default=None
)


def limit_wait(seconds: float) -> None:
    """From now on, the current task (a client's request) waits at most `seconds` for room in a queue."""
    task = asyncio.current_task()
    _limit.set((weakref.ref(task) if task is not None else None, seconds))


def patience() -> float | None:
    """How long the current task may wait for room; None: as long as it takes."""
    limit = _limit.get()
    if limit is None or limit[0] is None or limit[0]() is not asyncio.current_task():
        return None
    return limit[1]
