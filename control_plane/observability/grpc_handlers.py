"""What the server interceptors share: each method's handler wrapped once, not once per call.

grpc.aio asks the interceptors for a handler on every call. Wrapping is the costly part (closures,
labels, a new RpcMethodHandler), and a served method keeps the same handler for the server's life, so
each interceptor keeps its wrapped handler per method and hands it out again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]


class CachingInterceptor(grpc.aio.ServerInterceptor):
    """Wraps each method's handler with `_wrap` once per method (unknown methods pass through untouched)."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[object, Handler]] = {}

    def _wrap(self, method: str, handler: Handler) -> Handler:
        """`handler` of `method` ("/package.Service/Method"), wrapped."""
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        """The method's handler, wrapped (the one wrapped for an earlier call when it is the same)."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        inner = _behaviour(handler)
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is inner:
            return cached[1]
        wrapped = self._wrap(method, handler)
        # Served methods keep one handler for the server's life; a handler made for one call (a token
        # refusal) is wrapped for that call only, so the cache cannot grow with traffic.
        if cached is None:
            self._wrapped[method] = (inner, wrapped)
        return wrapped


def _behaviour(handler: Handler) -> object:
    return handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
