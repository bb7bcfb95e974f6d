"""`mgmt` for people and scripts: JSON output, the new verbs, clear errors and warnings."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from control_plane.cli_workflow import _epoch
from control_plane.server import App
from hms_mgmt import Client
from tests.conftest import CLI_OUTPUT

pytestmark = CLI_OUTPUT

WAITING = """
name: inspection
steps:
  - id: check
    task: {service: InspectionService, type: checkSite}
  - id: result
    wait_signal: {name: inspection_result, timeout: 7d}
"""


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "control_plane", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def mgmt(server: App, *args: str) -> subprocess.CompletedProcess[str]:
    """`mgmt <args> --server <server>`, off the event loop that serves it; must succeed."""
    result = await asyncio.to_thread(run_cli, *args, "--server", server.address)
    assert result.returncode == 0, result.stderr
    return result


async def test_every_read_command_answers_json(server: App, client: Client) -> None:
    await client.registry.register("DocumentService", "127.0.0.1:7001", instance_id="d1", version="1.0.0")
    await client.bus.publish("permit.a1.submitted", b"{}")
    await client.workflow.apply(WAITING)
    process = await client.workflow.start("inspection", {"site": "a1"})

    outputs = {
        " ".join(args): json.loads((await mgmt(server, *args, "-o", "json")).stdout)
        for args in (
            ("registry", "ls"),
            ("registry", "lookup", "DocumentService"),
            ("bus", "sub", "permit.>", "--from", "all", "--count", "1"),
            ("bus", "subjects"),
            ("bus", "consumers", "--all"),
            ("bus", "retention", "ls"),
            ("workflow", "status", process.id),
            ("workflow", "ls"),
            ("workflow", "history", process.id),
            ("workflow", "defs", "ls"),
            ("workflow", "defs", "show", "inspection"),
        )
    }

    assert [s["name"] for s in outputs["registry ls"]] == ["DocumentService"]
    assert outputs["registry lookup DocumentService"][0]["instance_id"] == "d1"
    assert [s["subject"] for s in outputs["bus subjects"] if s["subject"].startswith("permit.")] == [
        "permit.a1.submitted"
    ]
    assert isinstance(outputs["bus consumers --all"], list)
    assert outputs["bus sub permit.> --from all --count 1"]["message"]["subject"] == "permit.a1.submitted"
    assert outputs["bus retention ls"][0]["max_messages"] == "1000000"
    assert outputs[f"workflow status {process.id}"]["id"] == process.id
    assert [p["id"] for p in outputs["workflow ls"]] == [process.id]
    assert outputs[f"workflow history {process.id}"][0]["type"] == "HISTORY_EVENT_TYPE_PROCESS_STARTED"
    assert [(d["name"], d["version"]) for d in outputs["workflow defs ls"]] == [("inspection", 1)]
    assert "wait_signal" in outputs["workflow defs show inspection"]["source"]


async def test_defs_show_prints_the_source_and_consumers_rm_deletes(server: App, client: Client) -> None:
    await client.workflow.apply(WAITING)
    async with client.bus.subscribe("permit.>", durable="audit"):
        pass

    shown = await mgmt(server, "workflow", "defs", "show", "inspection")
    removed = await mgmt(server, "bus", "consumers", "rm", "audit")
    left = json.loads((await mgmt(server, "bus", "consumers", "-o", "json")).stdout)

    assert shown.stdout.startswith("# inspection version 1")
    assert "wait_signal: {name: inspection_result" in shown.stdout
    assert removed.stdout.strip() == "deleted consumer audit"
    assert [c["name"] for c in left] == []


async def test_retention_set_then_ls(server: App) -> None:
    await mgmt(server, "bus", "retention", "set", "audit", "--max-age", "12h", "--max-messages", "500")

    listed = (await mgmt(server, "bus", "retention", "ls")).stdout.splitlines()

    assert any(line.split() == ["audit", "12h", "500"] for line in listed), listed


async def test_registry_watch_prints_changes_like_the_snapshot(server: App, client: Client) -> None:
    await client.registry.register("DocumentService", "127.0.0.1:7001", instance_id="d1", version="1.0.0")
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "control_plane", "registry", "watch", "--server", server.address,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stdout is not None
    try:
        async with asyncio.timeout(20):
            header = (await child.stdout.readline()).decode()
            snapshot = (await child.stdout.readline()).decode().split()
            await client.registry.register(
                "DocumentService", "127.0.0.1:7002", instance_id="d2", version="1.0.0"
            )
            change = (await child.stdout.readline()).decode().split()
    finally:
        child.kill()
        await child.communicate()

    assert header.startswith("# watching from revision")
    assert snapshot[1:] == ["SNAPSHOT", "DocumentService/d1", "127.0.0.1:7001", "1.0.0", "PASSING"]
    assert change[1:] == ["UP", "DocumentService/d2", "127.0.0.1:7002", "1.0.0", "PASSING"]


async def test_status_names_the_missing_worker(server: App, client: Client) -> None:
    await client.workflow.apply(WAITING)
    process = await client.workflow.start("inspection", {"site": "a1"})

    status = await mgmt(server, "workflow", "status", process.id)

    assert "no live worker for InspectionService/checkSite" in status.stdout


async def test_signal_with_an_unknown_name_warns(server: App, client: Client) -> None:
    await client.workflow.apply(WAITING)
    process = await client.workflow.start("inspection", {"site": "a1"})

    typo = await mgmt(server, "workflow", "signal", process.id, "inspection_reslut")
    known = await mgmt(server, "workflow", "signal", process.id, "inspection_result")

    assert "no step of inspection waits for signal 'inspection_reslut'" in typo.stderr
    assert "inspection_result" in typo.stderr  # the names it does know
    assert "warning" not in known.stderr


async def test_start_with_a_used_key_and_other_input_says_so(server: App, client: Client) -> None:
    await client.workflow.apply(WAITING)
    first = await mgmt(
        server, "workflow", "start", "inspection", "--key", "A-17", "--input", '{"site": "a1"}'
    )
    same = await mgmt(server, "workflow", "start", "inspection", "--key", "A-17", "--input", '{"site": "a1"}')
    other = await mgmt(
        server, "workflow", "start", "inspection", "--key", "A-17", "--input", '{"site": "b2"}'
    )

    assert first.stdout.split()[0] == same.stdout.split()[0] == other.stdout.split()[0]
    assert "warning" not in first.stderr + same.stderr
    assert "already exists with different input" in other.stderr


@pytest.mark.parametrize("address", ["localhost", "127.0.0.1", "127.0.0.1:x", ":50051"])
def test_a_server_address_without_a_port_is_refused(address: str) -> None:
    result = run_cli("registry", "ls", "--server", address)

    assert result.returncode == 2
    assert f"--server expects HOST:PORT (comma-separated for several), got {address!r}" in result.stderr


def test_unreachable_server_error_says_what_to_do() -> None:
    result = run_cli("registry", "ls", "--server", "127.0.0.1:1")

    assert result.returncode == 1
    assert "cannot reach the control plane at 127.0.0.1:1: is `mgmt serve` running?" in result.stderr
    assert "set --server or MGMT_SERVER" in result.stderr
    assert "Traceback" not in result.stderr


def test_until_times_show_the_date_when_not_today() -> None:
    now = time.time()
    later = now + 7 * 86400

    assert len(_epoch(now).split()) == 1
    assert _epoch(later).split()[0] == (datetime.now().astimezone() + timedelta(days=7)).date().isoformat()


def test_shell_completion_completes_verbs_and_actions(tmp_path: Path) -> None:
    def complete(line: str) -> list[str]:
        answer = tmp_path / "completions"
        env = {
            **os.environ,
            "_ARGCOMPLETE": "1",
            "COMP_LINE": line,
            "COMP_POINT": str(len(line)),
            "_ARGCOMPLETE_IFS": "\n",
            "_ARGCOMPLETE_STDOUT_FILENAME": str(answer),
        }
        result = subprocess.run(
            [sys.executable, "-m", "control_plane"],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return answer.read_text().split()

    assert complete("mgmt wor") == ["workflow"]
    assert set(complete("mgmt workflow ")) >= {"apply", "start", "status", "defs", "signal"}
    assert {"ls", "set", "rm"} <= set(complete("mgmt bus retention "))
