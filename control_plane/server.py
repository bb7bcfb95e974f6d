"""Composition root: builds the store, the cores and the gRPC server, and owns their lifecycle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import cast

import grpc
from envoy.service.status.v3 import csds_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from control_plane import security
from control_plane.console import Access, Console, Cores
from control_plane.core.bus.bus import Bus
from control_plane.core.mesh import Mesh
from control_plane.core.registry import Prober, Registry
from control_plane.core.schedules.schedules import Schedules
from control_plane.core.workflow.workflows import Workflows
from control_plane.health_checker import GrpcHealthChecker
from control_plane.limits import MAX_RPC_MESSAGE_BYTES
from control_plane.observability import tracing
from control_plane.observability.grpc_metrics import GrpcServerMetrics, MetricsInterceptor
from control_plane.observability.grpc_tracing import TracingInterceptor
from control_plane.observability.metrics import Metrics, build_metrics
from control_plane.observability.workflow_tracing import WorkflowSpans
from control_plane.servicers.bus import BusServicer
from control_plane.servicers.decoding import CleanDecoding
from control_plane.servicers.mesh import MeshServicer
from control_plane.servicers.reflection import enable_documented_reflection
from control_plane.servicers.registry import RegistryServicer
from control_plane.servicers.schedules import ScheduleServicer
from control_plane.servicers.scopes import Scopes
from control_plane.servicers.workflow import WorkflowServicer
from control_plane.servicers.xds import ads
from control_plane.servicers.xds.csds import CsdsServicer
from control_plane.servicers.xds.nodes import Nodes
from control_plane.servicers.xds.snapshots import Snapshots
from control_plane.settings import Settings
from control_plane.storage import Store, open_store
from control_plane.web.listener import HttpListener, build_app, start_listener, tls_context
from hms.mgmt.v1 import (
    bus_pb2,
    bus_pb2_grpc,
    mesh_pb2,
    mesh_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    schedule_pb2,
    schedule_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)

logger = logging.getLogger(__name__)


REGISTRY = registry_pb2.DESCRIPTOR.services_by_name["Registry"].full_name
BUS = bus_pb2.DESCRIPTOR.services_by_name["Bus"].full_name
WORKFLOW = workflow_pb2.DESCRIPTOR.services_by_name["Workflow"].full_name
SCHEDULE = schedule_pb2.DESCRIPTOR.services_by_name["Schedule"].full_name
MESH = mesh_pb2.DESCRIPTOR.services_by_name["Mesh"].full_name
SERVED = (REGISTRY, BUS, WORKFLOW, SCHEDULE, MESH)

SERVER_OPTIONS = (
    # SO_REUSEPORT off: with it (gRPC's default on Linux) a second server binds the same port and the
    # kernel splits connections between the two at random.
    ("grpc.so_reuseport", 0),
    # The sizes the contract allows (gRPC's defaults: 4 MiB received, no send limit); the SDK agrees.
    ("grpc.max_receive_message_length", MAX_RPC_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_RPC_MESSAGE_BYTES),
    # Clients ping open connections to find a hung replica (the SDKs every 20 s); gRPC's default
    # allows one ping without data per 5 minutes and answers more with GOAWAY (too_many_pings).
    ("grpc.http2.min_ping_interval_without_data_ms", 1000),
    ("grpc.keepalive_permit_without_calls", 1),
)


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
    health_checker: GrpcHealthChecker
    mesh: Mesh
    # The xDS clients connected to this replica (what CSDS reports).
    xds_nodes: Nodes
    # Where the HTTP listener answers (http://127.0.0.1:50052), or None without one.
    http_url: str | None = None
    # None with --metrics off.
    metrics: Metrics | None = None
    schedules: Schedules | None = None

    @property
    def address(self) -> str:
        """`host:port` to dial."""
        return f"{self.host}:{self.port}"


def connect(registry: Registry, prober: Prober, bus: Bus, workflows: Workflows) -> None:
    """Subscribe the cores to each other's events: the one place where a core hears another.

    Each core's constructor takes only what it owns; who listens to whom is decided here, after every
    core is loaded and before any of them runs (or follows another replica).
    """
    # The prober starts and stops probes as instances come and go; only the leader probes.
    registry.listeners.append(prober.on_registry_change)
    registry.leadership_listeners.append(prober.on_leadership)
    # A worker whose instance left: its attempts go back to the queue at once, not after a timeout.
    registry.listeners.append(workflows.on_registry_change)
    # With replicas, a process that advanced elsewhere wakes its watchers here.
    bus.log.listeners.append(workflows.on_bus_messages)


def split_listen(listen: str, flag: str = "--listen") -> tuple[str, int]:
    """`host:port` (IPv6 in brackets) into its parts; raises ValueError with the reason."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{flag} expects HOST:PORT, got {listen!r}")
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
    http_address = split_listen(settings.http_listen, "--http-listen") if settings.http_listen else None
    if http_address is not None:
        # Tokens do not guard /metrics: off loopback the HTTP side needs TLS or --insecure.
        security.check_listen_policy(
            http_address[0].strip("[]"), tls=credentials is not None, tokens=False, insecure=settings.insecure
        )
    store = await open_store(settings.resolved_store_url)
    checker = GrpcHealthChecker()
    listeners: list[HttpListener] = []
    try:
        registry = Registry(store, settings.registry)
        await registry.load()
        prober = Prober(registry, checker)
        bus = Bus(store, settings.bus)
        await bus.load()
        workflows = Workflows(store, bus, registry, retention_s=settings.workflow_retention_s)
        await workflows.load()
        mesh = Mesh(store)
        await mesh.load()
        connect(registry, prober, bus, workflows)
        schedules = Schedules(store, workflows)
        # The xDS edge follows what this replica has applied of the registry and the mesh.
        snapshots = Snapshots(registry, mesh)
        xds_nodes = Nodes()
        # Every core has subscribed: follow the other replicas (if any) from here on.
        store.cluster.start()
        stopping = asyncio.Event()

        authenticator = security.Authenticator(tokens) if tokens else None
        scopes = Scopes(authenticator)
        metrics = build_metrics(registry, prober, bus, workflows, store) if settings.metrics else None
        interceptors: list[grpc.aio.ServerInterceptor] = []
        if tracing.enabled():
            # Only when the OTEL_* variables turned tracing on (tracing.configure): otherwise no cost.
            finished = tracing.finished_spans()
            if finished is not None:
                interceptors.append(TracingInterceptor(finished))
                workflows.transition_observers.append(WorkflowSpans(finished).on_transition)
        if metrics is not None:
            # Outermost, so refused calls (UNAUTHENTICATED, PERMISSION_DENIED) are counted too.
            grpc_metrics = GrpcServerMetrics(metrics.registry)
            grpc_metrics.initialize(
                pb2.DESCRIPTOR.services_by_name[name]
                for pb2, name in (
                    (registry_pb2, "Registry"),
                    (bus_pb2, "Bus"),
                    (workflow_pb2, "Workflow"),
                    (schedule_pb2, "Schedule"),
                    (mesh_pb2, "Mesh"),
                )
            )
            interceptors.append(MetricsInterceptor(grpc_metrics))
        if authenticator is not None:
            interceptors.append(security.TokenAuthInterceptor(authenticator))
        server = grpc.aio.server(interceptors=interceptors, options=SERVER_OPTIONS)
        # Every service is added through CleanDecoding: a request that does not parse answers
        # INVALID_ARGUMENT naming the field, not grpc.aio's UNKNOWN.
        decoding = CleanDecoding(server)
        handlers = cast(grpc.aio.Server, decoding)  # stands in for the server while services are added
        registry_pb2_grpc.add_RegistryServicer_to_server(
            RegistryServicer(registry, settings.registry.progress_interval_s, stopping, scopes), handlers
        )
        bus_pb2_grpc.add_BusServicer_to_server(BusServicer(bus, stopping), handlers)
        workflow_pb2_grpc.add_WorkflowServicer_to_server(
            WorkflowServicer(workflows, stopping, scopes), handlers
        )
        schedule_pb2_grpc.add_ScheduleServicer_to_server(ScheduleServicer(schedules), handlers)
        mesh_pb2_grpc.add_MeshServicer_to_server(MeshServicer(mesh), handlers)
        ads.add_to_server(ads.AdsServicer(snapshots, xds_nodes, stopping), handlers)
        csds_pb2_grpc.add_ClientStatusDiscoveryServiceServicer_to_server(
            CsdsServicer(xds_nodes, stopping), handlers
        )
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, handlers)
        enable_documented_reflection((*SERVED, health.SERVICE_NAME, reflection.SERVICE_NAME), handlers)
        decoding.check()

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

        async def ready() -> str | None:
            if stopping.is_set():
                return "shutting down"
            try:
                async with asyncio.timeout(2.0):
                    await store.bus_bounds()
            except Exception as exc:
                return f"store unreachable: {exc}"
            return None

        if http_address is not None:
            console = Console(
                Cores(workflows, registry, bus),
                Access(authenticator, secure_cookies=credentials is not None),
                stopping,
            )
            if metrics is None:
                web_app = build_app(CollectorRegistry(), ready, console=console)
            else:
                web_app = build_app(metrics.registry, ready, metrics.refresh, console=console)
            try:
                http = await start_listener(
                    web_app,
                    http_address[0].strip("[]"),
                    http_address[1],
                    tls_context(settings.tls_cert, settings.tls_key),
                )
            except OSError as exc:
                await server.stop(None)
                raise ListenError(
                    f"cannot listen on {settings.http_listen} (--http-listen): the port is taken "
                    f"(another mgmt serve?) or the address is not local ({exc.strerror or exc})"
                ) from exc
            listeners.append(http)
        app = App(
            port=port,
            host=host.strip("[]"),
            registry=registry,
            bus=bus,
            workflows=workflows,
            store=store,
            health_checker=checker,
            mesh=mesh,
            xds_nodes=xds_nodes,
            http_url=listeners[0].url if listeners else None,
            metrics=metrics,
            schedules=schedules,
        )

        loops_stop = asyncio.Event()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(registry.run(loops_stop))
            tasks.create_task(prober.run(loops_stop))
            tasks.create_task(bus.run(loops_stop))
            tasks.create_task(workflows.run(loops_stop))
            tasks.create_task(schedules.run(loops_stop))
            tasks.create_task(mesh.run(loops_stop))
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
        for listener in listeners:
            await listener.close()
        await checker.close()
        await store.close()
