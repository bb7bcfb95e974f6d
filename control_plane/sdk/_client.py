"""The async client: `Client(address).registry.register(...)`, typed errors, optional TLS and token."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import grpc

from control_plane.sdk._bus import BusClient
from control_plane.sdk._errors import call, from_rpc_error
from control_plane.sdk._wire import duration
from control_plane.sdk._workflow import WorkflowClient
from hms.mgmt.v1 import registry_pb2 as pb
from hms.mgmt.v1 import registry_pb2_grpc

logger = logging.getLogger(__name__)


class WatchStream:
    """Changes after the first (`created`) frame; iterate it, or read `snapshot` and `revision` first."""

    def __init__(
        self, call: grpc.aio.UnaryStreamCall[pb.WatchRequest, pb.WatchResponse], first: pb.WatchResponse
    ) -> None:
        self._call = call
        self.snapshot = list(first.snapshot)
        self.revision = first.revision

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> pb.WatchResponse:
        try:
            response = await self._call.read()
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None
        if not isinstance(response, pb.WatchResponse):  # grpc.aio.EOF
            raise StopAsyncIteration
        self.revision = response.revision
        return response


class RegistryClient:
    """Registry calls; answers are the wire messages of `hms.mgmt.v1`."""

    def __init__(self, channel: grpc.aio.Channel, metadata: Sequence[tuple[str, str]]) -> None:
        self._stub = registry_pb2_grpc.RegistryStub(channel)
        self._metadata = tuple(metadata)

    async def register(
        self,
        service: str,
        address: str,
        *,
        instance_id: str = "",
        version: str = "",
        tags: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
        ttl_s: float | None = None,
        probe: pb.HealthProbe | None = None,
    ) -> pb.RegisterResponse:
        """Register (or update) an instance; keep its lease alive with `keep_alive` or `heartbeat`."""
        request = pb.RegisterRequest(
            instance=pb.ServiceInstance(
                service=service,
                address=address,
                instance_id=instance_id,
                version=version,
                tags=tags,
                metadata=dict(metadata or {}),
                probe=probe,
            )
        )
        if ttl_s is not None:
            request.ttl.CopyFrom(duration(ttl_s))
        return await call(self._stub.Register(request, metadata=self._metadata))

    async def heartbeat(self, lease_id: str) -> pb.Lease:
        """Renew a lease once; raises NotFound when it has lapsed."""
        response = await call(
            self._stub.Heartbeat(pb.HeartbeatRequest(lease_id=lease_id), metadata=self._metadata)
        )
        return response.lease

    @contextlib.asynccontextmanager
    async def keep_alive(self, lease_id: str, interval_s: float) -> AsyncIterator[asyncio.Event]:
        """Renew a lease every `interval_s` over one stream; the yielded event is set if the lease is lost."""
        lost = asyncio.Event()
        call = self._stub.KeepAlive(metadata=self._metadata)

        async def renew() -> None:
            try:
                while True:
                    await call.write(pb.KeepAliveRequest(lease_id=lease_id))
                    response = await call.read()
                    if not isinstance(response, pb.KeepAliveResponse) or response.not_found:
                        lost.set()
                        return
                    await asyncio.sleep(interval_s)
            except grpc.aio.AioRpcError as exc:
                logger.warning("keep-alive of lease %s ended: %s", lease_id, exc.code())
                lost.set()

        task = asyncio.create_task(renew())
        try:
            yield lost
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            call.cancel()

    async def deregister(self, service: str, instance_id: str) -> int:
        """Remove an instance now; returns the registry revision of the removal."""
        response = await call(
            self._stub.Deregister(
                pb.DeregisterRequest(service=service, instance_id=instance_id), metadata=self._metadata
            )
        )
        return response.revision

    async def lookup(
        self,
        service: str,
        *,
        tags: Sequence[str] = (),
        version: str = "",
        include_unhealthy: bool = False,
        limit: int = 0,
    ) -> list[pb.ServiceInstance]:
        """Instances of a service (healthy only unless asked), in a rotating order."""
        request = pb.LookupRequest(
            service=service, tags=tags, version=version, include_unhealthy=include_unhealthy, limit=limit
        )
        response = await call(self._stub.Lookup(request, metadata=self._metadata))
        return list(response.instances)

    async def list_services(self) -> list[pb.ServiceSummary]:
        """Every service with its counts."""
        response = await call(self._stub.ListServices(pb.ListServicesRequest(), metadata=self._metadata))
        return list(response.services)

    @contextlib.asynccontextmanager
    async def watch(self, service: str = "", after_revision: int | None = None) -> AsyncIterator[WatchStream]:
        """A watch in place when the block starts; a snapshot first unless resuming after a revision."""
        stream = self._stub.Watch(
            pb.WatchRequest(service=service, after_revision=after_revision), metadata=self._metadata
        )
        try:
            first = await call(stream.read())
            if not isinstance(first, pb.WatchResponse):
                raise ConnectionError("watch stream closed before it was created")
            yield WatchStream(stream, first)
        finally:
            stream.cancel()


class Client:
    """Entry point of the SDK: one channel to a control plane, with per-service facades."""

    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        tls_ca: Path | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
    ) -> None:
        self.address = address
        if tls_ca or tls_cert:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=tls_ca.read_bytes() if tls_ca else None,
                private_key=tls_key.read_bytes() if tls_key else None,
                certificate_chain=tls_cert.read_bytes() if tls_cert else None,
            )
            self._channel = grpc.aio.secure_channel(address, credentials)
        else:
            self._channel = grpc.aio.insecure_channel(address)
        metadata = [("authorization", f"Bearer {token}")] if token else []
        self.registry = RegistryClient(self._channel, metadata)
        self.bus = BusClient(self._channel, metadata)
        self.workflow = WorkflowClient(self._channel, metadata)
        self._closed = False

    @property
    def channel(self) -> grpc.aio.Channel:
        """The underlying channel, for generated stubs the SDK does not wrap yet."""
        return self._channel

    async def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Wait until the channel is connected (raises TimeoutError)."""
        await asyncio.wait_for(self._channel.channel_ready(), timeout_s)

    async def close(self) -> None:
        """Close the channel; idempotent."""
        if not self._closed:
            self._closed = True
            await self._channel.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
