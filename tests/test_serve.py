"""`mgmt serve` as a real child process: readiness, signals, restarts, start-up errors."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest

from control_plane.cli import build_parser, settings_from_args
from control_plane.limits import MIB
from hms_mgmt import Client
from tests.conftest import ServerProcess

Start = Callable[..., Awaitable[ServerProcess]]


async def test_sigterm_ends_open_streams_with_a_clear_status_and_exits_quickly(server_process: Start) -> None:
    proc = await server_process()
    async with Client(proc.address) as client:
        reply = await client.registry.register("svc", "127.0.0.1:1", instance_id="a")
        async with (
            client.registry.keep_alive(reply.lease.lease_id, interval_s=0.5),
            client.registry.watch() as stream,
        ):
            started = time.monotonic()
            assert proc.process is not None
            proc.process.send_signal(signal.SIGTERM)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async with asyncio.timeout(5):
                    async for _ in stream:
                        pass
            code = await proc.stop(timeout_s=5)
            elapsed = time.monotonic() - started

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in (caught.value.details() or "")
    assert code == 0
    assert elapsed < 5


async def test_registrations_survive_a_sigkill(server_process: Start, tmp_path: Path) -> None:
    first = await server_process()
    async with Client(first.address) as client:
        reply = await client.registry.register(
            "docs", "127.0.0.1:7001", instance_id="d1", version="1.0.0", ttl_s=30
        )
    await first.stop(signal.SIGKILL)

    second = await server_process()
    async with Client(second.address) as client:
        found = await client.registry.lookup("docs")
        await client.registry.heartbeat(reply.lease.lease_id)
        async with client.registry.watch(after_revision=0) as stream:
            async with asyncio.timeout(5):
                replayed = await anext(stream)

    assert [(i.instance_id, i.version) for i in found] == [("d1", "1.0.0")]
    assert [c.revision for c in replayed.changes] == [reply.revision]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "control_plane", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--store", "mysql://x"], "unsupported store URL scheme 'mysql'"),
        (["--listen", "nonsense"], "--listen expects HOST:PORT"),
        (["--tokens", "/nonexistent/tokens.yaml"], "/nonexistent/tokens.yaml"),
        (["--bus-tail-mib", "0"], "--bus-tail-mib: must be at least 1"),
        (
            ["--store", "postgresql://postgres:secret@127.0.0.1:1/none"],
            "cannot open store postgresql://postgres:***@",
        ),
        (["--bus-tail-size", "0"], "--bus-tail-size: must be at least 1, got 0"),
        (["--store", "sqlite:///x.db?cache_mib=0"], "cache_mib must be a whole number of MiB"),
    ],
)
def test_bad_start_up_settings_give_a_clear_error(args: list[str], message: str, tmp_path: Path) -> None:
    result = run_cli("serve", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0", *args)

    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_the_bus_memory_budget_comes_from_a_flag_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    default = settings_from_args(build_parser().parse_args(["serve"]))
    flag = settings_from_args(build_parser().parse_args(["serve", "--bus-tail-mib", "32"]))
    monkeypatch.setenv("MGMT_BUS_TAIL_MIB", "64")
    env = settings_from_args(build_parser().parse_args(["serve"]))

    assert (default.bus.tail_bytes, flag.bus.tail_bytes, env.bus.tail_bytes) == (
        256 * MIB,
        32 * MIB,
        64 * MIB,
    )


async def test_cli_registry_verbs_talk_to_a_served_control_plane(server_process: Start) -> None:
    proc = await server_process()
    async with Client(proc.address) as client:
        await client.registry.register("payments", "127.0.0.1:9100", instance_id="pay-1", version="2.0.0")

    listing = await asyncio.to_thread(run_cli, "registry", "ls", "--server", proc.address)
    lookup = await asyncio.to_thread(run_cli, "registry", "lookup", "payments", "--server", proc.address)

    assert listing.returncode == 0, listing.stderr
    assert "payments" in listing.stdout and "2.0.0" in listing.stdout
    assert lookup.returncode == 0, lookup.stderr
    assert "pay-1" in lookup.stdout and "127.0.0.1:9100" in lookup.stdout


def test_cli_reports_an_unreachable_server_without_a_traceback() -> None:
    result = run_cli("registry", "ls", "--server", "127.0.0.1:1")

    assert result.returncode == 1
    assert "cannot reach the control plane at 127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stderr


async def refused_serve(listen: str, data_dir: Path) -> tuple[int, str]:
    """`mgmt serve` that is expected to exit at once: its exit status and the last line it logged (a
    Traceback in what it logged fails the test)."""
    second = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "control_plane",
        "serve",
        "--listen",
        listen,
        "--http-listen",
        "127.0.0.1:0",
        "--data-dir",
        str(data_dir),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(20):
            _, stderr = await second.communicate()
    finally:
        if second.returncode is None:
            second.kill()  # it started beside the first: the defect the caller tests for
            await second.wait()
    message = stderr.decode()
    assert "Traceback" not in message
    assert second.returncode is not None
    return second.returncode, message.strip().splitlines()[-1]


async def test_a_second_serve_on_the_same_data_directory_exits_with_a_clear_error(
    server_process: Start,
) -> None:
    """Two control planes on one SQLite file would both act as the only replica (every timer fired
    twice, every task handed out twice): the second is refused, and a SIGKILL leaves no stale lock."""
    first = await server_process()
    status, last_line = await refused_serve("127.0.0.1:0", first.data_dir)
    async with Client(first.address) as client:
        still_serving = await client.registry.list_services()
    assert first.process is not None
    await first.stop(signal.SIGKILL)
    after_a_crash = await server_process(data_dir=first.data_dir)

    assert status != 0
    assert f"is in use by another control plane (pid {first.process.pid})" in last_line
    assert still_serving == []
    assert after_a_crash.address


async def test_a_second_serve_on_a_taken_port_exits_with_a_clear_error(
    server_process: Start, tmp_path: Path
) -> None:
    first = await server_process()
    status, last_line = await refused_serve(first.address, tmp_path / "second")

    assert status != 0
    assert f"cannot listen on {first.address}: the port is taken" in last_line
