"""Live pages over Server-Sent Events, fed by the change streams the gRPC streams use.

Each stream sends `patch` events: a JSON object from element id to that element's new HTML, rendered
by the same templates as the page. It waits on the same sources as the gRPC streams do: a process's
watch signal (WatchProcess), the registry's change feed (Watch), and the Bus log's arrivals
(Subscribe) for the workflow events of every transition. Nothing listens while no page is open.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from control_plane.console.render import Renderer, secure_headers
from control_plane.console.views import Cores, departures
from control_plane.core.signal import Signal, wait_any
from control_plane.errors import ControlPlaneError
from control_plane.models import RegistryChange, StoredMessage

logger = logging.getLogger(__name__)

# (element id, template) of each live page's changing parts.
PROCESS = (
    ("process-header", "process/_header.html"),
    ("process-flow", "process/_flow.html"),
    ("process-steps", "process/_steps.html"),
    ("process-history", "process/_history.html"),
    ("process-data", "process/_data.html"),
)
PROCESSES = (("process-rows", "processes/_rows.html"),)
REGISTRY = (
    ("registry-services", "registry/_services.html"),
    ("registry-departures", "registry/_departures.html"),
)

# A comment line this often tells a dead connection from a quiet page (writes to a closed one fail).
KEEPALIVE_S = 15.0
# Changes of the processes list closer together than this are sent as one (a busy engine would
# otherwise re-query the page for every transition).
LIST_COALESCE_S = 0.25
# How often the registry page is redrawn without changes, so the leases' time left counts down.
LEASE_REFRESH_S = 2.0
# Recent registry changes replayed into a new registry stream (for the departures it shows).
DEPARTURES_REPLAYED = 200
DEPARTURES_SHOWN = 10
_WORKFLOW_EVENTS = "workflow."


def render(
    renderer: Renderer, regions: tuple[tuple[str, str], ...], context: dict[str, Any]
) -> dict[str, str]:
    """Each region's HTML."""
    return {element: renderer.text(template, **context) for element, template in regions}


class _Stream:
    """One open event stream to a browser."""

    def __init__(self, response: web.StreamResponse) -> None:
        self._response = response
        self._last: dict[str, str] = {}

    @classmethod
    async def open(cls, request: web.Request) -> _Stream:
        headers = {**secure_headers(), "Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        return cls(response)

    async def patch(self, regions: dict[str, str]) -> None:
        """Send the regions that changed since the last patch (all of them the first time)."""
        changed = {k: v for k, v in regions.items() if self._last.get(k) != v}
        if changed or not self._last:
            self._last = dict(regions)
            await self._send("patch", json.dumps(changed))

    async def end(self) -> None:
        """Tell the page nothing more will come (it closes the stream instead of reconnecting)."""
        await self._send("end", "{}")

    async def keepalive(self) -> None:
        await self._response.write(b": keepalive\n\n")

    async def _send(self, event: str, data: str) -> None:
        await self._response.write(f"event: {event}\ndata: {data}\n\n".encode())

    @property
    def response(self) -> web.StreamResponse:
        return self._response


async def _until(stopping: asyncio.Event, wakeups: list[asyncio.Future[Any]], delay_s: float | None) -> None:
    """Wait for a wake-up, `delay_s`, or the server stopping."""
    stopped = asyncio.ensure_future(stopping.wait())
    try:
        await wait_any([*wakeups, stopped], delay_s)
    finally:
        stopped.cancel()


async def process_stream(
    request: web.Request,
    cores: Cores,
    stopping: asyncio.Event,
    process_id: str,
    regions: Callable[[], Awaitable[tuple[dict[str, str], bool]]],
) -> web.StreamResponse:
    """A process page's regions after every transition of the process, until it ends."""
    stream = await _Stream.open(request)
    try:
        # Watching before reading: a transition between the read and the wait is not missed.
        async with cores.workflows.watch(process_id) as changed:
            while not stopping.is_set():
                waiter = changed.waiter()
                rendered, final = await regions()
                await stream.patch(rendered)
                if final:
                    await stream.end()
                    break
                await _until(stopping, [waiter], KEEPALIVE_S)
                if not waiter.done() and not stopping.is_set():
                    await stream.keepalive()
    except (ConnectionResetError, ControlPlaneError) as exc:
        logger.debug("console: process stream of %s ended: %s", process_id, exc)
    return stream.response


async def processes_stream(
    request: web.Request,
    cores: Cores,
    stopping: asyncio.Event,
    regions: Callable[[], Awaitable[dict[str, str]]],
) -> web.StreamResponse:
    """The processes page's rows whenever a workflow event goes out on the Bus."""
    stream = await _Stream.open(request)
    changed = Signal()

    def on_messages(messages: list[StoredMessage]) -> None:
        if any(m.subject.startswith(_WORKFLOW_EVENTS) for m in messages):
            changed.notify()

    listeners = cores.bus.log.listeners
    listeners.append(on_messages)
    try:
        while not stopping.is_set():
            waiter = changed.waiter()
            await stream.patch(await regions())
            await _until(stopping, [waiter], KEEPALIVE_S)
            if waiter.done():
                # Let a burst of transitions land, then show them together.
                await _until(stopping, [], LIST_COALESCE_S)
            elif not stopping.is_set():
                await stream.keepalive()
    except (ConnectionResetError, ControlPlaneError) as exc:
        logger.debug("console: processes stream ended: %s", exc)
    finally:
        listeners.remove(on_messages)
    return stream.response


async def registry_stream(
    request: web.Request,
    cores: Cores,
    stopping: asyncio.Event,
    regions: Callable[[list[RegistryChange]], dict[str, str]],
) -> web.StreamResponse:
    """The registry page's tables at every registry change, with the latest departures and why."""
    stream = await _Stream.open(request)
    feed = cores.registry.feed
    after = max(feed.oldest_resumable, feed.revision - DEPARTURES_REPLAYED)
    gone: list[RegistryChange] = []
    try:
        with cores.registry.watch("", after) as (watcher, _, _):
            stopped = asyncio.ensure_future(stopping.wait())
            try:
                while not stopping.is_set():
                    await stream.patch(regions(gone))
                    batch = asyncio.ensure_future(watcher.next_batch(LEASE_REFRESH_S))
                    await asyncio.wait([batch, stopped], return_when=asyncio.FIRST_COMPLETED)
                    if not batch.done():
                        # Stopping: the feed ends its watchers too, so the read may fail as it is cancelled.
                        batch.add_done_callback(_retrieved)
                        batch.cancel()
                        break
                    gone = (departures(batch.result()) + gone)[:DEPARTURES_SHOWN]
            finally:
                stopped.cancel()
    except (ConnectionResetError, ControlPlaneError) as exc:
        logger.debug("console: registry stream ended: %s", exc)
    return stream.response


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark an abandoned read's outcome as seen (it is of no interest once the stream has ended)."""
    if not future.cancelled():
        future.exception()
