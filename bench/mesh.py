"""Mesh group: how fast a registry change reaches xDS clients, and what calling through xDS costs.

Setup: a control plane child (SQLite, fresh directory) and three `bench.echo_server` children,
registered as instances of `EchoBench`.

- `mesh.push_p99_ms` (and `_p50_ms`): 100 xDS clients in a child process (`bench.mesh_clients`),
  each an ADS stream of its own that subscribes to EchoBench's Listener, Route, Cluster and
  ClusterLoadAssignment and ACKs every response as gRPC's clients do. This process moves a fourth
  "marker" instance to a new port every 20 ms (20 warm-up changes, then 100 measured); latency =
  arrival of the assignment carrying the new port at a client minus the moment just before the
  Register call (both time.monotonic(), one clock for every process on Linux); it includes the
  fsynced commit. 100 changes x 100 clients = 10,000 samples. Target p99 <= 50 ms.
- `mesh.calls_vs_direct`: unary calls/s through a gRPC Python channel to `xds:///EchoBench`
  (bootstrap from `mgmt mesh bootstrap`) divided by calls/s through a channel dialing the same three
  instances directly (`ipv4:a,b,c`, round robin), same load shape, same run. Target >= 0.95.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path

import grpc

from bench import echo_server
from bench.figures import Figure, GroupResult, RunContext, Target
from bench.harness import PLANE_READY, child, closed_loop_rate, percentile, plane_argv, python_module
from bench.mesh_clients import MARKER_HOST
from control_plane.cli import build_parser
from control_plane.cli_mesh import bootstrap
from hms.mgmt.v1 import registry_pb2, registry_pb2_grpc

logger = logging.getLogger(__name__)

GROUP = "mesh"
SERVICE = "EchoBench"
CLIENTS = 100
WARMUP_CHANGES = 20
CHANGES = 100
CHANGE_INTERVAL_S = 0.020
MARKER_BASE_PORT = 20000
PUSH_P99_TARGET = Target(50.0, at_least=False)
VS_DIRECT_TARGET = Target(0.95, at_least=True)
_ECHO_READY = re.compile(r"echo listening on (\S+)")
_CLIENTS_READY = re.compile(r"clients ready")


def _marker(port: int) -> registry_pb2.RegisterRequest:
    request = registry_pb2.RegisterRequest(
        instance=registry_pb2.ServiceInstance(
            service=SERVICE, instance_id="marker", address=f"{MARKER_HOST}:{port}", version="1.0"
        )
    )
    request.ttl.FromSeconds(3600)
    return request


async def push_figures(address: str) -> list[Figure]:
    """Push latency to `CLIENTS` ADS streams in a child process."""
    total = WARMUP_CHANGES + CHANGES
    last_port = MARKER_BASE_PORT + total
    argv = python_module(
        "bench.mesh_clients", address, SERVICE, "--clients", str(CLIENTS), "--last-port", str(last_port)
    )
    async with grpc.aio.insecure_channel(address) as channel:
        stub = registry_pb2_grpc.RegistryStub(channel)
        await stub.Register(_marker(MARKER_BASE_PORT))
        async with child("xds clients", argv, _CLIENTS_READY, stdout=True) as (clients, _):
            sent: dict[int, float] = {}
            start = time.monotonic()
            for n in range(1, total + 1):
                delay = start + n * CHANGE_INTERVAL_S - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent[MARKER_BASE_PORT + n] = time.monotonic()
                await stub.Register(_marker(MARKER_BASE_PORT + n))
            received = json.loads(await clients.output(timeout_s=30.0))["received"]
    measured = {MARKER_BASE_PORT + n for n in range(WARMUP_CHANGES + 1, total + 1)}
    latencies = []
    for stamps in received:
        first: dict[int, float] = {}
        for port, arrived in stamps:
            first.setdefault(int(port), arrived)
        # A client that was sent a later change first (changes coalesced) got this one with it.
        for port in sorted(measured):
            later = [t for p, t in first.items() if p >= port]
            if later:
                latencies.append((min(later) - sent[port]) * 1000)
    if len(latencies) != len(measured) * CLIENTS:
        raise RuntimeError(f"{len(latencies)} samples, expected {len(measured) * CLIENTS}")
    logger.info(
        "push: %d samples, p50 %.2f ms, p99 %.2f ms, max %.2f ms",
        len(latencies),
        percentile(latencies, 50),
        percentile(latencies, 99),
        max(latencies),
    )
    return [
        Figure("mesh.push_p50_ms", percentile(latencies, 50), "ms"),
        Figure("mesh.push_p99_ms", percentile(latencies, 99), "ms", PUSH_P99_TARGET),
    ]


async def calls_figure(context: RunContext, address: str, echoes: list[str], data_dir: str) -> list[Figure]:
    """Calls/s through `xds:///` against dialing the same instances directly."""
    path = Path(data_dir) / "bootstrap.json"
    args = build_parser().parse_args(["mesh", "bootstrap", "--node-id", "bench", "--server", address])
    path.write_text(json.dumps(bootstrap(args)))
    # gRPC reads the bootstrap when it makes its xDS client, at the first xds:/// channel.
    os.environ["GRPC_XDS_BOOTSTRAP"] = str(path)
    config = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
    rates = {}
    for name, target, options in (
        ("direct", "ipv4:" + ",".join(echoes), [("grpc.service_config", config)]),
        ("xds", f"xds:///{SERVICE}", []),
    ):
        async with grpc.aio.insecure_channel(target, options=options) as channel:
            echo: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(echo_server.UNARY)
            await echo(b"x", wait_for_ready=True, timeout=30)

            async def call(method: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = echo) -> object:
                return await method(b"x")

            rates[name] = await closed_loop_rate(call, context.load, {})
            logger.info("calls %s: %.0f calls/s; %s", name, rates[name].per_s, rates[name].cpu_note())
    return [
        Figure("mesh.calls_direct_per_s", rates["direct"].per_s, "calls/s"),
        Figure("mesh.calls_xds_per_s", rates["xds"].per_s, "calls/s"),
        Figure("mesh.calls_vs_direct", rates["xds"].per_s / rates["direct"].per_s, "ratio", VS_DIRECT_TARGET),
    ]


async def run(context: RunContext) -> GroupResult:
    """Start a control plane and three echo servers, register them, measure push, then calls."""
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="hms-bench-") as data_dir:
        argv = plane_argv(data_dir)
        async with (
            child("control plane", argv, PLANE_READY) as (_, ready),
            child("echo 0", python_module("bench.echo_server"), _ECHO_READY) as (_, echo0),
            child("echo 1", python_module("bench.echo_server"), _ECHO_READY) as (_, echo1),
            child("echo 2", python_module("bench.echo_server"), _ECHO_READY) as (_, echo2),
        ):
            address = ready.group(1)
            echoes = [echo0.group(1), echo1.group(1), echo2.group(1)]
            async with grpc.aio.insecure_channel(address) as channel:
                stub = registry_pb2_grpc.RegistryStub(channel)
                for n, echo in enumerate(echoes):
                    request = registry_pb2.RegisterRequest(
                        instance=registry_pb2.ServiceInstance(
                            service=SERVICE, instance_id=f"echo-{n}", address=echo
                        )
                    )
                    request.ttl.FromSeconds(3600)
                    await stub.Register(request)
            figures += await calls_figure(context, address, echoes, data_dir)
            figures += await push_figures(address)
    setup = (
        f"control plane child (SQLite, fresh dir), 3 echo server children as {SERVICE}; {CLIENTS} ADS "
        f"clients in a child process, {CHANGES} changes every {CHANGE_INTERVAL_S * 1000:.0f} ms after "
        f"{WARMUP_CHANGES} warm-up; xds:/// vs direct round robin at {context.load.in_flight} in flight, "
        f"{context.load.duration_s:g} s after {context.load.warmup_s:g} s warm-up"
    )
    return GroupResult(GROUP, setup, figures)
