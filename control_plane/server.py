"""Composition root: builds the store, the cores and the gRPC server, and owns their lifecycle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from control_plane import security
from control_plane.core.bus.bus import Bus
from control_plane.core.probing import Prober
from control_plane.core.registry import Registry
from control_plane.core.workflow.workflows import Workflows
from control_plane.health_checker import GrpcHealthChecker
from control_plane.servicers.bus import BusServicer
from control_plane.servicers.reflection import enable_documented_reflection
from control_plane.servicers.registry import RegistryServicer
from control_plane.servicers.scopes import Scopes
from control_plane.servicers.workflow import WorkflowServicer
from control_plane.settings import Settings
from control_plane.storage import Store, open_store
from hms.mgmt.v1 import (
    bus_pb2,
    bus_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)

logger = logging.getLogger(__name__)

REGISTRY = registry_pb2.DESCRIPTOR.services_by_name["Registry"].full_name
BUS = bus_pb2.DESCRIPTOR.services_by_name["Bus"].full_name
WORKFLOW = workflow_pb2.DESCRIPTOR.services_by_name["Workflow"].full_name
SERVED = (REGISTRY, BUS, WORKFLOW)


class ListenError(OSError):
    """The listen address could not be bound."""


@dataclass(frozen=True, slots=True)
class App:
    """A running control plane, as tests and the CLI see it."""

    port: int
    host: str
    registry: Registry
    bus: Bus
    workflows: Workflows
    store: Store

    @property
    def address(self) -> str:
        """`host:port` to dial."""
        return f"{self.host}:{self.port}"


def split_listen(listen: str) -> tuple[str, int]:
    """`host:port` (IPv6 in brackets) into its parts; raises ValueError with the reason."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--listen expects HOST:PORT, got {listen!r}")
    return host, int(port)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[App]:
    """Serve until the block exits, then stop in a fixed order: health, streams, server, loops, store."""
    host, _ = split_listen(settings.listen)
    tokens = security.load_tokens(settings.tokens_file) if settings.tokens_file else {}
    credentials = security.server_credentials(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
    security.check_listen_policy(
        host.strip("[]"), tls=credentials is not None, tokens=bool(tokens), insecure=settings.insecure
    )
    store = await open_store(settings.resolved_store_url)
    checker = GrpcHealthChecker()
    try:
        registry = Registry(store, settings.registry)
        await registry.load()
        prober = Prober(registry, checker)
        bus = Bus(store, settings.bus)
        await bus.load()
        workflows = Workflows(store, bus, registry)
        await workflows.load()
        # Every core has subscribed: follow the other replicas (if any) from here on.
        store.cluster.start()
        stopping = asyncio.Event()

        authenticator = security.Authenticator(tokens) if tokens else None
        scopes = Scopes(authenticator)
        interceptors = [security.TokenAuthInterceptor(authenticator)] if authenticator else []
        # SO_REUSEPORT off: with it (gRPC's default on Linux) a second server binds the same port and
        # the kernel splits connections between the two at random.
        server = grpc.aio.server(interceptors=interceptors, options=[("grpc.so_reuseport", 0)])
        registry_pb2_grpc.add_RegistryServicer_to_server(
            RegistryServicer(registry, settings.registry.progress_interval_s, stopping, scopes), server
        )
        bus_pb2_grpc.add_BusServicer_to_server(BusServicer(bus, stopping), server)
        workflow_pb2_grpc.add_WorkflowServicer_to_server(
            WorkflowServicer(workflows, stopping, scopes), server
        )
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        enable_documented_reflection((*SERVED, health.SERVICE_NAME, reflection.SERVICE_NAME), server)

        try:
            if credentials is None:
                port = server.add_insecure_port(settings.listen)
            else:
                port = server.add_secure_port(settings.listen, credentials)
        except RuntimeError:  # grpcio raises "Failed to bind" where older versions returned 0
            port = 0
        if port == 0:
            raise ListenError(
                f"cannot listen on {settings.listen}: the port is taken (another mgmt serve?) "
                "or the address is not local"
            )
        await server.start()
        for name in ("", *SERVED):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        app = App(
            port=port, host=host.strip("[]"), registry=registry, bus=bus, workflows=workflows, store=store
        )

        loops_stop = asyncio.Event()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(registry.run(loops_stop))
            tasks.create_task(prober.run(loops_stop))
            tasks.create_task(bus.run(loops_stop))
            tasks.create_task(workflows.run(loops_stop))
            try:
                yield app
            finally:
                await health_servicer.enter_graceful_shutdown()
                stopping.set()
                registry.feed.close()
                bus.close()
                await server.stop(settings.shutdown_grace_s)
                loops_stop.set()
    finally:
        await checker.close()
        await store.close()
