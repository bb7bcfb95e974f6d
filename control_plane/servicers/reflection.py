"""Server reflection that serves the contract with its documentation.

The generated `*_pb2` modules embed descriptors without source info, and protobuf's `CopyToProto`
drops it anyway, so grpcio-reflection alone answers with bare descriptors: `grpcurl describe` would
show no comments. `make proto` also writes `clients/python/hms/mgmt/v1/documented.binpb` (the same files with
`--include_source_info`); this servicer answers with those files where it has them, so every
client that reads reflection (grpcurl, Postman, grpcui) shows the .proto comments.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from importlib import resources
from typing import Any

import grpc
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

DOCUMENTED = "documented.binpb"


def documented_files() -> dict[str, bytes]:
    """Serialized FileDescriptorProtos with source info, by file name, as `make proto` wrote them.

    protoc fills in every field's `json_name`, which the generated modules leave out; it is cleared
    so that grpcurl keeps printing the proto field names (`instance_id`), as docs/grpcurl.md shows
    and as it did before the comments were served. Requests accept either form.
    """
    raw = resources.files("hms.mgmt.v1").joinpath(DOCUMENTED).read_bytes()
    files = descriptor_pb2.FileDescriptorSet.FromString(raw).file
    for f in files:
        _clear_json_names(f.message_type)
    return {f.name: f.SerializeToString() for f in files}


def _clear_json_names(messages: Iterable[descriptor_pb2.DescriptorProto]) -> None:
    for message in messages:
        for field in message.field:
            field.ClearField("json_name")
        _clear_json_names(message.nested_type)


class DocumentedReflectionServicer:
    """grpcio-reflection's servicer, with each file of ours replaced by its documented form."""

    def __init__(self, service_names: Iterable[str], documented: dict[str, bytes]) -> None:
        # Any: the typeshed stub declares the async generator as a coroutine.
        self._inner: Any = reflection.aio.ReflectionServicer(tuple(service_names))
        self._documented = documented

    async def ServerReflectionInfo(
        self,
        request_iterator: AsyncIterable[reflection_pb2.ServerReflectionRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[reflection_pb2.ServerReflectionResponse]:
        """Answer as grpcio-reflection does, then swap in the documented files."""
        async for response in self._inner.ServerReflectionInfo(request_iterator, context):
            if response.HasField("file_descriptor_response"):
                self._document(response.file_descriptor_response)
            yield response

    def _document(self, answer: reflection_pb2.FileDescriptorResponse) -> None:
        files = answer.file_descriptor_proto
        for i, serialized in enumerate(files):
            name = descriptor_pb2.FileDescriptorProto.FromString(serialized).name
            documented = self._documented.get(name)
            if documented is not None:
                files[i] = documented


def enable_documented_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Serve reflection (v1alpha, which grpcurl falls back to) with source comments."""
    servicer = DocumentedReflectionServicer(service_names, documented_files())
    add: Any = reflection_pb2_grpc.add_ServerReflectionServicer_to_server  # untyped in grpcio-reflection
    add(servicer, server)
