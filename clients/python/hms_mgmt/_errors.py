"""Map gRPC failures back to the domain error tree, so callers branch on types, not on text."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2

from hms_mgmt import errors

_STATUS_DETAILS_KEY = "grpc-status-details-bin"

T = TypeVar("T")


class Unavailable(errors.Unavailable, grpc.aio.AioRpcError):
    """No control plane answered: the replica went away, refused the connection or is shutting down.

    Also an `AioRpcError` with code UNAVAILABLE, so code written against raw gRPC errors keeps working.
    """

    def __init__(self, exc: grpc.aio.AioRpcError) -> None:
        details = exc.details()
        if _cancelled_by_shutdown(exc):
            details = f"the control plane shut down before running the call (gRPC said CANCELLED: {details})"
        grpc.aio.AioRpcError.__init__(
            self,
            grpc.StatusCode.UNAVAILABLE,
            exc.initial_metadata(),
            exc.trailing_metadata(),
            details,
            exc.debug_error_string(),
        )


def _cancelled_by_shutdown(exc: grpc.aio.AioRpcError) -> bool:
    """Whether the other end cancelled the call: gRPC's core does so to every call that reached a server
    after its shutdown began and before a handler took it (grpc/grpc#41785), a call that never ran.

    The control plane cancels nothing else (past its shutdown grace, calls end UNAVAILABLE), and grpc.aio
    raises asyncio.CancelledError, not an AioRpcError, for a call this process cancelled itself.
    """
    return exc.code() == grpc.StatusCode.CANCELLED


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the control plane in use went away, so that another address may answer."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code() == grpc.StatusCode.UNAVAILABLE or _cancelled_by_shutdown(exc)
    return isinstance(exc, ConnectionError)


def describe(exc: BaseException) -> str:
    """A one-line account of a failure, for logs."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"


async def call(awaitable: Awaitable[T]) -> T:
    """Await a call, raising the domain error it stands for instead of a raw AioRpcError."""
    try:
        return await awaitable
    except grpc.aio.AioRpcError as exc:
        raise from_rpc_error(exc) from None


def _details(exc: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    for key, value in exc.trailing_metadata() or ():
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    return None


def from_rpc_error(exc: grpc.aio.AioRpcError) -> Exception:
    """The domain error a failed call stands for, or `exc` itself when it is not one of ours."""
    code, message = exc.code(), exc.details() or ""
    status = _details(exc)
    info = error_details_pb2.ErrorInfo()
    violations: list[errors.FieldViolation] = []
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = [errors.FieldViolation(v.field, v.description) for v in bad.field_violations]
    meta = dict(info.metadata)
    result: Exception
    match code:
        case grpc.StatusCode.INVALID_ARGUMENT:
            result = errors.InvalidArgument(violations or [errors.FieldViolation("", message)])
        case grpc.StatusCode.NOT_FOUND:
            result = errors.NotFound(meta.get("kind", "resource"), meta.get("key", message))
        case grpc.StatusCode.ALREADY_EXISTS:
            result = errors.AlreadyExists(meta.get("kind", "resource"), meta.get("key", message))
        case grpc.StatusCode.FAILED_PRECONDITION if info.reason == errors.NotRegistered.reason:
            result = errors.NotRegistered(
                meta.get("service", ""), meta.get("instance_id", ""), meta.get("cause", "not_registered")
            )
        case grpc.StatusCode.FAILED_PRECONDITION:
            result = errors.FailedPrecondition(message)
        case grpc.StatusCode.OUT_OF_RANGE:
            result = errors.OutOfRange(message, **meta)
        case grpc.StatusCode.RESOURCE_EXHAUSTED:
            result = errors.ResourceExhausted(message)
        case grpc.StatusCode.UNAVAILABLE | grpc.StatusCode.CANCELLED:
            return exc if isinstance(exc, Unavailable) else Unavailable(exc)
        case _:
            return exc
    result.__cause__ = exc
    return result
