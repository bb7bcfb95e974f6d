"""The one table that maps domain errors to gRPC status codes, with typed error details."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar, cast

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from control_plane import errors
from control_plane.backpressure import limit_wait

logger = logging.getLogger(__name__)

ERROR_DOMAIN = "hms.mgmt"
# A status travels in headers (grpc-message, grpc-status-details-bin), which clients cap at 8-16 KiB
# in all: whatever a domain error says, what is sent stays well under that.
_MESSAGE_MAX = 1024
_VIOLATIONS_MAX = 20
_VIOLATION_TEXT_MAX = 256
_METADATA_VALUE_MAX = 128
# Set on servicer methods that answer an undecodable request themselves (see decoding.py).
ANSWERS_UNDECODABLE = "_answers_undecodable"

_CODES: dict[type[errors.ControlPlaneError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
}

F = TypeVar("F", bound=Callable[..., Any])

# How long a client's request waits for room in the store's full write queue before RESOURCE_EXHAUSTED.
CLIENT_WRITE_PATIENCE_S = 5.0


@dataclass(frozen=True, slots=True)
class Undecodable:
    """What a request deserializer hands over instead of a message when the bytes do not parse."""

    error: errors.InvalidArgument


def status_for(error: errors.ControlPlaneError) -> tuple[grpc.StatusCode, str, tuple[tuple[str, bytes], ...]]:
    """Code, message and `grpc-status-details-bin` trailer for a domain error, within header limits."""
    code = next((c for kind, c in _CODES.items() if isinstance(error, kind)), grpc.StatusCode.INTERNAL)
    message = _cut(str(error), _MESSAGE_MAX)
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN)
    if isinstance(error, errors.OutOfRange | errors.NotRegistered):
        info.metadata.update({k: _cut(v, _METADATA_VALUE_MAX) for k, v in error.metadata.items()})
    if isinstance(error, errors.NotFound | errors.AlreadyExists):
        info.metadata.update({"kind": error.kind, "key": _cut(error.key, _METADATA_VALUE_MAX)})
    status = status_pb2.Status(code=code.value[0], message=message)
    status.details.add().Pack(info)
    if isinstance(error, errors.InvalidArgument):
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=_cut(v.field, _VIOLATION_TEXT_MAX),
                    description=_cut(v.description, _VIOLATION_TEXT_MAX),
                )
                for v in error.violations[:_VIOLATIONS_MAX]
            ]
        )
        status.details.add().Pack(bad_request)
    return code, message, (("grpc-status-details-bin", status.SerializeToString()),)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def admit(request: Any) -> Any:
    """The request (or request iterator) to hand to a servicer method; raises when it did not parse."""
    if isinstance(request, Message):
        return request
    if type(request) is Undecodable:
        raise request.error
    return decoded(request)


async def decoded(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A client stream's messages; the first that did not parse ends it with its INVALID_ARGUMENT."""
    async for request in requests:
        if type(request) is Undecodable:
            raise request.error
        yield request


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: Exception) -> NoReturn:
    if isinstance(exc, errors.ControlPlaneError) and isinstance(exc, tuple(_CODES)):
        code, message, trailers = status_for(exc)
        await context.abort(code, message, trailers)
    logger.error("unexpected error in RPC", exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the control plane log")


def translate_errors(method: F) -> F:
    """Wrap a servicer method (coroutine or async generator) so domain errors become statuses.

    The request's task also gets its patience for a full write queue (control_plane.backpressure).
    """
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream(self: Any, request: Any, context: Any) -> AsyncIterator[Any]:
            limit_wait(CLIENT_WRITE_PATIENCE_S)
            try:
                async for item in method(self, admit(request), context):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort(context, exc)

        setattr(stream, ANSWERS_UNDECODABLE, True)
        return cast(F, stream)

    @functools.wraps(method)
    async def unary(self: Any, request: Any, context: Any) -> Any:
        limit_wait(CLIENT_WRITE_PATIENCE_S)
        try:
            return await cast(Callable[..., Awaitable[Any]], method)(self, admit(request), context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, exc)

    setattr(unary, ANSWERS_UNDECODABLE, True)
    return cast(F, unary)
