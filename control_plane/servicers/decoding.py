"""Requests whose bytes do not parse answer INVALID_ARGUMENT naming the field, not UNKNOWN.

grpc.aio deserializes a request before any servicer code runs, and an exception there becomes
UNKNOWN ("Unexpected DecodeError ..."), which a client cannot tell from a crash. So every method
handler is registered with a deserializer that never raises: bytes that do not parse become an
`Undecodable` carrying the INVALID_ARGUMENT to answer, its field found by walking the bytes against
the request's descriptor (wire.py). Servicer methods wrapped by `translate_errors` answer it
themselves, at no cost on their hot streams; the handlers of other services (health, reflection) are
wrapped here.

The generated `add_*_to_server` functions register their handlers twice, as a generic handler and as
registered method handlers (the same dict). `CleanDecoding` stands in for the server while they run:
it rebuilds the generic handler from the wrapped dict, and refuses to finish if a generic handler came
without its dict (a generator that changed shape must fail loudly, not serve unwrapped handlers).

It does not register them as registered methods. Since grpcio's asyncio server took registered methods
(grpc/grpc#41796), it keeps a pending request per registered method and waits for the next call on all
of them at once (`asyncio.wait`, a task per call), so every call costs in proportion to the methods
served (grpc/grpc#43461, open as of grpcio 1.85.3): this server serves ~60 of them. Measured on
Lookup (bench.registry's load, 3 alternating pairs): the control plane's CPU per call 234-242 us with
registered methods, 203-218 us without, which is a generic handler's dictionary lookup per service.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, TypeAlias

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor

from control_plane.errors import ControlPlaneError, FieldViolation, InvalidArgument
from control_plane.servicers.errors import ANSWERS_UNDECODABLE, Undecodable, decoded, status_for
from control_plane.servicers.wire import find_fault

logger = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # generic only in the type stubs


class CleanDecoding:
    """Registers method handlers on `server` with deserializers that never raise (see the module doc)."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server
        self._generic_without_methods = 0

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        """Set aside: the same methods come next as a dict, and are registered wrapped from it."""
        self._generic_without_methods += len(tuple(handlers))

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Handler]) -> None:
        """Register every handler of `service` with a clean deserializer, as a generic handler only (not
        as registered methods: see the module doc)."""
        wrapped = {name: clean(handler, f"{service}.{name}") for name, handler in handlers.items()}
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, wrapped),))
        self._generic_without_methods = max(0, self._generic_without_methods - 1)

    def check(self) -> None:
        """Fail if a service was added only as a generic handler (it would be served unwrapped: not at all)."""
        if self._generic_without_methods:
            raise RuntimeError("a service registered only a generic handler; its methods cannot be wrapped")


def clean(handler: Handler, method: str) -> Handler:
    """`handler` with a deserializer that never raises, answering undecodable requests itself if needed."""
    h: Any = handler
    deserializer = h.request_deserializer
    if deserializer is not None:
        deserializer = _lenient(deserializer, _request_type(method), method)
    serializer = h.response_serializer
    if h.response_streaming and serializer is not None:
        serializer = _encoded_or(serializer)
    if h.request_streaming and h.response_streaming:
        return grpc.stream_stream_rpc_method_handler(_guard(h.stream_stream, True), deserializer, serializer)
    if h.request_streaming:
        return grpc.stream_unary_rpc_method_handler(_guard(h.stream_unary, True), deserializer, serializer)
    if h.response_streaming:
        return grpc.unary_stream_rpc_method_handler(_guard(h.unary_stream, False), deserializer, serializer)
    return grpc.unary_unary_rpc_method_handler(_guard(h.unary_unary, False), deserializer, serializer)


def _encoded_or(serializer: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    """`serializer`, passing responses a servicer already encoded (bytes) as they are: a stream's hot
    frames (Bus deliveries, see bus_frames) are cheaper encoded straight to wire bytes than built as
    protobuf objects and serialized."""

    def serialize(response: Any) -> bytes:
        return response if type(response) is bytes else serializer(response)

    return serialize


def _request_type(method: str) -> Descriptor | None:
    try:
        found: Descriptor = descriptor_pool.Default().FindMethodByName(method).input_type
    except KeyError:
        return None
    return found


def _lenient(deserializer: Callable[[bytes], Any], request_type: Descriptor | None, method: str) -> Any:
    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # DecodeError, or whatever else a parser raises on hostile bytes
            violation = FieldViolation("", "the request is not a valid protobuf message")
            if request_type is not None:
                try:
                    violation = find_fault(request_type, data)
                except Exception:  # the walk is a courtesy: never let it turn a refusal into UNKNOWN
                    logger.exception("could not locate the fault in an undecodable %s request", method)
            logger.info("undecodable %s request: %s: %s", method, violation.field, violation.description)
            return Undecodable(InvalidArgument(violation))

    return decode


def _guard(behavior: Any, request_streaming: bool) -> Any:
    """`behavior`, refusing undecodable requests first, unless it does so itself (translate_errors)."""
    if getattr(behavior, ANSWERS_UNDECODABLE, False):
        return behavior
    if request_streaming:
        if inspect.isasyncgenfunction(behavior):

            async def stream_in_stream_out(requests: Any, context: Context) -> AsyncIterator[Any]:
                async for item in behavior(_refusing(requests, context), context):
                    yield item

            return stream_in_stream_out

        async def stream_in(requests: Any, context: Context) -> Any:
            return await behavior(_refusing(requests, context), context)

        return stream_in
    if inspect.isasyncgenfunction(behavior):

        async def stream_out(request: Any, context: Context) -> AsyncIterator[Any]:
            if type(request) is Undecodable:
                await _refuse(context, request.error)
            async for item in behavior(request, context):
                yield item

        return stream_out

    async def unary(request: Any, context: Context) -> Any:
        if type(request) is Undecodable:
            await _refuse(context, request.error)
        return await behavior(request, context)

    return unary


async def _refusing(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
    try:
        async for request in decoded(requests):
            yield request
    except InvalidArgument as error:
        await _refuse(context, error)


async def _refuse(context: Context, error: ControlPlaneError) -> None:
    code, message, trailers = status_for(error)
    await context.abort(code, message, trailers)
