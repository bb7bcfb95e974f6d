"""Durations in definitions: "250ms", "10s", "5m", "2h", "7d" (or combined, "1h30m"), or a number of seconds."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")


def parse_duration(value: object, *, allow_zero: bool = False) -> float:
    """Seconds in `value`; raises ValueError with a readable reason when it is not a positive duration."""
    if isinstance(value, bool):
        # bool is an int subclass: `timeout: yes` must not read as one second.
        raise ValueError(f"expected a duration like 10s or a number of seconds, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not _WHOLE.fullmatch(text):
            hint = f" (no unit: write {text}s)" if _is_number(text) else ""
            raise ValueError(f"not a duration: {value!r}{hint}; use a number with ms, s, m, h or d, e.g. 30s")
        seconds = sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(text))
    else:
        raise ValueError(f"expected a duration like 10s or a number of seconds, got {type(value).__name__}")
    if not math.isfinite(seconds):
        raise ValueError(f"duration must be finite, got {value!r}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"duration must be {'zero or more' if allow_zero else 'positive'}, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """A short human form of `seconds` for messages: 1.5s, 250ms, 2h, 7d."""
    if seconds == 0:
        return "0s"
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
