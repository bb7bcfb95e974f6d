"""The README's grpcurl commands work verbatim against a real control plane."""

from __future__ import annotations

import asyncio
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from control_plane.server import App
from tests.test_grpcurl import grpcurl

README = Path(__file__).resolve().parent.parent / "README.md"
DOCUMENTED_ADDRESS = "127.0.0.1:50051"


def readme_grpcurl_commands() -> list[list[str]]:
    """Every line starting with `grpcurl` inside a ```sh block of the README."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    return [
        shlex.split(line) for block in blocks for line in block.splitlines() if line.startswith("grpcurl ")
    ]


@pytest.mark.store_independent(
    reason="grpcurl's requests as the README writes them; servicer and store tests check the answers on each store"
)
async def test_every_readme_grpcurl_command_succeeds(server: App) -> None:
    commands = readme_grpcurl_commands()
    assert len(commands) >= 5

    outputs = []
    for argv in commands:
        argv = [grpcurl(), *(server.address if a == DOCUMENTED_ADDRESS else a for a in argv[1:])]
        result = await asyncio.to_thread(
            subprocess.run, argv, capture_output=True, text=True, timeout=60, check=False
        )
        # A stream cut by -max-time ends with DeadlineExceeded, which grpcurl reports as exit status 68.
        expected = {0, 68} if "-max-time" in argv else {0}
        assert result.returncode in expected, f"{shlex.join(argv)}\n{result.stderr}"
        outputs.append(result.stdout)

    lookup = next(o for o, c in zip(outputs, commands, strict=True) if c[-1].endswith("/Lookup"))
    assert '"instance_id": "docs-1"' in lookup
    subscribed = next(o for o, c in zip(outputs, commands, strict=True) if c[-1].endswith("/Subscribe"))
    assert '"subject": "permit.a17.submitted"' in subscribed
    listed = next(o for o, c in zip(outputs, commands, strict=True) if c[-1].endswith("/ListProcesses"))
    assert '"business_key": "app-1"' in listed and "PROCESS_STATE_RUNNING" in listed
