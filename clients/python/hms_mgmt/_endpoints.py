"""The control-plane addresses of one Client, a channel to each, and failover from one to the next.

One address is in use at a time. When a call finds its replica gone (UNAVAILABLE: refused, reset,
shutting down), the client moves to the next address, round robin, waiting a short backoff only
once every address has failed in a row. Calls that are safe to repeat are made once more there;
streams reopen there from where they got to (see `ResumableCall`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

import grpc

from hms.mgmt.v1 import bus_pb2_grpc, registry_pb2_grpc, schedule_pb2_grpc, workflow_pb2_grpc
from hms_mgmt._errors import describe, from_rpc_error, is_unavailable
from hms_mgmt._tracing import client_interceptors
from hms_mgmt.limits import MAX_RPC_MESSAGE_BYTES

logger = logging.getLogger(__name__)

T = TypeVar("T")
C = TypeVar("C", bound=grpc.aio.Call)
Req = TypeVar("Req")
Resp = TypeVar("Resp")

# Each stream's HTTP/2 receive window: what the control plane may send on a stream that is not being
# read before flow control holds it back. gRPC's bandwidth-delay probing grows it to several MiB,
# which a subscriber that does not read gets converted and sent all the same (200 idle subscribers
# took some 800 MiB of frames); kept at 64 KiB, an idle subscription costs the control plane one or
# two frames and then nothing until it reads again.
STREAM_WINDOW_BYTES = 64 * 1024

# A call without a deadline to a replica that hangs (stopped, partitioned, its host frozen) would wait
# forever; every unary call gets this one unless it names its own (`Client(call_timeout_s=...)`).
DEFAULT_CALL_TIMEOUT_S = 30.0
# HTTP/2 pings on a connection with calls open: a replica that stops answering them within the
# timeout is taken as gone (UNAVAILABLE), so a stream to a hung replica fails over instead of waiting
# for packets that never come. The control plane accepts pings this often (server.SERVER_OPTIONS).
KEEPALIVE_TIME_S = 20.0
KEEPALIVE_TIMEOUT_S = 10.0

_CHANNEL_OPTIONS = (
    # gRPC waits up to 120 s between reconnection attempts to an address that refused it; a replica
    # restarted there must be found sooner than that.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    # The sizes the contract allows (gRPC's defaults: 4 MiB received, no send limit).
    ("grpc.max_receive_message_length", MAX_RPC_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_RPC_MESSAGE_BYTES),
    ("grpc.http2.bdp_probe", 0),
    ("grpc.http2.lookahead_bytes", STREAM_WINDOW_BYTES),
)
_BACKOFF_FIRST_S = 0.1
_BACKOFF_MAX_S = 2.0


def parse_addresses(addresses: str | Sequence[str]) -> list[str]:
    """ "host:port" strings, in order and without repeats, from a sequence or comma-separated text."""
    items = [addresses] if isinstance(addresses, str) else list(addresses)
    parsed = [part.strip() for item in items for part in item.split(",") if part.strip()]
    if not parsed:
        raise ValueError("at least one control-plane address (host:port) is required")
    return list(dict.fromkeys(parsed))


class DefaultDeadline(grpc.aio.UnaryUnaryClientInterceptor):
    """Gives every unary call that names no deadline `timeout_s`."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s

    async def intercept_unary_unary(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, Req], Awaitable[grpc.aio.UnaryUnaryCall[Req, Resp]]
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Req,
    ) -> Resp | grpc.aio.UnaryUnaryCall[Req, Resp]:
        if client_call_details.timeout is None:
            client_call_details = grpc.aio.ClientCallDetails(
                client_call_details.method,
                self.timeout_s,
                client_call_details.metadata,
                client_call_details.credentials,
                client_call_details.wait_for_ready,
            )
        return await continuation(client_call_details, request)


def channel_options(keepalive_time_s: float, keepalive_timeout_s: float) -> tuple[tuple[str, int], ...]:
    """The SDK's channel options with its keepalive settings."""
    return (
        *_CHANNEL_OPTIONS,
        ("grpc.keepalive_time_ms", round(keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", round(keepalive_timeout_s * 1000)),
        # Recent gRPC cores time a ping out by this one (default 60 s), whatever keepalive_timeout says.
        ("grpc.http2.ping_timeout_ms", round(keepalive_timeout_s * 1000)),
        # Pings go out while a stream is open even when nothing is sent on it (an idle watch).
        ("grpc.http2.max_pings_without_data", 0),
    )


class Endpoint:
    """One control-plane address with its channel and the stubs on it."""

    def __init__(self, address: str, channel: grpc.aio.Channel) -> None:
        self.address = address
        self.channel = channel
        self.registry = registry_pb2_grpc.RegistryStub(channel)
        self.bus = bus_pb2_grpc.BusStub(channel)
        self.workflow = workflow_pb2_grpc.WorkflowStub(channel)
        self.schedule = schedule_pb2_grpc.ScheduleStub(channel)

    def __repr__(self) -> str:
        return f"Endpoint({self.address!r})"


def connect(
    address: str,
    credentials: grpc.ChannelCredentials | None,
    *,
    call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S,
    keepalive_time_s: float = KEEPALIVE_TIME_S,
    keepalive_timeout_s: float = KEEPALIVE_TIMEOUT_S,
) -> Endpoint:
    """An endpoint whose channel connects on first use."""
    options = channel_options(keepalive_time_s, keepalive_timeout_s)
    # A default deadline; traceparent metadata when the application traces.
    interceptors = [DefaultDeadline(call_timeout_s), *client_interceptors()]
    if credentials is None:
        channel = grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
    else:
        channel = grpc.aio.secure_channel(address, credentials, options=options, interceptors=interceptors)
    return Endpoint(address, channel)


class Endpoints:
    """The addresses of one Client, in order, and the one in use."""

    def __init__(self, endpoints: Sequence[Endpoint], failover_timeout_s: float) -> None:
        self.all = tuple(endpoints)
        self.failover_timeout_s = failover_timeout_s
        self._index = 0
        self._failures = 0  # failovers since a call last got an answer: drives the backoff

    @property
    def current(self) -> Endpoint:
        """The endpoint calls go to now."""
        return self.all[self._index]

    @property
    def many(self) -> bool:
        """Whether there is another address to fail over to."""
        return len(self.all) > 1

    def pinned(self, endpoint: Endpoint) -> Endpoints:
        """A view of one endpoint that never fails over: what a Worker's session uses."""
        return Endpoints([endpoint], self.failover_timeout_s)

    def use(self, endpoint: Endpoint) -> None:
        """Send calls to `endpoint` from now on (it was found ready)."""
        self._index = self.all.index(endpoint)

    def may_fail_over(self, exc: BaseException) -> bool:
        """Whether `exc` means the replica went away and another address may answer."""
        return self.many and is_unavailable(exc)

    def fail_over(self, failed: Endpoint, reason: object) -> Endpoint:
        """Move off `failed` to the next address, unless an earlier failure did already; returns the one in use.

        Only the call that moves logs, so each failover is logged once however many calls saw it.
        """
        if failed is not self.current:
            return self.current
        self._failures += 1
        if self.many:
            self._index = (self._index + 1) % len(self.all)
            # A warning when a working replica goes; quieter while every address keeps failing.
            logger.log(
                logging.WARNING if self._failures == 1 else logging.INFO,
                "control plane %s unavailable (%s), switching to %s",
                failed.address,
                describe(reason) if isinstance(reason, BaseException) else reason,
                self.current.address,
            )
        return self.current

    def backoff_s(self) -> float:
        """How long to wait before using the current address: nothing until every address failed in a row."""
        rounds = self._failures // len(self.all)
        return 0.0 if rounds == 0 else min(_BACKOFF_FIRST_S * 2 ** (rounds - 1), _BACKOFF_MAX_S)

    def succeeded(self) -> None:
        """A call got an answer: the next failure starts a fresh round without backoff."""
        self._failures = 0

    async def unary(self, send: Callable[[Endpoint], Awaitable[T]], *, retry: bool = False) -> T:
        """`send` on the current endpoint; if its replica is gone, move on and, when `retry` (the call is
        safe to repeat), send again on the next one, until every address has been tried once. Failures
        raise the domain error they stand for.
        """
        attempts = len(self.all) if retry else 1
        for attempt in range(1, attempts + 1):
            endpoint = self.current
            try:
                answer = await send(endpoint)
            except grpc.aio.AioRpcError as exc:
                if is_unavailable(exc):
                    self.fail_over(endpoint, exc)
                if attempt == attempts or not self.may_fail_over(exc):
                    raise from_rpc_error(exc) from None
                await asyncio.sleep(self.backoff_s())
            else:
                self.succeeded()
                return answer
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def close(self) -> None:
        """Close every channel (ending the calls still open on them)."""
        await asyncio.gather(*(endpoint.channel.close() for endpoint in self.all))


class ResumableCall(Generic[C]):
    """A streaming call that reopens on the next address when its replica goes away.

    `open_` makes the call on an endpoint and builds its request from where the owner got to (a
    revision, a sequence), so that the reopened stream carries on. It keeps trying the addresses in
    turn for up to `failover_timeout_s`, then raises. With `resumable` false (or one address) the
    first failure is raised, as from a plain call.
    """

    def __init__(
        self, endpoints: Endpoints, open_: Callable[[Endpoint], C], *, resumable: bool = True
    ) -> None:
        self._endpoints = endpoints
        self._open = open_
        self.resumable = resumable
        self.endpoint = endpoints.current
        self.call = open_(self.endpoint)
        self._give_up_at: float | None = None  # set while the stream is failing over

    async def step(self, action: Callable[[C], Awaitable[T]]) -> T:
        """Run `action` on the call (a read; a write then a read), again on the reopened call while it fails."""
        while True:
            try:
                result = await action(self.call)
            except grpc.aio.AioRpcError as exc:
                await self.reopen(exc)
                continue
            self._give_up_at = None
            self._endpoints.succeeded()
            return result

    async def reopen(self, exc: grpc.aio.AioRpcError) -> None:
        """Open the call again on the next address, after the backoff; raise `exc` as a domain error when
        it is not a replica going away, the call may not resume, or the addresses kept failing too long.
        """
        loop = asyncio.get_running_loop()
        if self._give_up_at is None:
            self._give_up_at = loop.time() + self._endpoints.failover_timeout_s
        if is_unavailable(exc):  # even a call that may not resume moves the client off a dead replica
            self.endpoint = self._endpoints.fail_over(self.endpoint, exc)
        if not (self.resumable and self._endpoints.may_fail_over(exc)) or loop.time() >= self._give_up_at:
            raise from_rpc_error(exc) from None
        self.call.cancel()
        await asyncio.sleep(min(self._endpoints.backoff_s(), self._give_up_at - loop.time()))
        self.call = self._open(self.endpoint)

    def cancel(self) -> None:
        """End the call (the owner is done with it)."""
        self.call.cancel()


class _Readable(Protocol):
    async def read(self) -> object: ...


async def read(call: _Readable) -> object:
    """The next frame of a stream, or `grpc.aio.EOF` (an action for `ResumableCall.step`)."""
    return await call.read()
