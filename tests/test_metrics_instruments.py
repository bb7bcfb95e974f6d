"""The plain-Python counters and histograms export what prometheus_client's own would, sample for sample."""

from __future__ import annotations

import math

import grpc
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from control_plane.observability.instruments import CounterFamily, HistogramFamily
from control_plane.server import App
from hms.mgmt.v1 import bus_pb2, bus_pb2_grpc
from hms_mgmt import Client
from tests.metrics_support import sample, scrape

BUCKETS = (0.001, 0.01, 0.1, 1.0, 10.0)
# On a bound, between bounds, below the first, past the last, negative, zero.
VALUES = (0.001, 0.01, 0.0005, 0.05, 1.0, 3.0, 10.0, 11.0, 1e9, -1.0, 0.0)


def without_created(text: bytes) -> list[str]:
    """The exposition's lines but the `_created` samples, whose times differ between two registries."""
    return [line for line in text.decode().splitlines() if "_created" not in line or line.startswith("#")]


def pair() -> tuple[CollectorRegistry, CollectorRegistry]:
    return CollectorRegistry(), CollectorRegistry()


@pytest.mark.parametrize("generate", [generate_latest, generate_openmetrics])
def test_a_labelled_histogram_exports_what_prometheus_clients_does(generate: object) -> None:
    ours, theirs = pair()
    family = HistogramFamily("x_seconds", "How long.", ("a", "b"), BUCKETS)
    ours.register(family)
    reference = Histogram("x_seconds", "How long.", ("a", "b"), buckets=BUCKETS, registry=theirs)

    for n, value in enumerate(VALUES):
        labels = ("one", "task") if n % 3 else ("two", "wait")
        family.child(*labels).observe(value)
        reference.labels(*labels).observe(value)
    family.child("three", "none")
    reference.labels("three", "none")

    assert callable(generate)
    assert without_created(generate(ours)) == without_created(generate(theirs))


def test_an_unlabelled_histogram_and_its_created_family_match_prometheus_clients() -> None:
    ours, theirs = pair()
    family = HistogramFamily("y_size", "How many.", (), (1.0, 2.0, 4.0))
    ours.register(family)
    series = family.child()
    reference = Histogram("y_size", "How many.", buckets=(1.0, 2.0, 4.0), registry=theirs)

    for value in (1, 3, 4, 5, 2):
        series.observe(value)
        reference.observe(value)

    assert without_created(generate_latest(ours)) == without_created(generate_latest(theirs))
    created = sample(generate_latest(ours).decode(), "y_size_created")
    assert math.isclose(created, series.created) and created > 0


@pytest.mark.parametrize("generate", [generate_latest, generate_openmetrics])
def test_a_counter_exports_what_prometheus_clients_does(generate: object) -> None:
    ours, theirs = pair()
    family = CounterFamily("z_calls_total", "Calls.", ("method", "code"))
    ours.register(family)
    reference = Counter("z_calls_total", "Calls.", ("method", "code"), registry=theirs)

    for method, code, times in (("Get", "OK", 3), ("Put", "OK", 0), ("Get", "NOT_FOUND", 2)):
        family.child(method, code).value += times
        reference.labels(method, code).inc(times)

    assert callable(generate)
    assert without_created(generate(ours)) == without_created(generate(theirs))


def test_a_series_is_asked_for_with_every_label() -> None:
    with pytest.raises(ValueError, match="labels"):
        HistogramFamily("h_seconds", "h", ("a",), BUCKETS).child()
    with pytest.raises(ValueError, match="labels"):
        CounterFamily("c_total", "c", ("a", "b")).child("x")
    with pytest.raises(ValueError, match="order"):
        HistogramFamily("h_seconds", "h", (), (1.0, 0.5))


async def test_a_bidi_stream_counts_each_message_received_and_sent(server: App, client: Client) -> None:
    before = await scrape(server)
    # Three batches on one PublishStream, then its status: the server observes the call as it ends,
    # before it sends the status (a client that stops at the last answer may scrape before that).
    async with grpc.aio.insecure_channel(server.address) as channel:
        call = bus_pb2_grpc.BusStub(channel).PublishStream()
        for batch in range(3):
            message = bus_pb2.BusMessage(subject=f"orders.{batch}", data=b"x")
            await call.write(bus_pb2.PublishStreamRequest(batch_id=batch, messages=[message] * 3))
            await call.read()
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK
    after = await scrape(server)

    stream = {"grpc_service": "hms.mgmt.v1.Bus", "grpc_method": "PublishStream", "grpc_type": "bidi_stream"}
    for name, moved in (
        ("grpc_server_started_total", 1),
        ("grpc_server_msg_received_total", 3),
        ("grpc_server_msg_sent_total", 3),
        ("grpc_server_handling_seconds_count", 1),
    ):
        assert sample(after, name, **stream) - sample(before, name, **stream) == moved, name
    ok = sample(after, "grpc_server_handled_total", grpc_code="OK", **stream)
    assert ok - sample(before, "grpc_server_handled_total", grpc_code="OK", **stream) == 1
