"""Bad input: each request gets its status with the field at fault, and nothing stored changes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2

from control_plane.server import App
from hms.mgmt.v1 import registry_pb2 as pb
from hms.mgmt.v1 import registry_pb2_grpc

OK_INSTANCE = {"service": "svc", "address": "127.0.0.1:9000"}


def register(
    ttl_s: float | None = None, probe: pb.HealthProbe | None = None, **instance: object
) -> pb.RegisterRequest:
    """A RegisterRequest built from a valid instance with some fields overridden."""
    request = pb.RegisterRequest(instance=pb.ServiceInstance(**{**OK_INSTANCE, **instance}))  # type: ignore[arg-type]
    if ttl_s is not None:
        request.ttl.CopyFrom(duration_pb2.Duration(seconds=int(ttl_s), nanos=int((ttl_s % 1) * 1e9)))
    if probe is not None:
        request.instance.probe.CopyFrom(probe)
    return request


BAD_REGISTRATIONS = [
    ("empty service", register(service=""), "instance.service"),
    ("oversized service", register(service="s" * 129), "instance.service"),
    ("service with spaces", register(service="my service"), "instance.service"),
    ("bad instance id", register(instance_id="a/b"), "instance.instance_id"),
    ("empty address", register(address=""), "instance.address"),
    ("address without port", register(address="localhost"), "instance.address"),
    ("port out of range", register(address="127.0.0.1:70000"), "instance.address"),
    ("unbracketed IPv6", register(address="::1:50051"), "instance.address"),
    ("bad host", register(address="bad_host!:80"), "instance.address"),
    ("ttl too short", register(ttl_s=0.2), "ttl"),
    ("ttl too long", register(ttl_s=7200), "ttl"),
    ("too many tags", register(tags=[f"t{n}" for n in range(33)]), "instance.tags"),
    ("empty tag", register(tags=["ok", ""]), "instance.tags[1]"),
    ("oversized metadata value", register(metadata={"k": "v" * 1025}), "instance.metadata['k']"),
    ("too many metadata entries", register(metadata={f"k{n}": "v" for n in range(65)}), "instance.metadata"),
    ("oversized version", register(version="1" * 65), "instance.version"),
    (
        "probe timeout above interval",
        register(
            probe=pb.HealthProbe(
                interval=duration_pb2.Duration(seconds=1), timeout=duration_pb2.Duration(seconds=2)
            )
        ),
        "instance.probe.timeout",
    ),
    ("probe threshold too high", register(probe=pb.HealthProbe(threshold=11)), "instance.probe.threshold"),
]


@pytest.fixture
async def stub(server: App) -> AsyncIterator[registry_pb2_grpc.RegistryAsyncStub]:
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield registry_pb2_grpc.RegistryStub(channel)


def violations(error: grpc.aio.AioRpcError) -> list[str]:
    """Fields named by the google.rpc.BadRequest detail of a failed call."""
    fields: list[str] = []
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            assert isinstance(value, bytes)
            for detail in status_pb2.Status.FromString(value).details:
                if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    fields += [v.field for v in bad.field_violations]
    return fields


async def state(stub: registry_pb2_grpc.RegistryAsyncStub) -> pb.ListServicesResponse:
    return await stub.ListServices(pb.ListServicesRequest())


@pytest.mark.parametrize(
    ("case", "request_", "field"), BAD_REGISTRATIONS, ids=[c[0] for c in BAD_REGISTRATIONS]
)
async def test_bad_registration_is_refused_naming_the_field(
    stub: registry_pb2_grpc.RegistryAsyncStub, case: str, request_: pb.RegisterRequest, field: str
) -> None:
    await stub.Register(register(instance_id="existing"))
    before = await state(stub)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Register(request_)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(caught.value), caught.value.details()
    assert await state(stub) == before


BAD_CALLS = [
    (
        "heartbeat of unknown lease",
        "Heartbeat",
        pb.HeartbeatRequest(lease_id="nope"),
        grpc.StatusCode.NOT_FOUND,
    ),
    ("heartbeat without lease", "Heartbeat", pb.HeartbeatRequest(), grpc.StatusCode.INVALID_ARGUMENT),
    (
        "deregister unknown",
        "Deregister",
        pb.DeregisterRequest(service="svc", instance_id="nope"),
        grpc.StatusCode.NOT_FOUND,
    ),
    (
        "deregister without service",
        "Deregister",
        pb.DeregisterRequest(instance_id="x"),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    ("lookup without service", "Lookup", pb.LookupRequest(), grpc.StatusCode.INVALID_ARGUMENT),
    (
        "lookup with bad range",
        "Lookup",
        pb.LookupRequest(service="svc", version=">=>2"),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
]


@pytest.mark.parametrize(("case", "method", "request_", "code"), BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
async def test_bad_call_gets_its_status_and_changes_nothing(
    stub: registry_pb2_grpc.RegistryAsyncStub, case: str, method: str, request_: object, code: grpc.StatusCode
) -> None:
    await stub.Register(register(instance_id="existing"))
    before = await state(stub)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(stub, method)(request_)

    assert caught.value.code() == code
    assert await state(stub) == before


async def test_watch_with_negative_revision_is_refused(stub: registry_pb2_grpc.RegistryAsyncStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stub.Watch(pb.WatchRequest(after_revision=-1)):
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
