"""Subscribe frames encoded straight to protobuf wire bytes, for the deliveries of a busy subscriber.

Building a frame as a protobuf object (one parse of templates, then data, sequence and subject sequence
set field by field from Python, then serialization) took about a tenth of the control plane's CPU for an
at-most-once subscriber (py-spy). A delivery is a few length-delimited fields around the message's data,
and everything but its data, its numbers, its id and its delivery id is shared by a run of deliveries
(subject, content type, publish time, consumer, attempt): those parts are encoded once per run (and the
bytes up to the data once per size), and each delivery is joined from them, its data, and its numbers'
varints, read from tables. 0.58 -> 0.36 us a 128 B delivery, serialization included (best of 15 repeats
of a 1,000-delivery frame, loaded machine).

The bytes are those of `SubscribeResponse` (see bus.proto: deliveries = 2, Delivery.message = 1,
delivery_id = 2, attempt = 3, consumer = 4, BusMessage.subject = 1, data = 2, content_type = 4,
message_id = 5, sequence = 6, subject_sequence = 7, published_at = 8). Strings and the attempt are left
out at their zero value, as protobuf's own encoder does; data and the two sequences are always written
(an explicit zero parses the same), and published_at is always present, as the built frames have it. Deliveries with headers
are left to `bus_convert.batch_response` (`encodable` says which frames this module takes).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import repeat

from control_plane import protowire
from control_plane.core.bus.consumer import Batch, Delivery, LiveDeliveries, delivered_messages
from control_plane.models import StoredMessage
from control_plane.models.bus import STORED_HEADERS
from control_plane.servicers.convert import timestamp
from hms.mgmt.v1 import bus_pb2 as pb

_TABLE_BITS = 14
_TABLE_SIZE = 1 << _TABLE_BITS
_TABLE_MASK = _TABLE_SIZE - 1
# Varints of 0 .. 2**14-1, and the two leading bytes (continuation bits set) of a larger value's low 14 bits.
_VARINT = [protowire.varint(n) for n in range(_TABLE_SIZE)]
_LOW14 = [bytes(((n & 0x7F) | 0x80, (n >> 7) | 0x80)) for n in range(_TABLE_SIZE)]
_TABLE_LIMIT = 1 << (2 * _TABLE_BITS)


def varint(value: int) -> bytes:
    """The varint of a non-negative integer: from the tables below 2**28, computed above."""
    if value < _TABLE_SIZE:
        return _VARINT[value]
    if value < _TABLE_LIMIT:
        return _LOW14[value & _TABLE_MASK] + _VARINT[value >> _TABLE_BITS]
    return protowire.varint(value)


def _text(tag: bytes, value: str) -> bytes:
    """A string field, left out when empty."""
    return protowire.field(tag, value.encode()) if value else b""


# What a run of deliveries shares: subject, publish time, content type, consumer, attempt.
_Shared = tuple[str, float, str, str, int]


def _shared_parts(shared: _Shared) -> tuple[bytes, bytes, bytes]:
    """A run's bytes: the message's leading fields, its trailing ones, and the delivery's trailing ones."""
    subject, published_at, content_type, consumer, attempt = shared
    head = _text(b"\x0a", subject) + _text(b"\x22", content_type)
    tail = protowire.field(b"\x42", timestamp(published_at).SerializeToString())
    delivery_tail = (b"\x18" + varint(attempt) if attempt else b"") + _text(b"\x22", consumer)
    return head, tail, delivery_tail


def encodable(deliveries: Sequence[Delivery]) -> bool:
    """Whether `frame` encodes these deliveries (none has headers)."""
    return not any(map(STORED_HEADERS, delivered_messages(deliveries)))


def _tagged_low14(tag: int) -> list[bytes]:
    """A field's tag, then the two leading bytes (continuation bits set) of a varint's low 14 bits."""
    return [bytes((tag, (n & 0x7F) | 0x80, (n >> 7) | 0x80)) for n in range(_TABLE_SIZE)]


# BusMessage.sequence (6) and subject_sequence (7) past 2**14 (soon the usual case in a busy log): their
# tag and low 14 bits from one of these, the rest from _VARINT.
_SEQUENCE_LOW = _tagged_low14(0x30)
_SUBJECT_SEQUENCE_LOW = _tagged_low14(0x38)
_SEQUENCE_TAG = b"\x30"
_SUBJECT_SEQUENCE_TAG = b"\x38"


def frame(batch: Batch) -> bytes:
    """The encoded SubscribeResponse of a batch whose deliveries are `encodable`."""
    parts: list[bytes] = []
    extend = parts.extend
    runs: dict[_Shared, tuple[bytes, bytes, bytes]] = {}
    shared: _Shared | None = None
    head = tail = delivery_tail = b""
    # A delivery's bytes up to its data, by its data's size and its numbers' sizes, for the current run.
    leads: dict[tuple[int, int, int], bytes] = {}
    fixed = 0
    low, subject_low = _SEQUENCE_LOW, _SUBJECT_SEQUENCE_LOW
    table, mask, bits = _VARINT, _TABLE_MASK, _TABLE_BITS
    deliveries = batch.deliveries
    if isinstance(deliveries, LiveDeliveries):
        # At most once: the messages as they are, all of one consumer's first attempt, without ids.
        rows: Iterable[tuple[StoredMessage, str, int, str]] = zip(
            deliveries.messages, repeat(""), repeat(1), repeat(deliveries.consumer)
        )
    else:
        rows = deliveries
    for m, delivery_id, attempt, consumer in rows:
        key = (m.subject, m.published_at, m.content_type, consumer, attempt)
        if key != shared:
            shared = key
            found = runs.get(key)
            if found is None:
                found = runs[key] = _shared_parts(key)
            head, tail, delivery_tail = found
            leads = {}
            fixed = len(head) + len(tail) + 1  # + the data's tag
        data = m.data
        sequence, subject_sequence = m.sequence, m.subject_sequence
        # Varints from the tables inline: a call per varint costs as much as the lookups.
        number = (
            low[sequence & mask] + table[sequence >> bits]
            if _TABLE_SIZE <= sequence < _TABLE_LIMIT
            else _SEQUENCE_TAG + varint(sequence)
        )
        subject_number = (
            subject_low[subject_sequence & mask] + table[subject_sequence >> bits]
            if _TABLE_SIZE <= subject_sequence < _TABLE_LIMIT
            else _SUBJECT_SEQUENCE_TAG + varint(subject_sequence)
        )
        # The ids (explicit acks have delivery ids): the message's after its data, the delivery's after
        # the message.
        message_id = _text(b"\x2a", m.message_id) if m.message_id else b""
        if delivery_id:
            encoded = delivery_id.encode()
            ids = (
                b"\x12" + table[len(encoded)] + encoded
                if len(encoded) < _TABLE_SIZE
                else protowire.field(b"\x12", encoded)
            )
        else:
            ids = b""
        shape = (len(data), len(message_id) + len(number) + len(subject_number), len(ids))
        lead = leads.get(shape)
        if lead is None:
            lead = leads[shape] = _lead(head, fixed, shape, len(delivery_tail))
        extend((lead, data, message_id, number, subject_number, tail, ids, delivery_tail))
    gap = batch.gap
    if gap is not None:
        response = pb.SubscribeResponse()
        response.gap.first_sequence = gap.first_sequence
        response.gap.last_sequence = gap.last_sequence
        response.gap.skipped = gap.skipped
        parts.append(response.SerializeToString())
    return b"".join(parts)


def _lead(head: bytes, fixed: int, shape: tuple[int, int, int], delivery_tail: int) -> bytes:
    """A delivery's bytes up to its data: its tag and size, its message's tag and size, the message's leading
    shared fields and its data's tag and size. `fixed`: the message's shared bytes and the data's tag;
    `shape`: the sizes of the data, of the message's fields after it but the shared ones, and of the
    delivery's fields after the message but the shared ones."""
    size, after_data, after_message = shape
    data_size = varint(size)
    message_size = fixed + len(data_size) + size + after_data
    message_head = b"\n" + varint(message_size)
    delivery_size = len(message_head) + message_size + after_message + delivery_tail
    return b"\x12" + varint(delivery_size) + message_head + head + b"\x12" + data_size
