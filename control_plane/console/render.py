"""Templates and responses: one Jinja environment (autoescaped), the filters pages use, safe headers."""

from __future__ import annotations

import datetime
import json
from typing import Any

import jinja2
from aiohttp import web

# Only this origin's own files, no inline script or style, no framing: an injected fragment can do nothing.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


# JSON longer than this is cut on a page (the whole value is one `mgmt workflow status -o json` away).
JSON_SHOWN = 20_000


def pretty_json(value: Any) -> str:
    """Indented JSON for a page, cut at JSON_SHOWN characters."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return text if len(text) <= JSON_SHOWN else text[:JSON_SHOWN] + "\n… (cut)"


def when(ts: float) -> str:
    """A wall-clock time as UTC, to the second ("" for none)."""
    if not ts:
        return ""
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    """A span of time in the largest sensible unit ("1.2 s", "3 min 4 s", "2 h 5 min")."""
    if seconds is None:
        return ""
    if seconds < 0.001:
        return "0 ms" if seconds <= 0 else "<1 ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} d {hours % 24} h"


class Renderer:
    """Renders the console's templates."""

    def __init__(self) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.PackageLoader("control_plane.console", "templates"),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
            undefined=jinja2.StrictUndefined,
        )
        self._env.filters["when"] = when
        self._env.filters["duration"] = duration
        self._env.globals["pretty_json"] = pretty_json

    def text(self, template: str, **context: Any) -> str:
        """A template rendered to text."""
        return self._env.get_template(template).render(**context)

    def page(self, template: str, status: int = 200, **context: Any) -> web.Response:
        """A full HTML page."""
        return web.Response(
            text=self.text(template, **context),
            status=status,
            content_type="text/html",
            charset="utf-8",
            headers=_HEADERS,
        )


def secure_headers() -> dict[str, str]:
    """The headers every console response carries."""
    return dict(_HEADERS)
