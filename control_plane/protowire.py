"""Protobuf wire primitives for the encoders that write messages as bytes themselves, where building a
protobuf object per message costs more than the message (the OTLP span exporter, Bus subscriber frames).

Both layers that use them (observability and the gRPC servicers) import them from here: one varint.
"""

from __future__ import annotations

# Varints of 0..127: one byte, the value itself.
SMALL = [bytes((n,)) for n in range(128)]


def varint(value: int) -> bytes:
    """The base-128 varint of an integer; a negative one as protobuf writes an int64 (ten bytes)."""
    if value < 128:
        if value < 0:
            value += 1 << 64  # int64: two's complement, ten bytes
        else:
            return SMALL[value]
    out = bytearray()
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field (bytes, string or message) with its tag."""
    return tag + varint(len(payload)) + payload
