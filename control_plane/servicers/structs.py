"""google.protobuf.Struct <-> plain JSON values: the server's one conversion, both ways.

Process input and output, task input and output, signal payloads and details travel as Struct, so a
grpcurl user types plain JSON. Requests are read faithfully (a NaN or an infinity, which a Struct can
carry and JSON cannot, reaches the core's validation, which refuses it naming its path); answers are
written from whatever JSON-shaped values the core holds. The Python SDK has its own conversion: it is a
client, and never imports the server.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
from google.protobuf import struct_pb2

# Keys that are not strings become strings, as the json module writes them ({1: x} -> {"1": x}).
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS


def to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A request's Struct as plain Python values, faithfully; never raises.

    Unlike json_format.MessageToDict, which raises on a NaN or an infinity, this leaves the judging
    of values to the core. Every number comes back as a float: a Struct keeps numbers as doubles.
    """
    return {key: _plain(value) for key, value in struct.fields.items()}


def to_struct(value: Any) -> struct_pb2.Struct:
    """JSON-shaped values as a Struct for an answer (None is empty; a non-object is wrapped as {"value": ...})."""
    message = struct_pb2.Struct()
    if value is None:
        return message
    if not isinstance(value, dict):
        value = {"value": value}
    # Round-trip through JSON: CEL results and stored records may hold tuples or other JSON-able types.
    # orjson: this runs for every task handed out and every process answered, about 13x faster than the
    # json module (a NaN or an infinity becomes null, as in the records the store keeps with orjson).
    try:
        plain = orjson.loads(orjson.dumps(value, default=str, option=_ORJSON_OPTIONS))
    except (TypeError, orjson.JSONEncodeError):
        plain = json.loads(json.dumps(value, default=str))  # an integer beyond 64 bits, which orjson refuses
    fill(message, plain)
    return message


def fill(message: struct_pb2.Struct, value: Mapping[str, Any]) -> None:
    """Set a Struct field in place from a map that holds only JSON values (dict, list, str, number, bool, None).

    No round trip through JSON text: its single C calls hold the GIL for tens of milliseconds on a large
    value, where this works in short steps (a worker thread lets the event loop run between them).
    """
    message.update(value)


def _plain(value: struct_pb2.Value) -> Any:
    # Recursion is bounded: the parser refuses anything nested deeper than 100 message levels.
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return to_dict(value.struct_value)
    if kind == "list_value":
        return [_plain(item) for item in value.list_value.values]
    if kind == "number_value":
        return value.number_value
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    return None
