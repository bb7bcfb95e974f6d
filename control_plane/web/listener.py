"""The HTTP listener beside the gRPC port: /metrics, /healthz, /readyz and the operations console at /.

aiohttp runs in the control plane's own event loop, next to grpc.aio: one process, one loop, the
cores' state read directly. It follows the gRPC port's rules: TLS with the same certificate, and a
non-loopback address only with TLS or --insecure (bearer tokens do not protect /metrics).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

if TYPE_CHECKING:
    from control_plane.console import Console

logger = logging.getLogger(__name__)

Check = Callable[[], Awaitable[str | None]]
Refresh = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class HttpListener:
    """A started listener; `url` is where it answers."""

    runner: web.AppRunner
    url: str

    async def close(self) -> None:
        """Stop accepting, finish what is in flight, release the port."""
        await self.runner.cleanup()


def build_app(
    metrics: CollectorRegistry,
    ready: Check,
    refresh: Refresh | None = None,
    console: Console | None = None,
) -> web.Application:
    """The routes: Prometheus exposition (after `refresh`, which reads what needs the store), liveness
    and readiness, and the console's (when given)."""

    async def metrics_page(request: web.Request) -> web.Response:
        if refresh is not None:
            await refresh()
        # OpenMetrics when the scraper asks for it (Prometheus does), the classic text format otherwise.
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(metrics), headers={"Content-Type": content_type})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        problem = await ready()
        if problem is None:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {problem}\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if console is not None:
        console.add_to(app)
    return app


def tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """The server-side TLS context for the listener, from the gRPC port's certificate."""
    if cert is None or key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def start_listener(
    app: web.Application, host: str, port: int, tls: ssl.SSLContext | None
) -> HttpListener:
    """Bind and serve `app`; raises OSError when the address is taken or not local."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    # reuse_port off for the same reason as on the gRPC port: a second server must not share it.
    site = web.TCPSite(runner, host, port, ssl_context=tls, reuse_port=False)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    server = site._server  # aiohttp exposes the bound sockets only here
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    shown = f"[{host}]" if ":" in host else host
    return HttpListener(runner, f"{'https' if tls else 'http'}://{shown}:{bound}")
