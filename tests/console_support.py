"""Helpers for console tests: a browser-like HTTP session (cookies, CSRF token) and an SSE reader."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from hms.mgmt.v1 import bus_pb2 as pb_bus
from hms_mgmt import Client, Delivery

# A process that waits for the signal `go` and ends with what it carried.
WAITER = """
name: waiter
steps:
  - id: wait
    wait_signal: {name: go, timeout: 1h}
output: {answer: "steps.wait.output.answer"}
"""

TOKENS = """
tokens:
  - {token: admin-secret, role: admin, name: ops}
  - {token: client-secret, role: client, name: portal}
  - {token: worker-secret, role: worker, name: payments, services: ["*"]}
"""

_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]*)">')


def write_tokens(directory: Path) -> Path:
    """A tokens file with an admin, a client and a worker token."""
    path = directory / "tokens.yaml"
    path.write_text(TOKENS)
    path.chmod(0o600)
    return path


class ConsoleSession:
    """What a browser keeps between requests: cookies, and the CSRF token of the last page."""

    def __init__(self, base_url: str, http: aiohttp.ClientSession) -> None:
        self.base_url = base_url
        self.http = http
        self.csrf = ""

    async def get(self, path: str) -> tuple[int, str]:
        """GET a page; remembers its CSRF token."""
        async with self.http.get(self.base_url + path, allow_redirects=False) as response:
            text = await response.text()
            found = _CSRF.search(text)
            if found:
                self.csrf = found.group(1)
            return response.status, text

    async def post(
        self, path: str, form: dict[str, str], *, csrf: str | None = None, origin: str | None = None
    ) -> tuple[int, Any]:
        """POST a form as the page's script does (the CSRF token in its header); JSON when it answers so."""
        headers = {"X-CSRF-Token": self.csrf if csrf is None else csrf}
        if origin is not None:
            headers["Origin"] = origin
        async with self.http.post(
            self.base_url + path, data=form, headers=headers, allow_redirects=False
        ) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()

    async def log_in(self, token: str) -> int:
        """Fill in the login form; returns the status of the answer (303 on success)."""
        status, page = await self.get("/login")
        assert status == 200, page
        async with self.http.post(
            self.base_url + "/login",
            data={"csrf": self.csrf, "token": token, "next": "/"},
            allow_redirects=False,
        ) as response:
            return response.status

    @asynccontextmanager
    async def events(self, path: str) -> AsyncIterator[EventReader]:
        """An open Server-Sent Events stream."""
        async with self.http.get(self.base_url + path, timeout=aiohttp.ClientTimeout(total=None)) as response:
            assert response.status == 200, await response.text()
            assert response.content_type == "text/event-stream"
            yield EventReader(response)


@asynccontextmanager
async def console_session(base_url: str) -> AsyncIterator[ConsoleSession]:
    """A fresh session (cookies for 127.0.0.1 are kept: aiohttp drops cookies of IP hosts by default)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        yield ConsoleSession(base_url, http)


class EventReader:
    """Reads `event:`/`data:` frames off an SSE response."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        # Each region as a page would show it: a patch carries only the regions that changed.
        self.regions: dict[str, str] = {}

    async def next(self, timeout_s: float = 10.0) -> tuple[str, dict[str, str]]:
        """The next event (name, JSON data), skipping keepalive comments."""
        name, data = "message", ""
        async with asyncio.timeout(timeout_s):
            while True:
                raw = await self._response.content.readline()
                if not raw:
                    raise EOFError("the stream ended")
                line = raw.decode().rstrip("\n")
                if line.startswith(":"):
                    continue
                if line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    data += line.removeprefix("data: ")
                elif line == "" and data:
                    body = json.loads(data)
                    if name == "patch":
                        self.regions.update(body)
                    return name, body

    async def patch_where(self, region: str, text: str, timeout_s: float = 10.0) -> str:
        """The region's HTML, as the page shows it after the patches so far, once it contains `text`."""
        async with asyncio.timeout(timeout_s):
            while text not in self.regions.get(region, ""):
                await self.next(timeout_s)
        return self.regions[region]


async def dead_letter(client: Client, subject: str, data: bytes) -> Delivery:
    """Publish `data` on `subject` and have a durable consumer give it up; returns the dead letter."""
    async with (
        client.bus.subscribe("$DLQ.>") as dead,
        client.bus.subscribe(subject, durable="audit", explicit_ack=True) as sub,
    ):
        await client.bus.publish(subject, data, headers={"app": "1"}, content_type="application/json")
        async with asyncio.timeout(10):
            one = await anext(sub)
        await client.bus.settle(
            [pb_bus.AckItem(delivery_id=one.delivery_id, action=pb_bus.ACK_ACTION_TERMINATE, reason="bad")]
        )
        async with asyncio.timeout(10):
            return await anext(dead)
