"""A history event in the protobuf JSON form of `hms.mgmt.v1.HistoryEvent`, as the Bus carries it.

Written by hand rather than through the generated code: the core knows nothing of the wire package,
and `json_format` would cost several times the few microseconds this takes on every published event.
It follows the proto3 JSON mapping exactly (lowerCamelCase names, int64 as a string, enums by name,
Timestamp as RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits, fields at their default left
out), so a client in any language parses the data with its protobuf library's JSON parser, strict
about unknown fields or not; a test holds it to what `json_format` makes of GetHistory's event.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import orjson

from control_plane.models import EventType, HistoryEvent, ProcessState

_NANOS = 1_000_000_000
# The wire enum names, looked up once (an Enum member's `name` is a property, slow on every event).
_TYPE_NAMES = {kind: f"HISTORY_EVENT_TYPE_{kind.name}" for kind in EventType}
_STATE_NAMES = {state: f"PROCESS_STATE_{state.name}" for state in ProcessState}


def history_json(event: HistoryEvent) -> bytes:
    """The event as protobuf JSON (UTF-8)."""
    body: dict[str, Any] = {
        "sequence": str(event.sequence),
        "processId": event.process_id,
        "time": rfc3339(event.time),
        "type": _TYPE_NAMES[event.type],
    }
    if event.step_id:
        body["stepId"] = event.step_id
    if event.attempt:
        body["attempt"] = event.attempt
    body["processState"] = _STATE_NAMES[event.state]
    body["details"] = event.details
    # orjson (3.12+) hands back bytes whose allocation is rounded up (4 KiB for a 300-byte event) and
    # never shrunk. These bytes live on in the Bus's in-memory tail, up to 200,000 messages: copying
    # them to their own size (a fraction of a microsecond) is what keeps a control plane with many
    # waiting processes at hundreds of MB rather than GBs.
    return b"%b" % orjson.dumps(body, default=str, option=orjson.OPT_NON_STR_KEYS)


def rfc3339(value_s: float) -> str:
    """Unix seconds as a protobuf JSON Timestamp, rounded to the nanosecond as the wire Timestamp is."""
    seconds, nanos = divmod(round(value_s * _NANOS), _NANOS)
    text = _whole_second(seconds)
    if nanos == 0:
        return text + "Z"
    if nanos % 1_000_000 == 0:
        return f"{text}.{nanos // 1_000_000:03d}Z"
    if nanos % 1000 == 0:
        return f"{text}.{nanos // 1000:06d}Z"
    return f"{text}.{nanos:09d}Z"


@functools.lru_cache(maxsize=4)
def _whole_second(seconds: int) -> str:
    """The date and time of a whole second: events of the same second (most of them) format it once."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
