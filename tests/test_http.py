"""The HTTP listener beside the gRPC port: /metrics, /healthz, /readyz, and its listen rules."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from control_plane.errors import InvalidArgument
from control_plane.server import App
from hms_mgmt import Client
from tests.metrics_support import get, sample


async def test_http_listener_answers_healthz_readyz_and_metrics(server: App) -> None:
    assert server.http_url is not None
    health = await get(f"{server.http_url}/healthz")
    ready = await get(f"{server.http_url}/readyz")
    status, content_type, body = await get(f"{server.http_url}/metrics")

    assert health[0] == 200 and ready[0] == 200 and ready[2] == "ready\n"
    assert status == 200 and content_type.startswith("text/plain")
    assert "process_resident_memory_bytes" in body and "python_gc_objects_collected_total" in body


async def test_metrics_in_openmetrics_when_the_scraper_asks(server: App) -> None:
    assert server.http_url is not None
    _, content_type, body = await get(
        f"{server.http_url}/metrics", accept="application/openmetrics-text; version=1.0.0"
    )

    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith("# EOF")


async def test_grpc_calls_are_counted_by_method_and_code(server: App, client: Client) -> None:
    assert server.http_url is not None
    await client.registry.register("DocumentService", "127.0.0.1:7001", instance_id="d1")
    for _ in range(3):
        await client.registry.lookup("DocumentService")
    with pytest.raises(InvalidArgument):
        await client.registry.lookup("not a service name!")
    _, _, body = await get(f"{server.http_url}/metrics")

    lookup = {"grpc_service": "hms.mgmt.v1.Registry", "grpc_method": "Lookup", "grpc_type": "unary"}
    assert sample(body, "grpc_server_started_total", **lookup) == 4
    assert sample(body, "grpc_server_handled_total", grpc_code="OK", **lookup) == 3
    assert sample(body, "grpc_server_handled_total", grpc_code="INVALID_ARGUMENT", **lookup) == 1
    assert sample(body, "grpc_server_handling_seconds_count", **lookup) == 4
    assert sample(body, "mgmt_registry_instances", service="DocumentService", health="passing") == 1
    assert sample(body, "mgmt_registry_revision") >= 1


async def test_stream_messages_are_counted(server: App, client: Client) -> None:
    assert server.http_url is not None
    async with client.registry.watch() as stream:
        await client.registry.register("DocumentService", "127.0.0.1:7001", instance_id="d1")
        async with asyncio.timeout(10):
            await anext(stream)
        _, _, body = await get(f"{server.http_url}/metrics")

    watch = {"grpc_service": "hms.mgmt.v1.Registry", "grpc_method": "Watch", "grpc_type": "server_stream"}
    assert sample(body, "grpc_server_msg_sent_total", **watch) >= 2  # the snapshot, then the change
    assert sample(body, "mgmt_registry_watchers") == 1


def serve(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "control_plane",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(tmp_path),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_http_listener_off_loopback_needs_tls_or_insecure(tmp_path: Path) -> None:
    result = serve("--http-listen", "0.0.0.0:0", tmp_path=tmp_path)

    assert result.returncode != 0
    assert "--insecure" in result.stderr and "Traceback" not in result.stderr


def test_http_listener_on_a_bad_address_is_one_clear_error(tmp_path: Path) -> None:
    result = serve("--http-listen", "nonsense", tmp_path=tmp_path)

    assert result.returncode != 0
    assert "--http-listen expects HOST:PORT" in result.stderr


@pytest.mark.store_independent(
    reason="the in-process server only holds the port; the refused `serve` stops before it serves, on SQLite in both passes"
)
async def test_a_taken_http_port_stops_the_server_with_a_clear_error(server: App, tmp_path: Path) -> None:
    assert server.http_url is not None
    taken = server.http_url.removeprefix("http://")

    result = await asyncio.to_thread(serve, "--http-listen", taken, tmp_path=tmp_path)

    assert result.returncode != 0
    assert f"cannot listen on {taken} (--http-listen): the port is taken" in result.stderr
    assert "Traceback" not in result.stderr
