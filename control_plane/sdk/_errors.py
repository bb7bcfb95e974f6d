"""Map gRPC failures back to the domain error tree, so callers branch on types, not on text."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2

from control_plane import errors

_STATUS_DETAILS_KEY = "grpc-status-details-bin"

T = TypeVar("T")


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
        case grpc.StatusCode.FAILED_PRECONDITION:
            result = errors.FailedPrecondition(message)
        case grpc.StatusCode.OUT_OF_RANGE:
            result = errors.OutOfRange(message, **meta)
        case grpc.StatusCode.RESOURCE_EXHAUSTED:
            result = errors.ResourceExhausted(message)
        case _:
            return exc
    result.__cause__ = exc
    return result
