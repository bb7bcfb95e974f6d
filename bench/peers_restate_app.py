"""The peers group's Restate service: the workflow group's 5-step no-op workflow on the Restate Python SDK.

Runs in the peers' own virtual environment (restate-sdk, hypercorn; see `bench.peers_install`), never
in the project's: `python -m bench.peers_restate_app --port PORT` serves it with hypercorn (HTTP/2
without TLS, as the Restate server connects) on 127.0.0.1 and logs `restate service listening on
HOST:PORT` to stderr once it accepts connections; it stops on SIGTERM or SIGINT.

Service `Bench5`, handler `run`: five durable steps `s1`..`s5` (`ctx.run_typed`, each journaled by
the server before the handler goes on), each returning its input plus a field named after it; the
handler returns the last step's output, which the caller checks as the workflow group checks its own.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

import hypercorn.asyncio
import hypercorn.config
import restate
import restate.server

logger = logging.getLogger("bench.peers_restate_app")

SERVICE = "Bench5"
HANDLER = "run"
STEPS = 5
_STOP_TIMEOUT_S = 2.0


async def step(value: dict[str, Any], name: str) -> dict[str, Any]:
    """A no-op step: its input plus a field of its own."""
    return {**value, name: True}


async def run(ctx: Any, value: dict[str, Any]) -> dict[str, Any]:
    """Five durable steps in sequence, each fed the previous one's output."""
    for n in range(1, STEPS + 1):
        name = f"s{n}"
        value = await ctx.run_typed(name, step, restate.RunOptions(), value, name)
    return value


bench5 = restate.Service(SERVICE)
bench5.handler(HANDLER)(run)
app = restate.app(services=[bench5])


async def served(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """`app`, answering ASGI lifespan itself: the SDK's app refuses it, and hypercorn then never stops."""
    if scope["type"] != "lifespan":
        await app(scope, receive, send)
        return
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def serve(port: int) -> None:
    """Serve `app` on 127.0.0.1:`port` until SIGTERM or SIGINT."""
    config = hypercorn.config.Config()
    config.bind = [f"127.0.0.1:{port}"]
    # As Restate's serving guide configures hypercorn: many streams on one long-lived connection.
    config.h2_max_concurrent_streams = 2**31 - 1
    config.keep_alive_max_requests = 2**31 - 1
    config.keep_alive_timeout = 2**31 - 1
    config.graceful_timeout = 1.0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    # The SDK takes SIGTERM over on its first request (to drain its invocations) through this
    # dispatcher, which runs every hook registered with it: a plain handler would be replaced.
    restate.server.install_shutdown_hook(loop, stop.set, signal.SIGTERM)
    serving = asyncio.create_task(hypercorn.asyncio.serve(served, config, shutdown_trigger=stop.wait))
    await wait_listening(port, serving)
    logger.info("restate service listening on 127.0.0.1:%d", port)
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait((serving, stopping), return_when=asyncio.FIRST_COMPLETED)
    if not serving.done():
        # hypercorn's graceful shutdown can hang on the server's HTTP/2 connections; cut it short.
        try:
            await asyncio.wait_for(serving, _STOP_TIMEOUT_S)
        except TimeoutError:
            logger.warning("hypercorn did not stop within %.0f s; cancelled", _STOP_TIMEOUT_S)
    stopping.cancel()
    serving.result()


async def wait_listening(port: int, serving: asyncio.Task[None]) -> None:
    """Return once 127.0.0.1:`port` accepts connections (raise if the server stopped first)."""
    while not serving.done():
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    serving.result()
    raise RuntimeError("hypercorn stopped before it listened")


def main() -> None:
    """Entry point of the child process."""
    parser = argparse.ArgumentParser(prog="python -m bench.peers_restate_app")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
