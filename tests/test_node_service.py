"""The Node.js NotificationService as a real child process, joining a control plane through protos/ only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from control_plane.server import App
from hms_mgmt import Client, HealthStatus, Instance
from hms_mgmt.types import Process, ProcessState
from tests.workflow_support import RefusingStore

NODE = shutil.which("node")
SERVICE_DIR = Path(__file__).resolve().parent.parent / "services" / "notification"
SERVICE = "NotificationService"
READY_PREFIX = "notification service ready "
DEADLINE_S = 10.0

pytestmark = pytest.mark.skipif(
    NODE is None, reason="node is not on PATH: the Node.js NotificationService needs it"
)

NOTIFY = """
name: notify
steps:
  - id: notify
    task: {service: NotificationService, type: sendDecision}
    input: {decision: "input.decision", to: "input.email"}
"""

NOTIFY_WITHOUT_DECISION = """
name: notify_blank
steps:
  - id: notify
    task: {service: NotificationService, type: sendDecision}
    input: {to: "input.email"}
"""


class NodeService:
    """`node services/notification/index.js` as a child process; ready once it prints its ready line."""

    def __init__(self, server: str, instance_id: str, outbox: Path) -> None:
        self.server = server
        self.instance_id = instance_id
        self.outbox = outbox
        self.process: asyncio.subprocess.Process | None = None
        self.log: list[str] = []
        self._stderr: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start it and wait for `notification service ready <instance-id>` on stdout."""
        if not (SERVICE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
            pytest.fail(f"{SERVICE_DIR / 'node_modules'} is missing: run `make install` (npm ci) first")
        assert NODE is not None
        self.process = await asyncio.create_subprocess_exec(
            NODE,
            str(SERVICE_DIR / "index.js"),
            "--server",
            self.server,
            "--instance-id",
            self.instance_id,
            "--outbox-file",
            str(self.outbox),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self._stderr = asyncio.create_task(self._collect_stderr())
        assert self.process.stdout is not None
        async with asyncio.timeout(DEADLINE_S):
            while True:
                line = (await self.process.stdout.readline()).decode()
                if not line:
                    await self.process.wait()
                    raise RuntimeError(f"the Node service exited before it was ready:\n{self.logs()}")
                if line.strip() == READY_PREFIX + self.instance_id:
                    return

    async def _collect_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for line in self.process.stderr:
            self.log.append(line.decode())

    def logs(self) -> str:
        """What it logged to stderr so far."""
        return "".join(self.log)

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        """Send `signum` and wait for the exit status."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signum)
        async with asyncio.timeout(DEADLINE_S):
            status = await self.process.wait()
            if self._stderr is not None:
                await self._stderr
        return status


StartNode = Callable[[str], Awaitable[NodeService]]


@pytest.fixture
async def node_service(server: App, tmp_path: Path) -> AsyncIterator[StartNode]:
    """Factory of started Node services on `server`, all writing to one outbox; every one is killed at the end."""
    started: list[NodeService] = []

    async def start(instance_id: str) -> NodeService:
        service = NodeService(server.address, instance_id, tmp_path / "outbox.jsonl")
        started.append(service)
        await service.start()
        return service

    yield start
    for service in started:
        if service.process is not None and service.process.returncode is None:
            with contextlib.suppress(ProcessLookupError, TimeoutError):
                await service.stop(signal.SIGKILL)


def notices(outbox: Path) -> list[dict[str, Any]]:
    """The JSON lines the Node service appended to its outbox."""
    if not outbox.exists():
        return []
    return [json.loads(line) for line in outbox.read_text().splitlines() if line.strip()]


async def wait_passing(client: Client, instance_id: str) -> Instance:
    """Wait until the control plane's probes found the instance healthy."""
    async with asyncio.timeout(DEADLINE_S), client.registry.watch(SERVICE) as stream:
        for instance in stream.snapshot:
            if instance.instance_id == instance_id and instance.health == HealthStatus.PASSING:
                return instance
        async for response in stream:
            for change in response.changes:
                instance = change.instance
                if instance.instance_id == instance_id and instance.health == HealthStatus.PASSING:
                    return instance
    raise AssertionError(f"the watch of {SERVICE} ended before {instance_id} was healthy")


async def finish(client: Client, process_id: str) -> Process:
    """Wait, with a deadline, until the process ends."""
    async with asyncio.timeout(DEADLINE_S):
        return await client.workflow.wait(process_id)


async def test_it_registers_with_its_tags_is_probed_healthy_and_deregisters_on_sigterm(
    client: Client, node_service: StartNode
) -> None:
    node = await node_service("node-1")
    await wait_passing(client, "node-1")

    [instance] = await client.registry.lookup(SERVICE, tags=["node"])
    assert instance.instance_id == "node-1"
    assert list(instance.tags) == ["node"]
    assert instance.version == "1.0.0"
    assert instance.address.startswith("127.0.0.1:")
    assert instance.probe is not None

    assert await node.stop(signal.SIGTERM) == 0, node.logs()
    assert await client.registry.lookup(SERVICE, include_unhealthy=True) == []


async def test_it_sends_the_notice_and_completes_its_task(
    client: Client, node_service: StartNode, tmp_path: Path
) -> None:
    await client.workflow.apply(NOTIFY)
    node = await node_service("node-1")

    process = await client.workflow.start(
        "notify", {"decision": "approved", "email": "ada@example.org"}, business_key="permit-7"
    )
    done = await finish(client, process.id)

    assert done.state == ProcessState.COMPLETED, node.logs()
    [step] = done.steps
    output = dict(step.output)
    assert output["decision"] == "approved"
    assert str(output["notice_id"]).startswith("ntc-")
    [notice] = notices(tmp_path / "outbox.jsonl")
    assert notice["process_id"] == process.id
    assert notice["business_key"] == "permit-7"
    assert (notice["decision"], notice["to"]) == ("approved", "ada@example.org")
    assert notice["sent_at"]


async def test_a_task_without_a_decision_fails_for_good_with_invalid_input(
    client: Client, node_service: StartNode, tmp_path: Path
) -> None:
    await client.workflow.apply(NOTIFY_WITHOUT_DECISION)
    await node_service("node-1")

    process = await client.workflow.start("notify_blank", {"email": "ada@example.org"})
    done = await finish(client, process.id)

    assert done.state == ProcessState.FAILED
    assert done.error.code == "INVALID_INPUT"
    assert done.steps[0].attempts == 1
    assert notices(tmp_path / "outbox.jsonl") == []


async def test_a_killed_instance_leaves_the_task_queued_and_a_new_instance_completes_it(
    client: Client, node_service: StartNode, tmp_path: Path
) -> None:
    await client.workflow.apply(NOTIFY)
    first = await node_service("node-1")
    assert await first.stop(signal.SIGKILL) == -signal.SIGKILL

    process = await client.workflow.start("notify", {"decision": "rejected", "email": "bob@example.org"})
    waiting = await client.workflow.status(process.id)
    assert waiting.state == ProcessState.RUNNING
    assert notices(tmp_path / "outbox.jsonl") == []

    second = await node_service("node-2")
    done = await finish(client, process.id)

    assert done.state == ProcessState.COMPLETED, second.logs()
    assert dict(done.steps[0].output)["decision"] == "rejected"
    # node-1 is dead (SIGKILL), so the one notice in the outbox is node-2's.
    assert [n["process_id"] for n in notices(tmp_path / "outbox.jsonl")] == [process.id]


async def test_a_report_refused_while_the_store_is_down_is_sent_again_until_answered(
    server: App, client: Client, node_service: StartNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RefusingStore(server, monkeypatch)
    await client.workflow.apply(NOTIFY)
    node = await node_service("node-1")

    store.refuse(3, after=1)  # the start commits; the next three transitions (the completion) do not
    process = await client.workflow.start("notify", {"decision": "approved", "email": "ada@example.org"})
    done = await finish(client, process.id)

    assert store.refused == 3
    assert done.state == ProcessState.COMPLETED, node.logs()
    assert [n["process_id"] for n in notices(tmp_path / "outbox.jsonl")] == [process.id]
