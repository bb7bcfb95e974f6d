"""Logging of `mgmt serve`: levels per logger, text or JSON lines with the bound work fields."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from control_plane.core.logfields import FIELDS, current

# Libraries that are chatty at INFO and DEBUG; they stay at WARNING unless named in --log-level.
_LIBRARIES = ("grpc", "asyncio", "aiohttp", "psycopg", "urllib3", "opentelemetry")
_LEVELS = ("debug", "info", "warning", "error", "critical")


def parse_levels(text: str) -> tuple[int, dict[str, int]]:
    """`info` or `debug,grpc=debug,aiohttp.access=info`: the control plane's level and per-logger ones."""
    base = logging.INFO
    named: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, level = part.rpartition("=") if "=" in part else ("", "", part)
        if level.lower() not in _LEVELS or (sep and not name):
            raise ValueError(
                f"--log-level expects LEVEL or LOGGER=LEVEL, comma-separated (levels: {', '.join(_LEVELS)}), "
                f"got {part!r}"
            )
        value = logging.getLevelNamesMapping()[level.upper()]
        if name:
            named[name] = value
        else:
            base = value
    return base, named


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the bound fields, the exception."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None) or {}
        for key in FIELDS:
            value = getattr(record, key, None)
            if value is None:
                value = fields.get(key)
            if value is not None:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The classic line, with the bound fields appended as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The record as one text line (plus the traceback, if any)."""
        text = super().format(record)
        fields = getattr(record, "fields", None) or {}
        extra = " ".join(f"{key}={fields[key]}" for key in FIELDS if fields.get(key) is not None)
        if not extra:
            return text
        head, newline, rest = text.partition("\n")
        return f"{head} [{extra}]{newline}{rest}"


class _BoundFields(logging.Filter):
    """Attaches the fields bound where the line was written (the formatter may run elsewhere), and the
    trace and span ids of the span current there, if any (always none with tracing off)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = dict(current())
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            fields.setdefault("trace_id", f"{span.trace_id:032x}")
            fields.setdefault("span_id", f"{span.span_id:016x}")
        record.fields = fields
        return True


def configure(levels: str = "info", fmt: str = "text") -> None:
    """Send logs to stderr in `fmt` ("text" or "json") at the levels of `levels` (see parse_levels)."""
    if fmt not in ("text", "json"):
        raise ValueError(f"--log-format expects text or json, got {fmt!r}")
    base, named = parse_levels(levels)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_BoundFields())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(base)
    for library in _LIBRARIES:
        logging.getLogger(library).setLevel(max(base, logging.WARNING))
    for name, level in named.items():
        logging.getLogger(name).setLevel(level)
