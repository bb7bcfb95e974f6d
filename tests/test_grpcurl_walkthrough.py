"""docs/grpcurl.md works verbatim: every ```sh command, in order, in one bash, against a real server."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from control_plane.server import App
from tests.test_grpcurl import grpcurl

pytestmark = pytest.mark.store_independent(
    reason="the walkthrough's commands run verbatim; what the answers hold is checked on each store elsewhere"
)

DOC = Path(__file__).resolve().parent.parent / "docs" / "grpcurl.md"
DOCUMENTED_ADDRESS = "127.0.0.1:50051"
MARKER = "::walkthrough-command"
MARKER_LINE = re.compile(rf"^{MARKER} (\d+)::$", flags=re.M)


def walkthrough_commands() -> list[str]:
    """Every command line of the ```sh blocks, in order (a trailing backslash continues a line)."""
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    lines = [line for block in blocks for line in block.replace("\\\n", "").splitlines()]
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def script(commands: list[str], address: str) -> str:
    """One bash script: strict mode, then each command after a marker line on stdout and stderr."""
    parts = ["set -euo pipefail"]
    for index, command in enumerate(commands):
        parts.append(f"echo '{MARKER} {index}::'; echo '{MARKER} {index}::' >&2")
        parts.append(command.replace(DOCUMENTED_ADDRESS, address))
    return "\n".join(parts) + "\n"


def split_by_marker(text: str) -> dict[int, str]:
    """Output after each marker line, by command index."""
    pieces = MARKER_LINE.split(text)
    return {int(pieces[i]): pieces[i + 1] for i in range(1, len(pieces) - 1, 2)}


async def test_every_walkthrough_command_runs_verbatim(server: App, tmp_path: Path) -> None:
    commands = walkthrough_commands()
    for rpc in (
        " list",
        " describe ",
        "Registry/Register",
        "Registry/Lookup",
        "Bus/Publish",
        "Bus/Subscribe",
        "Workflow/RegisterDefinition",
        "Workflow/StartProcess",
        "Workflow/SubscribeTasks",
        "Workflow/CompleteTask",
        "Workflow/ListProcesses",
        "Workflow/GetProcess",
    ):
        assert any(rpc in c for c in commands), f"the walkthrough has no {rpc.strip()} command"
    assert all(DOCUMENTED_ADDRESS in c for c in commands if c.startswith("grpcurl ")), "one server address"

    bin_dir = Path(sys.executable).parent
    assert Path(grpcurl()).parent == bin_dir, "grpcurl must be the venv's"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-c", script(commands, server.address)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=90,
        check=False,
    )

    errors = split_by_marker(result.stderr)
    if result.returncode != 0:
        failed = max(errors, default=0)
        raise AssertionError(
            f"exit status {result.returncode} at command {failed}:\n{commands[failed]}\n"
            f"stderr:\n{errors.get(failed, result.stderr)}"
        )
    outputs = split_by_marker(result.stdout)
    assert sorted(outputs) == list(range(len(commands))), "every command ran"

    def output_of(fragment: str, *, last: bool = False) -> str:
        found = [outputs[i] for i, c in enumerate(commands) if fragment in c]
        assert found, fragment
        return found[-1] if last else found[0]

    assert "hms.mgmt.v1.Workflow" in output_of(" list").split()
    assert '"instance_id": "greeter-1"' in output_of("Registry/Lookup")

    data = output_of("| base64").strip()
    assert any(f'"data": "{data}"' in c for c in commands if "Bus/Publish" in c), "printf | base64 made it"
    subscribed = output_of("Bus/Subscribe")
    assert '"subject": "demo.greetings"' in subscribed and f'"data": "{data}"' in subscribed

    assert '"name": "greet"' in output_of("Workflow/RegisterDefinition")
    assert '"task_token"' in output_of("Workflow/SubscribeTasks")
    token = re.search(r"task token: (\S+)", output_of("echo "))
    assert token is not None, "the captured task token is empty"
    assert token.group(1) in output_of("Workflow/SubscribeTasks")
    assert '"result": "REPORT_RESULT_ACCEPTED"' in output_of("Workflow/CompleteTask")

    finished = output_of("Workflow/ListProcesses")
    assert '"business_key": "greet-1"' in finished and '"state": "PROCESS_STATE_COMPLETED"' in finished
    assert '"greeting": "hi"' in finished
    assert '"state": "PROCESS_STATE_COMPLETED"' in output_of("Workflow/GetProcess")
    assert "HISTORY_EVENT_TYPE_PROCESS_COMPLETED" in output_of("Workflow/GetHistory", last=True)
