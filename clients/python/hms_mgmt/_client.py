"""The async client: `Client(addresses).registry.register(...)`, typed errors, optional TLS and token.

A Client may be given several control-plane addresses; see `_endpoints` for how it fails over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import grpc

from hms.mgmt.v1 import registry_pb2 as pb
from hms_mgmt import errors
from hms_mgmt._bus import BusClient
from hms_mgmt._endpoints import (
    DEFAULT_CALL_TIMEOUT_S,
    KEEPALIVE_TIME_S,
    KEEPALIVE_TIMEOUT_S,
    Endpoint,
    Endpoints,
    ResumableCall,
    connect,
    parse_addresses,
    read,
)
from hms_mgmt._schedule import ScheduleClient
from hms_mgmt._wire import duration
from hms_mgmt._workflow import WorkflowClient
from hms_mgmt.types import Instance, Lease, Registration, RegistryChanges, ServiceSummary

logger = logging.getLogger(__name__)

WatchCall = grpc.aio.UnaryStreamCall[pb.WatchRequest, pb.WatchResponse]
KeepAliveCall = grpc.aio.StreamStreamCall[pb.KeepAliveRequest, pb.KeepAliveResponse]


class WatchStream:
    """Changes after the first (`created`) frame; iterate it, or read `snapshot` and `revision` first.

    `revision` is the revision the watcher is up to. With several addresses, a watch whose replica goes
    away resumes on the next one after `revision`, so the iteration goes on without a gap.
    """

    def __init__(
        self,
        endpoints: Endpoints,
        service: str,
        after_revision: int | None,
        metadata: tuple[tuple[str, str], ...],
    ) -> None:
        self._service = service
        self._metadata = metadata
        self._snapshot_wanted = after_revision is None  # until the first frame has answered it
        self.snapshot: list[Instance] = []
        self.revision = after_revision or 0
        self._stream: ResumableCall[WatchCall] = ResumableCall(endpoints, self._open)

    def _open(self, endpoint: Endpoint) -> WatchCall:
        after = None if self._snapshot_wanted else self.revision
        request = pb.WatchRequest(service=self._service, after_revision=after)
        return endpoint.registry.Watch(request, metadata=self._metadata)

    async def start(self) -> None:
        """Wait for the `created` frame: from then on nothing is missed."""
        first = await self._stream.step(read)
        if not isinstance(first, pb.WatchResponse):
            raise ConnectionError("watch stream closed before it was created")
        if self._snapshot_wanted:
            self.snapshot, self.revision = [Instance.from_proto(i) for i in first.snapshot], first.revision
            self._snapshot_wanted = False

    def cancel(self) -> None:
        """End the watch."""
        self._stream.cancel()

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> RegistryChanges:
        while True:
            response = await self._stream.step(read)
            if not isinstance(response, pb.WatchResponse):  # grpc.aio.EOF
                raise StopAsyncIteration
            if response.created:
                continue  # a watch resumed on another replica: the missed changes follow
            self.revision = response.revision
            return RegistryChanges.from_proto(response)


class RegistryClient:
    """Registry calls, answering the values of `hms_mgmt.types` (`Registration`, `Lease`, `Instance`,
    watch frames as `RegistryChanges`, `ServiceSummary`), each with its message in `.proto`.
    """

    def __init__(self, endpoints: Endpoints, metadata: Sequence[tuple[str, str]]) -> None:
        self._endpoints = endpoints
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
    ) -> Registration:
        """Register (or update) an instance; keep its lease alive with `keep_alive` or `heartbeat`.

        Retried on the next replica only with an `instance_id`: without one each try would add an instance.
        """
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
        response = await self._endpoints.unary(
            lambda e: e.registry.Register(request, metadata=self._metadata), retry=bool(instance_id)
        )
        return Registration.from_proto(response)

    async def heartbeat(self, lease_id: str) -> Lease:
        """Renew a lease once; raises NotFound when it has lapsed."""
        request = pb.HeartbeatRequest(lease_id=lease_id)
        response = await self._endpoints.unary(
            lambda e: e.registry.Heartbeat(request, metadata=self._metadata), retry=True
        )
        return Lease.from_proto(response.lease)

    async def renew(self, lease_id: str, interval_s: float) -> None:
        """Renew a lease every `interval_s` over one KeepAlive stream (moved to the next replica if its
        own goes away) until something ends it: raises NotFound once the lease has lapsed.
        """
        request = pb.KeepAliveRequest(lease_id=lease_id)

        async def exchange(stream: KeepAliveCall) -> object:
            with contextlib.suppress(asyncio.InvalidStateError):  # the call has ended: read says how
                await stream.write(request)
            return await stream.read()

        stream: ResumableCall[KeepAliveCall] = ResumableCall(
            self._endpoints, lambda e: e.registry.KeepAlive(metadata=self._metadata)
        )
        try:
            while True:
                response = await stream.step(exchange)
                if not isinstance(response, pb.KeepAliveResponse):
                    raise ConnectionError("keep-alive stream closed by the control plane")
                if response.not_found:
                    raise errors.NotFound("lease", lease_id)
                await asyncio.sleep(interval_s)
        finally:
            stream.cancel()

    @contextlib.asynccontextmanager
    async def keep_alive(self, lease_id: str, interval_s: float) -> AsyncIterator[asyncio.Event]:
        """Renew a lease every `interval_s` over one stream; the yielded event is set if the lease is lost."""
        lost = asyncio.Event()

        async def renew() -> None:
            try:
                await self.renew(lease_id, interval_s)
            except (errors.ControlPlaneError, grpc.aio.AioRpcError, ConnectionError) as exc:
                logger.warning("keep-alive of lease %s ended: %s", lease_id, exc)
            finally:
                lost.set()

        task = asyncio.create_task(renew())
        try:
            yield lost
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def deregister(self, service: str, instance_id: str) -> int:
        """Remove an instance now; returns the registry revision of the removal."""
        request = pb.DeregisterRequest(service=service, instance_id=instance_id)
        response = await self._endpoints.unary(
            lambda e: e.registry.Deregister(request, metadata=self._metadata)
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
    ) -> list[Instance]:
        """Instances of a service (healthy only unless asked), in a rotating order."""
        request = pb.LookupRequest(
            service=service, tags=tags, version=version, include_unhealthy=include_unhealthy, limit=limit
        )
        response = await self._endpoints.unary(
            lambda e: e.registry.Lookup(request, metadata=self._metadata), retry=True
        )
        return [Instance.from_proto(i) for i in response.instances]

    async def list_services(self) -> list[ServiceSummary]:
        """Every service with its counts."""
        request = pb.ListServicesRequest()
        response = await self._endpoints.unary(
            lambda e: e.registry.ListServices(request, metadata=self._metadata), retry=True
        )
        return [ServiceSummary.from_proto(s) for s in response.services]

    @contextlib.asynccontextmanager
    async def watch(self, service: str = "", after_revision: int | None = None) -> AsyncIterator[WatchStream]:
        """A watch in place when the block starts; a snapshot first unless resuming after a revision."""
        stream = WatchStream(self._endpoints, service, after_revision, self._metadata)
        try:
            await stream.start()
            yield stream
        finally:
            stream.cancel()


@dataclass(frozen=True, slots=True)
class Pinned:
    """The Registry and Workflow calls of one replica, without failover: a Worker's session stays there."""

    endpoint: Endpoint
    registry: RegistryClient
    workflow: WorkflowClient


def _credentials(
    tls_ca: Path | None, tls_cert: Path | None, tls_key: Path | None
) -> grpc.ChannelCredentials | None:
    if not (tls_ca or tls_cert):
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=tls_ca.read_bytes() if tls_ca else None,
        private_key=tls_key.read_bytes() if tls_key else None,
        certificate_chain=tls_cert.read_bytes() if tls_cert else None,
    )


class Client:
    """Entry point of the SDK: channels to one or more control-plane replicas, with per-service facades.

    `address` is one "host:port", several as a sequence, or several in one comma-separated string.
    Calls go to one address at a time and move to the next when its replica goes away: calls safe to
    repeat are tried on every address in turn, streams resume there for up to `failover_timeout_s`
    (README, "The SDK with several control-plane addresses"). TLS and the token apply to every address.
    Every unary call has a deadline (`call_timeout_s` unless the call names a longer one), and the
    channels send keepalive pings on open calls, so a replica that hangs is left like one that is gone.
    """

    def __init__(
        self,
        address: str | Sequence[str],
        *,
        token: str | None = None,
        tls_ca: Path | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        failover_timeout_s: float = 30.0,
        call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S,
        keepalive_time_s: float = KEEPALIVE_TIME_S,
        keepalive_timeout_s: float = KEEPALIVE_TIMEOUT_S,
    ) -> None:
        credentials = _credentials(tls_ca, tls_cert, tls_key)
        self.endpoints = Endpoints(
            [
                connect(
                    a,
                    credentials,
                    call_timeout_s=call_timeout_s,
                    keepalive_time_s=keepalive_time_s,
                    keepalive_timeout_s=keepalive_timeout_s,
                )
                for a in parse_addresses(address)
            ],
            failover_timeout_s,
        )
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.registry = RegistryClient(self.endpoints, self._metadata)
        self.bus = BusClient(self.endpoints, self._metadata)
        self.workflow = WorkflowClient(self.endpoints, self._metadata)
        self.schedules = ScheduleClient(self.endpoints, self._metadata)
        self._closed = False

    @property
    def address(self) -> str:
        """The address in use now."""
        return self.endpoints.current.address

    @property
    def addresses(self) -> list[str]:
        """Every address, in the order they are tried."""
        return [e.address for e in self.endpoints.all]

    @property
    def channel(self) -> grpc.aio.Channel:
        """The channel in use now, for generated stubs the SDK does not wrap yet."""
        return self.endpoints.current.channel

    def pinned(self, endpoint: Endpoint) -> Pinned:
        """Registry and Workflow calls that all go to `endpoint` and never fail over."""
        only = self.endpoints.pinned(endpoint)
        return Pinned(endpoint, RegistryClient(only, self._metadata), WorkflowClient(only, self._metadata))

    async def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Wait until a control plane accepts a connection (raises TimeoutError); the first ready is used."""
        waits = {asyncio.ensure_future(e.channel.channel_ready()): e for e in self.endpoints.all}
        try:
            done, _ = await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        if not done:
            raise TimeoutError(f"no control plane ready at {', '.join(self.addresses)} within {timeout_s}s")
        self.endpoints.use(waits[done.pop()])

    async def close(self) -> None:
        """Close the channels; idempotent."""
        if not self._closed:
            self._closed = True
            await self.endpoints.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
