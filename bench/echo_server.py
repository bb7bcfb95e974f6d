"""Raw grpc.aio server on bytes (no protobuf): the transport ceiling the control plane is compared with.

Run as a child by the baseline group: `python -m bench.echo_server`. It logs
`echo listening on HOST:PORT` to stderr once it accepts calls, and stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc

logger = logging.getLogger("bench.echo_server")

SERVICE = "bench.Echo"
UNARY = f"/{SERVICE}/Unary"
STREAM = f"/{SERVICE}/Stream"

Context = grpc.aio.ServicerContext[Any, Any]


async def unary(request: bytes, context: Context) -> bytes:
    """Answer with the request."""
    return request


async def stream(request: bytes, context: Context) -> AsyncIterator[bytes]:
    """Send the request back, again and again, until the client cancels."""
    while True:
        yield request


async def serve(listen: str) -> None:
    """Serve until SIGTERM or SIGINT."""
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
        },
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    logger.info("echo listening on 127.0.0.1:%d", port)
    try:
        await stop.wait()
    finally:
        await server.stop(0)


def main() -> None:
    """Entry point of the child process."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    asyncio.run(serve("127.0.0.1:0"))


if __name__ == "__main__":
    main()
