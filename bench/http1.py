"""A minimal HTTP/1.1 client on asyncio streams: keep-alive connections posting JSON to a peer's ingress.

Just enough for the peers group to call Restate's ingress from this process at little CPU per call
(a full client library would cost the load generator more than the gRPC stubs cost the workflow
group's driver, and is not installed in the project's environment): POST with Content-Length, and
answers framed by Content-Length or chunked. One request at a time per connection.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


class HttpError(RuntimeError):
    """An answer other than 2xx; the message carries its status and body."""


class Connection:
    """One keep-alive HTTP/1.1 connection to `host:port`."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post_json(self, path: str, body: Any) -> Any:
        """POST `body` as JSON to `path`; the decoded JSON answer (HttpError unless 2xx)."""
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        reader, writer = self._reader, self._writer
        assert reader is not None
        data = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        writer.write(head.encode() + data)
        status, content = await read_response(reader)
        if not 200 <= status < 300:
            raise HttpError(f"POST {path}: HTTP {status}: {content[:500].decode(errors='replace')}")
        return json.loads(content) if content else None

    async def close(self) -> None:
        """Close the connection (if open)."""
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()
            self._writer = None


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one response."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split(b" ", 2)[1])
    length: int | None = None
    chunked = False
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        parts: list[bytes] = []
        while size := int((await reader.readline()).split(b";")[0].strip(), 16):
            parts.append(await reader.readexactly(size))
            await reader.readline()
        # Trailers (none expected) end with an empty line.
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        return status, b"".join(parts)
    return status, await reader.readexactly(length or 0)


class Pool:
    """Connections handed to one caller at a time; a caller that fails drops its connection."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._idle: list[Connection] = []
        self._all: list[Connection] = []

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """An idle connection (a new one when none is idle), returned to the pool after use."""
        if self._idle:
            connection = self._idle.pop()
        else:
            connection = Connection(self._host, self._port)
            self._all.append(connection)
        try:
            yield connection
        except BaseException:
            await connection.close()
            raise
        self._idle.append(connection)

    async def close(self) -> None:
        """Close every connection the pool opened."""
        for connection in self._all:
            await connection.close()
        self._all.clear()
        self._idle.clear()
