"""DiscoveryResponses joined from resources serialized once, instead of one encoding per subscriber.

Protobuf's wire format is a sequence of fields that a parser reads in any order, and a repeated
message field is one (tag, length, bytes) element per item. So a DiscoveryResponse is its
version_info and type_url fields, the stored element of each resource, and its nonce field, joined:
a change serializes each resource it altered once, the streams that hold the same resources share
one body per version, and each stream adds only its own nonce (a few bytes). Parsing the result
gives the message built field by field (tests/test_mesh_encoding.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf import any_pb2

# Field numbers of envoy.service.discovery.v3.DiscoveryResponse (all length-delimited).
_VERSION_INFO, _RESOURCES, _TYPE_URL, _NONCE = 1, 2, 4, 5
_LENGTH_DELIMITED = 2


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited field: tag, length, payload."""
    return _varint(number << 3 | _LENGTH_DELIMITED) + _varint(len(payload)) + payload


@dataclass(frozen=True, slots=True, eq=False)
class Resource:
    """One xDS resource as sent: packed for CSDS, and its DiscoveryResponse element, encoded once.

    Compared by identity: the snapshot keeps a resource's object for as long as its bytes do not
    change, so `is` tells a stream whether what it holds is still current.
    """

    name: str
    packed: any_pb2.Any
    element: bytes

    @classmethod
    def of(cls, name: str, message: object) -> Resource:
        """Pack and encode `message` (deterministically: equal content, equal bytes)."""
        packed = any_pb2.Any()
        packed.Pack(message, deterministic=True)  # type: ignore[arg-type]
        return cls(name, packed, _field(_RESOURCES, packed.SerializeToString(deterministic=True)))


def body(version: str, type_url: str, resources: Sequence[Resource]) -> bytes:
    """Everything of a response but its nonce: version, type and resources, in that order."""
    return b"".join(
        (
            _field(_VERSION_INFO, version.encode()),
            _field(_TYPE_URL, type_url.encode()),
            *(resource.element for resource in resources),
        )
    )


def response(response_body: bytes, nonce: str) -> bytes:
    """A whole DiscoveryResponse: a shared body and this stream's nonce."""
    return response_body + _field(_NONCE, nonce.encode())
