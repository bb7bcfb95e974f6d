"""Field checks shared by the cores: each returns violations instead of raising one at a time."""

from __future__ import annotations

import ipaddress
import re

from control_plane.errors import FieldViolation

NAME_MAX = 128
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HOSTNAME = re.compile(
    r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def check_name(field: str, value: str, *, required: bool = True) -> list[FieldViolation]:
    """A service or instance name: 1-128 characters of [A-Za-z0-9._-], not starting with punctuation."""
    if not value:
        return [FieldViolation(field, "must not be empty")] if required else []
    if len(value) > NAME_MAX:
        return [FieldViolation(field, f"must be at most {NAME_MAX} characters (got {len(value)})")]
    if not _NAME.match(value):
        return [
            FieldViolation(
                field, "may contain only letters, digits, '.', '_' and '-', starting with a letter or digit"
            )
        ]
    return []


def check_address(field: str, value: str) -> list[FieldViolation]:
    """A `host:port` address; IPv6 hosts in brackets."""
    if not value:
        return [FieldViolation(field, "must not be empty; expected host:port")]
    if len(value) > 300:
        return [FieldViolation(field, "must be at most 300 characters")]
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        return [FieldViolation(field, f"expected host:port, got {value!r}")]
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return [FieldViolation(field, f"port must be a number from 1 to 65535, got {port!r}")]
    if host.startswith("["):
        if not host.endswith("]"):
            return [FieldViolation(field, f"unterminated IPv6 host in {value!r}")]
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return [FieldViolation(field, f"not an IPv6 address: {host[1:-1]!r}")]
        return []
    if ":" in host:
        return [FieldViolation(field, "IPv6 hosts must be written in brackets, e.g. [::1]:50051")]
    if not _HOSTNAME.match(host):
        return [FieldViolation(field, f"not a valid host name or IPv4 address: {host!r}")]
    return []


def check_range(field: str, value: float, low: float, high: float, unit: str = "s") -> list[FieldViolation]:
    """A number within [low, high]."""
    if not low <= value <= high:
        return [
            FieldViolation(field, f"must be between {low:g}{unit} and {high:g}{unit} (got {value:g}{unit})")
        ]
    return []


def check_text(field: str, value: str, max_len: int) -> list[FieldViolation]:
    """Free text of bounded length."""
    if len(value) > max_len:
        return [FieldViolation(field, f"must be at most {max_len} characters (got {len(value)})")]
    return []
