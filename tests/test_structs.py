"""The server's one Struct <-> plain values conversion: faithful on the way in, JSON-shaped on the way out."""

from __future__ import annotations

import math
from types import MappingProxyType

from google.protobuf import struct_pb2

from control_plane.servicers.structs import fill, to_dict, to_struct


def test_request_struct_read_faithfully_even_what_json_cannot_hold() -> None:
    message = struct_pb2.Struct()
    message.update({"order": {"lines": [1, "two", True, None]}, "n": 3})
    message.fields["bad"].number_value = math.nan

    value = to_dict(message)

    assert value["order"] == {"lines": [1.0, "two", True, None]}
    assert value["n"] == 3.0 and isinstance(value["n"], float)
    assert math.isnan(value["bad"])  # left for the core's validation to refuse, naming its path


def test_answer_struct_from_what_the_core_holds() -> None:
    held = MappingProxyType({"steps": ("a", "b"), "at": 1.5, "nested": {"ok": True}})

    assert to_dict(to_struct(dict(held))) == {"steps": ["a", "b"], "at": 1.5, "nested": {"ok": True}}
    assert to_dict(to_struct(["not", "a", "map"])) == {"value": ["not", "a", "map"]}
    assert to_struct(None) == struct_pb2.Struct()


def test_fill_sets_a_field_in_place() -> None:
    message = struct_pb2.Struct()
    fill(message, {"name": "permit", "steps": [{"id": "a"}]})

    assert to_dict(message) == {"name": "permit", "steps": [{"id": "a"}]}


def test_answer_struct_keys_that_are_not_strings_and_integers_beyond_64_bits() -> None:
    assert to_dict(to_struct({1: "one", None: "nothing"})) == {"1": "one", "null": "nothing"}
    assert to_dict(to_struct({"big": 2**70})) == {"big": float(2**70)}
