"""The one table that maps domain errors to gRPC status codes, with typed error details."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar, cast

import grpc
from google.rpc import error_details_pb2, status_pb2

from control_plane import errors
from control_plane.backpressure import limit_wait

logger = logging.getLogger(__name__)

ERROR_DOMAIN = "hms.mgmt"

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


def status_for(error: errors.ControlPlaneError) -> tuple[grpc.StatusCode, str, tuple[tuple[str, bytes], ...]]:
    """Code, message and `grpc-status-details-bin` trailer for a domain error."""
    code = next((c for kind, c in _CODES.items() if isinstance(error, kind)), grpc.StatusCode.UNKNOWN)
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN)
    if isinstance(error, errors.OutOfRange | errors.NotRegistered):
        info.metadata.update(error.metadata)
    if isinstance(error, errors.NotFound | errors.AlreadyExists):
        info.metadata.update({"kind": error.kind, "key": error.key})
    status = status_pb2.Status(code=code.value[0], message=str(error))
    status.details.add().Pack(info)
    if isinstance(error, errors.InvalidArgument):
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in error.violations
            ]
        )
        status.details.add().Pack(bad_request)
    return code, str(error), (("grpc-status-details-bin", status.SerializeToString()),)


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: Exception) -> NoReturn:
    if isinstance(exc, errors.ControlPlaneError):
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
                async for item in method(self, request, context):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort(context, exc)

        return cast(F, stream)

    @functools.wraps(method)
    async def unary(self: Any, request: Any, context: Any) -> Any:
        limit_wait(CLIENT_WRITE_PATIENCE_S)
        try:
            return await cast(Callable[..., Awaitable[Any]], method)(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, exc)

    return cast(F, unary)
