"""How the control plane's services are handed to grpc.aio: every method as a wrapped generic handler,
none as a registered method (see control_plane.servicers.decoding)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import grpc
import pytest

from control_plane.servicers.decoding import CleanDecoding
from control_plane.servicers.errors import Undecodable
from hms.mgmt.v1 import registry_pb2, registry_pb2_grpc, workflow_pb2, workflow_pb2_grpc


class Recorder:
    """Stands in for grpc.aio.Server: keeps what the generated add_*_to_server functions hand over."""

    def __init__(self) -> None:
        self.generic: list[grpc.GenericRpcHandler] = []
        self.registered: list[str] = []

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self.generic.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Any]) -> None:
        self.registered.append(service)


class _Details(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def _served(recorder: Recorder, method: str) -> Any:
    for handler in recorder.generic:
        found = handler.service(_Details(method))
        if found is not None:
            return found
    return None


@pytest.mark.parametrize(
    ("add", "servicer", "descriptor"),
    [
        (
            registry_pb2_grpc.add_RegistryServicer_to_server,
            registry_pb2_grpc.RegistryServicer(),  # type: ignore[abstract]
            registry_pb2.DESCRIPTOR.services_by_name["Registry"],
        ),
        (
            workflow_pb2_grpc.add_WorkflowServicer_to_server,
            workflow_pb2_grpc.WorkflowServicer(),  # type: ignore[abstract]
            workflow_pb2.DESCRIPTOR.services_by_name["Workflow"],
        ),
    ],
)
def test_every_method_is_served_by_a_wrapped_generic_handler_and_none_is_registered(
    add: Any, servicer: Any, descriptor: Any
) -> None:
    recorder = Recorder()
    decoding = CleanDecoding(recorder)  # type: ignore[arg-type]
    add(servicer, decoding)
    decoding.check()
    # grpcio's asyncio server waits on a pending request per registered method for every call it takes.
    assert recorder.registered == []
    for method in descriptor.methods:
        handler = _served(recorder, f"/{descriptor.full_name}/{method.name}")
        assert handler is not None, method.name
        # Wrapped: bytes that do not parse come out as a value carrying INVALID_ARGUMENT, not an exception.
        undecodable = handler.request_deserializer(b"\xff\xff\xff")
        assert isinstance(undecodable, Undecodable), method.name
    assert _served(recorder, f"/{descriptor.full_name}/NoSuchMethod") is None
