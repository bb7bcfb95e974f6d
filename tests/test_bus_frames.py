"""Subscribe frames encoded straight to wire bytes parse to what the protobuf-built frames hold."""

from __future__ import annotations

import random

import pytest

from control_plane.core.bus.consumer import Batch, Delivery, Gap, LiveDeliveries, delivered_messages
from control_plane.models import NO_HEADERS, StoredMessage
from control_plane.servicers import bus_convert, bus_frames
from hms.mgmt.v1 import bus_pb2 as pb

# Varint edges: one byte, two, the tables' limits (2**14, 2**28), and far beyond.
NUMBERS = [1, 127, 128, 16_383, 16_384, 2**21, 2**28 - 1, 2**28, 2**40, 2**63 - 1]


def delivery(rng: random.Random, *, headers: bool = False) -> Delivery:
    message = StoredMessage(
        rng.choice([*NUMBERS, rng.randint(1, 2**62)]),
        rng.choice(NUMBERS),
        rng.choice(["a.b", "c", "é.x"]),
        rng.randbytes(rng.choice([0, 1, 127, 128, 300, 20_000])),
        {"traceparent": "00-ab-cd-01"} if headers else NO_HEADERS,
        rng.choice(["", "application/json"]),
        rng.choice(["", "id-é"]),
        rng.choice([0.0, 1_764_580_000.5, 12.000000001]),
    )
    return Delivery(
        message, rng.choice(["", "c/1/2.tag"]), rng.choice([0, 1, 2, 300]), rng.choice(["", "cons"])
    )


@pytest.mark.parametrize("seed", range(5))
def test_encoded_frames_parse_as_the_built_ones(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(60):
        batch = Batch([delivery(rng) for _ in range(rng.randint(1, 40))], rng.choice([None, Gap(5, 9, 5)]))
        assert bus_frames.encodable(batch.deliveries)
        encoded = bus_frames.frame(batch)
        assert pb.SubscribeResponse.FromString(encoded) == bus_convert.batch_response(batch)


def test_a_run_of_one_shape_shares_its_parts() -> None:
    messages = [
        StoredMessage(100 + n, n + 1, "bench.x", b"m" * 128, NO_HEADERS, "", "", 5.25) for n in range(50)
    ]
    batch = Batch([Delivery(m, "", 1, "_ephemeral") for m in messages])
    parsed = pb.SubscribeResponse.FromString(bus_frames.frame(batch))
    assert parsed == bus_convert.batch_response(batch)
    assert [d.message.sequence for d in parsed.deliveries] == list(range(100, 150))
    assert parsed.deliveries[0].message.HasField("published_at")


def test_deliveries_with_headers_are_left_to_the_protobuf_path() -> None:
    rng = random.Random(1)
    assert not bus_frames.encodable([delivery(rng), delivery(rng, headers=True)])


@pytest.mark.parametrize("value", [*NUMBERS, 2**64 - 1])
def test_varints_as_protobuf_writes_them(value: int) -> None:
    gap = pb.Gap(skipped=value).SerializeToString()
    assert gap == b"\x18" + bus_frames.varint(value)


def test_live_deliveries_encode_as_the_deliveries_they_stand_for() -> None:
    rng = random.Random(3)
    messages = [delivery(rng).message for _ in range(30)]
    live = LiveDeliveries(messages, "_ephemeral")
    built = [Delivery(m, "", 1, "_ephemeral") for m in messages]
    assert list(live) == built and live[3] == built[3] and live[-2:] == built[-2:] and len(live) == 30
    assert delivered_messages(live) is messages and delivered_messages(built) == messages
    gap = Gap(1, 4, 4)
    encoded = pb.SubscribeResponse.FromString(bus_frames.frame(Batch(live, gap)))
    assert (
        encoded
        == bus_convert.batch_response(Batch(built, gap))
        == bus_convert.batch_response(Batch(live, gap))
    )
