"""Why a request's bytes do not parse, and which field is at fault.

The protobuf parser only says that a message is corrupt or nested too deeply. To answer
INVALID_ARGUMENT naming the field, the bytes are walked again here, guided by the request's
descriptor: the first malformed tag, length, packed run, invalid UTF-8 string or too-deep nesting
is reported with its path ("input.order.lines[3]", "messages[2].subject"). Only requests that
failed to parse come here, so speed does not matter; robustness does (any bytes, any length).
"""

from __future__ import annotations

import re

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from control_plane.errors import FieldViolation, quote

# upb's recursion limit for parsing: a message nested deeper than this does not parse.
PARSE_DEPTH_LIMIT = 100
_PATH_MAX = 160
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")
_STRUCT, _VALUE, _LIST = "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"
_VARINT_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_BOOL,
        FieldDescriptor.TYPE_ENUM,
    }
)
_FIXED_SIZE = {
    FieldDescriptor.TYPE_FIXED32: 4,
    FieldDescriptor.TYPE_SFIXED32: 4,
    FieldDescriptor.TYPE_FLOAT: 4,
    FieldDescriptor.TYPE_FIXED64: 8,
    FieldDescriptor.TYPE_SFIXED64: 8,
    FieldDescriptor.TYPE_DOUBLE: 8,
}
_LENGTH_DELIMITED = 2


class _Fault(Exception):
    def __init__(self, path: str, description: str) -> None:
        super().__init__(description)
        self.path, self.description = path, description


def find_fault(descriptor: Descriptor, data: bytes) -> FieldViolation:
    """The first problem in `data` read as a `descriptor` message, as a field violation."""
    try:
        _Walk(data).message(descriptor, 0, len(data), "", 1)
    except _Fault as fault:
        path = fault.path if len(fault.path) <= _PATH_MAX else fault.path[:_PATH_MAX] + "…"
        return FieldViolation(path, fault.description)
    return FieldViolation("", f"not a valid {descriptor.full_name} message")


class _Walk:
    """One pass over the bytes; raises _Fault at the first problem."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def varint(self, pos: int, end: int, path: str) -> tuple[int, int]:
        value = shift = 0
        while True:
            if pos >= end:
                raise _Fault(path, "not valid protobuf: a number runs past the end of the message")
            byte = self.data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value, pos
            shift += 7
            if shift >= 70:
                raise _Fault(path, "not valid protobuf: a number longer than 10 bytes")

    def message(
        self, descriptor: Descriptor | None, pos: int, end: int, path: str, depth: int, group: int = 0
    ) -> int:
        """Walk one message (or group) from `pos`; returns where it ended."""
        if depth > PARSE_DEPTH_LIMIT:
            raise _Fault(
                path,
                f"nested more than {PARSE_DEPTH_LIMIT} levels deep (protobuf's limit); "
                "JSON values may nest objects and lists at most 20 levels",
            )
        seen: dict[int, int] = {}
        while pos < end:
            key, pos = self.varint(pos, end, path)
            number, wire_type = key >> 3, key & 7
            field = descriptor.fields_by_number.get(number) if descriptor is not None else None
            index = seen.get(number, 0)
            seen[number] = index + 1
            child = _child(path, descriptor, field, index) if field is not None else path
            if number == 0:
                raise _Fault(path, "not valid protobuf: field number 0")
            if wire_type == 0:
                _, pos = self.varint(pos, end, child)
            elif wire_type in (1, 5):
                pos += 8 if wire_type == 1 else 4
                if pos > end:
                    raise _Fault(child, "not valid protobuf: a fixed-size value runs past the end")
            elif wire_type == _LENGTH_DELIMITED:
                length, pos = self.varint(pos, end, child)
                if pos + length > end:
                    raise _Fault(child, "not valid protobuf: a length runs past the end of the message")
                if field is not None:
                    self.payload(descriptor, field, pos, pos + length, child, depth)
                pos += length
            elif wire_type == 3:
                pos = self.message(None, pos, end, child, depth + 1, group=number)
            elif wire_type == 4:
                if group != number:
                    raise _Fault(path, "not valid protobuf: an end-group tag without its start")
                return pos
            else:
                raise _Fault(child, f"not valid protobuf: wire type {wire_type} does not exist")
        if group:
            raise _Fault(path, "not valid protobuf: a group without its end tag")
        return pos

    def payload(
        self, owner: Descriptor | None, field: FieldDescriptor, pos: int, end: int, path: str, depth: int
    ) -> None:
        """Check a length-delimited value of a known field (a mismatched wire type is an unknown field)."""
        kind = field.type
        entry_type = field.message_type
        if kind == FieldDescriptor.TYPE_MESSAGE and entry_type is not None:
            if entry_type.GetOptions().map_entry:
                key = self._map_key(pos, end)
                struct = owner is not None and owner.full_name == _STRUCT
                path = _key_path(path, key, struct=struct)
            self.message(entry_type, pos, end, path, depth + 1)
        elif kind == FieldDescriptor.TYPE_STRING:
            try:
                self.data[pos:end].decode("utf-8")
            except UnicodeDecodeError:
                raise _Fault(path, "not valid UTF-8") from None
        elif field.is_repeated and kind in _VARINT_TYPES:
            while pos < end:
                _, pos = self.varint(pos, end, path)
        elif field.is_repeated and kind in _FIXED_SIZE and (end - pos) % _FIXED_SIZE[kind]:
            raise _Fault(path, "not valid protobuf: a packed run of a size that does not divide")

    def _map_key(self, pos: int, end: int) -> str | None:
        """The key of a map entry if it comes first and reads cleanly (it does when well-formed)."""
        try:
            key, pos = self.varint(pos, end, "")
            if key >> 3 != 1:
                return None
            if key & 7 == 0:
                return str(self.varint(pos, end, "")[0])
            length, pos = self.varint(pos, end, "")
            if key & 7 != _LENGTH_DELIMITED or pos + length > end:
                return None
            text: str = self.data[pos : pos + length].decode("utf-8")
            return text
        except (_Fault, UnicodeDecodeError):
            return None


def _child(path: str, parent: Descriptor | None, field: FieldDescriptor, index: int) -> str:
    """The path of one occurrence of `field`; Struct, Value and ListValue read as the JSON they carry."""
    owner = parent.full_name if parent is not None else ""
    if owner == _VALUE or (parent is not None and parent.GetOptions().map_entry):
        return path  # transparent: the JSON value itself, or a map entry's key and value
    if owner == _LIST:
        return f"{path}[{index}]"
    if owner == _STRUCT:
        return path  # the map entry adds the key (payload)
    name = f"{path}.{field.name}" if path else field.name
    if field.is_repeated and not (
        field.message_type is not None and field.message_type.GetOptions().map_entry
    ):
        return f"{name}[{index}]"
    return name


def _key_path(path: str, key: str | None, *, struct: bool) -> str:
    """The path of a map entry: `metadata['zone']`, or `input.zone` for a Struct's field (as in JSON)."""
    if key is None:
        return f"{path}[?]"
    if struct and _IDENTIFIER.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{quote(key, 32)}]"
