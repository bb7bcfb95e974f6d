"""Hypothesis strategies that build random, well-typed protobuf messages from their descriptors.

Every field may be set or not; scalars range over their whole type with the boundaries favoured;
enums take unknown numbers too; Durations and Timestamps go past their valid ranges; Structs carry
NaN, infinities, long strings and nesting past the JSON limit. String fields named in `vocabulary`
also draw from known-good values (a real process id, a valid subject), so requests reach the checks
behind the first one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import message_factory, struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

F = FieldDescriptor
_INT_RANGES = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1),
    F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1),
    F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1),
    F.TYPE_FIXED64: (0, 2**64 - 1),
}
_MAX_NESTING = 3  # message fields within message fields (Structs have their own depth)


def integers(low: int, high: int) -> st.SearchStrategy[int]:
    """Any value of the range, with the edges and small numbers (the usual limits) favoured."""
    edges = sorted({low, high, max(low, min(high, 0)), max(low, min(high, 1)), max(low, min(high, -1))})
    return st.one_of(
        st.sampled_from(edges), st.integers(max(low, -5), min(high, 1_100)), st.integers(low, high)
    )


def texts() -> st.SearchStrategy[str]:
    """Short text of any characters, or a long run of one (past most length limits)."""
    return st.one_of(
        st.text(max_size=12),
        st.integers(0, 5_000).map(lambda n: "x" * n),
    )


def json_values(max_depth: int = 24) -> st.SearchStrategy[Any]:
    """JSON-like values as a Struct carries them: finite or not, shallow or nested past the limit."""
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1e308]),
        texts(),
    )
    shallow = st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
        ),
        max_leaves=8,
    )
    deep = st.integers(1, max_depth).map(_nested)
    return st.one_of(shallow, deep)


def _nested(depth: int) -> Any:
    value: Any = "x"
    for n in range(depth):
        value = {"a": value} if n % 2 else [value]
    return value


def structs() -> st.SearchStrategy[struct_pb2.Struct]:
    def build(fields: dict[str, Any]) -> struct_pb2.Struct:
        message = struct_pb2.Struct()
        message.update(fields)
        return message

    return st.dictionaries(st.text(max_size=8), json_values(), max_size=4).map(build)


def messages(
    descriptor: Descriptor, vocabulary: Mapping[str, Sequence[Any]] | None = None, *, nesting: int = 0
) -> st.SearchStrategy[Message]:
    """Random messages of `descriptor`'s type; `vocabulary` adds known values per field name."""
    words = vocabulary or {}
    cls = message_factory.GetMessageClass(descriptor)

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        for oneof in descriptor.oneofs:
            chosen = draw(st.sampled_from([None, *oneof.fields]))
            if chosen is not None:
                _set(message, chosen, draw(_value(chosen, words, nesting)))
        for field in descriptor.fields:
            if field.containing_oneof is not None or not draw(st.booleans()):
                continue
            entry = field.message_type
            if entry is not None and entry.GetOptions().map_entry:
                keys = _value(entry.fields_by_name["key"], words, nesting)
                values = _value(entry.fields_by_name["value"], words, nesting)
                for key, value in draw(st.dictionaries(keys, values, max_size=3)).items():
                    _set_entry(getattr(message, field.name), entry.fields_by_name["value"], key, value)
            elif field.is_repeated:
                for value in draw(st.lists(_value(field, words, nesting), max_size=3)):
                    _append(getattr(message, field.name), field, value)
            else:
                _set(message, field, draw(_value(field, words, nesting)))
        return message

    return build()


def _value(
    field: FieldDescriptor, words: Mapping[str, Sequence[Any]], nesting: int
) -> st.SearchStrategy[Any]:
    kind = field.type
    if field.message_type is not None:
        name = field.message_type.full_name
        if name == "google.protobuf.Struct":
            return structs()
        if name in ("google.protobuf.Duration", "google.protobuf.Timestamp"):
            cls = message_factory.GetMessageClass(field.message_type)
            return st.builds(
                cls,
                seconds=st.one_of(integers(-(2**63), 2**63 - 1), st.integers(0, 200_000)),
                nanos=integers(-(2**31), 2**31 - 1),
            )
        if nesting >= _MAX_NESTING:
            return st.just(message_factory.GetMessageClass(field.message_type)())
        return messages(field.message_type, words, nesting=nesting + 1)
    if kind == F.TYPE_STRING:
        known = words.get(field.name, ())
        return st.one_of(st.sampled_from(known), texts()) if known else texts()
    if kind == F.TYPE_BYTES:
        return st.one_of(st.binary(max_size=32), st.integers(0, 70_000).map(lambda n: b"x" * n))
    if kind == F.TYPE_BOOL:
        return st.booleans()
    if kind in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=64 if kind == F.TYPE_DOUBLE else 32)
    if field.enum_type is not None:
        known_numbers = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known_numbers), integers(-(2**31), 2**31 - 1))
    low, high = _INT_RANGES[kind]
    known = [w for w in words.get(field.name, ()) if isinstance(w, int)]
    return st.one_of(st.sampled_from(known), integers(low, high)) if known else integers(low, high)


def _set(message: Message, field: FieldDescriptor, value: Any) -> None:
    if field.type == F.TYPE_MESSAGE:
        getattr(message, field.name).CopyFrom(value)
    else:
        setattr(message, field.name, value)


def _append(container: Any, field: FieldDescriptor, value: Any) -> None:
    if field.type == F.TYPE_MESSAGE:
        container.add().CopyFrom(value)
    else:
        container.append(value)


def _set_entry(container: Any, value_field: FieldDescriptor, key: Any, value: Any) -> None:
    if value_field.type == F.TYPE_MESSAGE:
        container[key].CopyFrom(value)
    else:
        container[key] = value
