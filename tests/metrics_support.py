"""Reading a control plane's /metrics in tests: one sample, or the set of series it exports."""

from __future__ import annotations

import re

import aiohttp

from control_plane.server import App


async def get(url: str, accept: str = "") -> tuple[int, str, str]:
    """(status, content type, body) of a GET."""
    headers = {"Accept": accept} if accept else {}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


async def scrape(app: App) -> str:
    """The control plane's /metrics, in Prometheus's text format."""
    assert app.http_url is not None
    status, _, body = await get(f"{app.http_url}/metrics")
    assert status == 200
    return body


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition `text` (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.partition("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def series(text: str) -> set[str]:
    """Every series of the exposition `text`: its name and labels, without the value."""
    return {line.rsplit(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#")}
