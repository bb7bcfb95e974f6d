"""Outbound probes: asks instances' grpc.health.v1.Health/Check whether they serve."""

from __future__ import annotations

import asyncio
import logging

import grpc
from grpc_health.v1 import health_pb2

logger = logging.getLogger(__name__)

_CHECK = f"/{health_pb2.DESCRIPTOR.services_by_name['Health'].full_name}/Check"


class GrpcHealthChecker:
    """Implements core.registry.HealthChecker over plaintext gRPC, one cached channel per address."""

    def __init__(self) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._closing: set[asyncio.Task[None]] = set()

    async def check(self, address: str, service_name: str, timeout_s: float) -> bool:
        """True only for an answer of SERVING within the timeout; any error counts as a failure."""
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = grpc.aio.insecure_channel(address)
        # A typed multi-callable: the health stub's type stubs do not declare its methods.
        check = channel.unary_unary(
            _CHECK,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            reply = await check(health_pb2.HealthCheckRequest(service=service_name), timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            logger.debug("probe of %s failed: %s", address, exc.code())
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    @property
    def addresses(self) -> set[str]:
        """Addresses with an open channel."""
        return set(self._channels)

    def forget(self, address: str) -> None:
        """Close the channel to an address no probe uses any more; the close finishes in the background."""
        channel = self._channels.pop(address, None)
        if channel is not None:
            closing = asyncio.ensure_future(channel.close())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close every channel (and wait for those being closed); idempotent."""
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()
        if self._closing:
            await asyncio.gather(*self._closing)
