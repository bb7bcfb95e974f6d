"""Fixtures: a real control plane on a free port, in-process or as a child process."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from control_plane.sdk import Client
from control_plane.server import App, running
from control_plane.settings import RegistrySettings, Settings
from tests.workflow_support import Services

READY = re.compile(r"mgmt listening on (\S+)")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for a loopback control plane on a free port with fast timers."""
    return Settings(
        listen="127.0.0.1:0",
        data_dir=tmp_path / "data",
        shutdown_grace_s=0.5,
        registry=RegistrySettings(progress_interval_s=0.5),
    )


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[App]:
    """A control plane running in this event loop."""
    async with running(settings) as app:
        yield app


@pytest.fixture
async def client(server: App) -> AsyncIterator[Client]:
    """An SDK client connected to `server`."""
    async with Client(server.address) as c:
        yield c


def with_registry(settings: Settings, **changes: Any) -> Settings:
    """`settings` with some registry knobs changed."""
    return replace(settings, registry=replace(settings.registry, **changes))


class ServerProcess:
    """`python -m control_plane serve` as a child process; ready once it logs where it listens."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.data_dir = data_dir
        self.extra = extra
        self.process: asyncio.subprocess.Process | None = None
        self.address = ""
        self.log: list[str] = []

    async def start(self, timeout_s: float = 20.0) -> str:
        """Start and wait for the readiness line; returns host:port."""
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "control_plane",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(self.data_dir),
            *self.extra,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stderr is not None
        async with asyncio.timeout(timeout_s):
            while True:
                line = (await self.process.stderr.readline()).decode()
                if not line:
                    raise RuntimeError("control plane exited before it was ready:\n" + "".join(self.log))
                self.log.append(line)
                match = READY.search(line)
                if match:
                    self.address = match.group(1)
                    return self.address

    async def stop(self, signum: int = signal.SIGTERM, timeout_s: float = 10.0) -> int:
        """Send `signum` and wait for the exit status."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signum)
        assert self.process.stderr is not None
        async with asyncio.timeout(timeout_s):
            rest = await self.process.stderr.read()
            self.log.append(rest.decode())
            return await self.process.wait()


@pytest.fixture
async def server_process(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[ServerProcess]]]:
    """Factory of started child control planes; every one is killed at the end."""
    started: list[ServerProcess] = []

    async def start(*extra: str, data_dir: Path | None = None) -> ServerProcess:
        proc = ServerProcess(data_dir or tmp_path / "data", *extra)
        started.append(proc)
        await proc.start()
        return proc

    yield start
    for proc in started:
        if proc.process is not None and proc.process.returncode is None:
            await proc.stop(signal.SIGKILL)


@pytest.fixture
async def services(client: Client) -> AsyncIterator[Services]:
    s = Services(client)
    yield s
    await s.stop()
