"""Echo servers registered in the registry, and xDS clients in child processes, for the mesh tests."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from control_plane.cli import build_parser
from control_plane.cli_mesh import bootstrap

ROOT = Path(__file__).resolve().parent.parent
Context = grpc.aio.ServicerContext[Any, Any]


@dataclass
class Echo:
    """One test echo server: answers with its instance id; `Fail` when told to; `Slow` until released."""

    instance_id: str
    failing: bool = False
    in_flight: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    # Notified when `in_flight` changes; echo_servers gives its servers one, to wait on them all.
    moved: asyncio.Condition = field(default_factory=asyncio.Condition)
    server: grpc.aio.Server | None = None
    health: health.aio.HealthServicer | None = None
    port: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _echo(self, request: bytes, context: Context) -> bytes:
        if self.failing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.instance_id} fails on purpose")
        return self.instance_id.encode()

    async def _slow(self, request: bytes, context: Context) -> bytes:
        await self._count(+1)
        try:
            await self.release.wait()
        finally:
            await self._count(-1)
        return self.instance_id.encode()

    async def _count(self, change: int) -> None:
        async with self.moved:
            self.in_flight += change
            self.moved.notify_all()

    async def start(self) -> None:
        self.server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "hms.test.Echo",
            {
                "Echo": grpc.unary_unary_rpc_method_handler(self._echo),
                "Slow": grpc.unary_unary_rpc_method_handler(self._slow),
            },
        )
        self.server.add_generic_rpc_handlers((handler,))
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()

    async def set_serving(self, serving: bool) -> None:
        assert self.health is not None
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self.health.set("", status)

    async def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            await self.server.stop(None)


@asynccontextmanager
async def echo_servers(count: int) -> AsyncIterator[list[Echo]]:
    """`count` started echo servers named echo-0, echo-1, ..."""
    moved = asyncio.Condition()
    servers = [Echo(f"echo-{n}", moved=moved) for n in range(count)]
    try:
        for server in servers:
            await server.start()
        yield servers
    finally:
        for server in servers:
            await server.stop()


def write_bootstrap(path: Path, servers: str, node_id: str) -> Path:
    """The bootstrap `mgmt mesh bootstrap --node-id NODE --server SERVERS` prints, written to `path`."""
    args = build_parser().parse_args(["mesh", "bootstrap", "--node-id", node_id, "--server", servers])
    path.write_text(json.dumps(bootstrap(args)))
    return path


class XdsClient:
    """tests/xds_client.py in a child process: gRPC Python's own xDS client."""

    def __init__(
        self, bootstrap_path: Path, target: str, ready: bool = True, program: tuple[str, ...] = ()
    ) -> None:
        self._bootstrap = bootstrap_path
        self._target = target
        self._ready = ready
        # The client to run: gRPC Python's (tests/xds_client.py) unless another is named.
        self._program = program or (sys.executable, "-m", "tests.xds_client")
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, timeout_s: float = 30.0) -> None:
        env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(self._bootstrap), "PYTHONPATH": str(ROOT)}
        self.process = await asyncio.create_subprocess_exec(
            *self._program,
            self._target,
            *(() if self._ready else ("--no-wait",)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=ROOT,
            env=env,
            limit=64 * 1024 * 1024,  # a 5,000-call answer is one long line
        )
        if self._ready:
            assert (await self.read(timeout_s)) == {"ready": True}

    async def read(self, timeout_s: float = 60.0) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        async with asyncio.timeout(timeout_s):
            line = await self.process.stdout.readline()
        if not line:
            assert self.process.stderr is not None
            error = await self.process.stderr.read()
            raise RuntimeError(f"xds client exited: {error.decode()[-3000:]}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def send(self, **command: Any) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        await self.process.stdin.drain()

    async def calls(self, count: int, **options: Any) -> list[tuple[float, str]]:
        """Make `count` calls; (time, instance id or "!CODE") for each."""
        await self.send(calls=count, **options)
        answer = await self.read()
        return [(t, who) for t, who in answer["results"]]

    async def spread(self, count: int, **options: Any) -> Counter[str]:
        """How many of `count` calls each instance (or error) answered."""
        return Counter(who for _, who in await self.calls(count, **options))

    async def close(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


@asynccontextmanager
async def xds_client(
    bootstrap_path: Path,
    target: str = "xds:///EchoService",
    ready: bool = True,
    program: tuple[str, ...] = (),
) -> AsyncIterator[XdsClient]:
    """A started client; with `ready` (the default) once a first call succeeded."""
    client = XdsClient(bootstrap_path, target, ready, program)
    try:
        await client.start()
        yield client
    finally:
        await client.close()


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")) if text else ()


async def until_acked(app: Any, node_id: str, type_url: str, at_least: str, timeout_s: float = 20.0) -> None:
    """Wait until `node_id` ACKed a `type_url` response of version `at_least` or later (CSDS's view)."""

    def acked() -> bool:
        for node in app.xds_nodes.all():
            state = node.types.get(type_url)
            if (
                node.node.id == node_id
                and state is not None
                and state.answered
                and not state.nack_error
                and _version(state.acked_version) >= _version(at_least)
            ):
                return True
        return False

    async with asyncio.timeout(timeout_s):
        await app.xds_nodes.wait(acked)


async def until_applied(xds: XdsClient, answering: set[str], timeout_s: float = 20.0) -> None:
    """Wait until a batch of the client's calls is answered by `answering` alone: its balancer applied
    what it ACKed. A gRPC client ACKs a response once it has parsed it, and hands it to its balancer
    after; on a loaded machine calls made in between still go by the previous assignment."""
    async with asyncio.timeout(timeout_s):
        while set(await xds.spread(20)) - answering:
            pass


async def until_in_flight(echoes: list[Echo], count: int, timeout_s: float = 20.0) -> None:
    """Wait until `count` Slow calls are held by the echo servers (of one echo_servers block)."""
    moved = echoes[0].moved
    async with asyncio.timeout(timeout_s), moved:
        await moved.wait_for(lambda: sum(e.in_flight for e in echoes) == count)
