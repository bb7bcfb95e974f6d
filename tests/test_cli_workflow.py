"""`mgmt workflow ...` as a real child process against a control plane served in the test's event loop."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from control_plane.server import App
from hms_mgmt import Client, HistoryEventType
from tests.conftest import CLI_OUTPUT

pytestmark = CLI_OUTPUT

WAIT_THEN_NAP = """
name: cli-demo
description: waits for "go", then naps
steps:
  - id: wait
    wait_signal: {name: go, timeout: 1h}
  - id: nap
    sleep: 10ms
"""

INVALID = """
name: cli-demo
steps:
  - id: wait
    wait_signal: {name: go, timeout: forever}
  - id: wait
    sleep: 10ms
"""


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "control_plane", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def workflow(server: App, *args: str) -> subprocess.CompletedProcess[str]:
    """`mgmt workflow <args> --server <server>`, run off the event loop that serves it."""
    return await asyncio.to_thread(run_cli, "workflow", *args, "--server", server.address)


@asynccontextmanager
async def spawned(server: App, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """`mgmt workflow <args>` as a running child whose stdout the test reads line by line."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "control_plane",
        "workflow",
        *args,
        "--server",
        server.address,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield child
    finally:
        if child.returncode is None:
            child.kill()
        await child.communicate()


async def read_until(child: asyncio.subprocess.Process, text: str) -> list[str]:
    """Lines of the child's stdout up to and including the first that contains `text`."""
    assert child.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(20):
        while not lines or text not in lines[-1]:
            line = (await child.stdout.readline()).decode()
            assert line, f"output ended before {text!r}: {lines}"
            lines.append(line.rstrip("\n"))
    return lines


async def finish(child: asyncio.subprocess.Process) -> tuple[int, list[str], str]:
    """The child's exit status, the rest of its stdout, and its stderr."""
    async with asyncio.timeout(20):
        out, err = await child.communicate()
    assert child.returncode is not None
    return child.returncode, out.decode().splitlines(), err.decode()


async def test_apply_registers_a_version_then_reports_it_unchanged(server: App, tmp_path: Path) -> None:
    source = tmp_path / "cli-demo.yaml"
    source.write_text(WAIT_THEN_NAP)

    first = await workflow(server, "apply", str(source))
    again = await workflow(server, "apply", str(source))
    source.write_text(WAIT_THEN_NAP.replace("10ms", "20ms"))
    checked = await workflow(server, "apply", str(source), "--validate-only")
    changed = await workflow(server, "apply", str(source))

    assert (first.returncode, first.stdout) == (0, "cli-demo: version 1 (created)\n"), first.stderr
    assert (again.returncode, again.stdout) == (0, "cli-demo: version 1 (unchanged)\n"), again.stderr
    assert checked.stdout == "cli-demo: version 2 (valid, would be created)\n", checked.stderr
    assert changed.stdout == "cli-demo: version 2 (created)\n", changed.stderr


async def test_apply_of_an_invalid_definition_names_each_problem_by_path(
    server: App, client: Client, tmp_path: Path
) -> None:
    source = tmp_path / "bad.yaml"
    source.write_text(INVALID)

    result = await workflow(server, "apply", str(source))
    graph = await workflow(server, "graph", "cli-demo")

    assert result.returncode == 1 and result.stdout == ""
    problems = result.stderr.splitlines()
    assert any(p.startswith("steps[0].wait_signal.timeout: not a duration") for p in problems), problems
    assert any(p.startswith("steps[1].id: duplicate step id 'wait'") for p in problems), problems
    assert graph.returncode == 1 and "not found" in graph.stderr  # nothing was stored


async def test_start_status_ls_signal_and_history_of_a_process(server: App, client: Client) -> None:
    await client.workflow.apply(WAIT_THEN_NAP)

    started = await workflow(server, "start", "cli-demo", "--input", '{"order": 7}', "--key", "order-7")
    process_id = started.stdout.splitlines()[0]
    again = await workflow(server, "start", "cli-demo", "--key", "order-7")
    status = await workflow(server, "status", process_id)
    running = await workflow(server, "ls", "--definition", "cli-demo", "--state", "running", "started")
    done_before = await workflow(server, "ls", "--state", "COMPLETED")
    signal = await workflow(server, "signal", process_id, "go", "--payload", '{"ok": true}', "--id", "s-1")
    repeat = await workflow(server, "signal", process_id, "go", "--id", "s-1")
    async with asyncio.timeout(10):
        await client.workflow.wait(process_id)
    history = await workflow(server, "history", process_id)
    final = await workflow(server, "status", process_id)
    done_after = await workflow(server, "ls", "--state", "completed")

    assert started.returncode == 0, started.stderr
    assert uuid.UUID(process_id) and started.stdout.splitlines()[1] == "state: RUNNING"
    assert again.stdout.splitlines()[0] == process_id  # the business key names the same process
    assert status.returncode == 0, status.stderr
    assert "cli-demo@1" in status.stdout and "RUNNING" in status.stdout and "order-7" in status.stdout
    (wait_line,) = [line for line in status.stdout.splitlines() if line.strip().startswith("wait ")]
    assert "WAITING" in wait_line and "waiting for go" in wait_line
    header, *rows = running.stdout.splitlines()
    assert header.split() == ["ID", "DEFINITION", "STATE", "KEY", "CREATED"]
    assert [row.split()[:4] for row in rows] == [[process_id, "cli-demo@1", "RUNNING", "order-7"]]
    assert process_id not in done_before.stdout and process_id in done_after.stdout
    assert signal.stdout == "signal go: delivered\n", signal.stderr
    assert repeat.stdout == "signal go: duplicate, ignored\n", repeat.stderr
    events = [line.split(maxsplit=5) for line in history.stdout.splitlines()]
    assert [e[2] for e in events] == [
        "process_started",
        "process_running",
        "step_started",
        "signal_received",
        "step_completed",
        "step_started",
        "step_completed",
        "process_completed",
    ]
    assert [int(e[0]) for e in events] == list(range(1, 9))
    assert json.loads(events[0][5]) == {"input": {"order": 7}, "business_key": "order-7"}
    assert json.loads(events[3][5])["payload"] == {"ok": True} and events[3][3] == "wait"
    assert "COMPLETED" in final.stdout and "output" in final.stdout


async def test_start_wait_follows_the_process_to_completed_and_exits_0(server: App, client: Client) -> None:
    await client.workflow.apply(WAIT_THEN_NAP)

    async with spawned(server, "start", "cli-demo", "--wait") as child:
        process_id = (await read_until(child, "state: "))[0]
        await read_until(child, "step_started")  # following: the wait step is in place
        signal = await workflow(server, "signal", process_id, "go")
        code, rest, stderr = await finish(child)

    assert signal.returncode == 0, signal.stderr
    assert code == 0, stderr
    assert any("signal_received" in line and "signal go" in line for line in rest), rest
    assert any("process_completed" in line for line in rest)
    assert rest[-1] == f"{process_id} COMPLETED"


async def test_watch_of_a_process_cancelled_meanwhile_shows_the_cancel_and_exits_1(
    server: App, client: Client
) -> None:
    await client.workflow.apply(WAIT_THEN_NAP)
    process = await client.workflow.start("cli-demo")

    async with spawned(server, "watch", process.id) as child:
        seen = await read_until(child, "step_started")  # history so far: the watch is in place
        cancel = await workflow(server, "cancel", process.id, "--reason", "no longer needed")
        code, rest, stderr = await finish(child)
    status = await workflow(server, "status", process.id)
    graph = await workflow(server, "graph", "cli-demo", "--process", process.id)
    plain = await workflow(server, "graph", "cli-demo")
    wrong = await workflow(server, "graph", "other", "--process", process.id)

    assert "process_started" in seen[0]
    assert cancel.stdout == f"{process.id} CANCELLED\n", cancel.stderr
    assert code == 1, stderr
    assert any("process_cancel_requested" in line and "reason: no longer needed" in line for line in rest)
    assert any("process_cancelled" in line for line in rest)
    assert rest[-1] == f"{process.id} CANCELLED (no longer needed)"
    assert "CANCELLED" in status.stdout and "no longer needed" in status.stdout
    assert graph.returncode == 0 and graph.stdout.startswith("flowchart TD\n"), graph.stderr
    assert "    class s_wait failed" in graph.stdout.splitlines()
    assert "    class s_nap not_reached" in graph.stdout.splitlines()
    assert plain.stdout.startswith("flowchart TD\n") and "classDef" not in plain.stdout
    assert wrong.returncode == 2 and "runs 'cli-demo'" in wrong.stderr


async def test_status_shows_parent_children_and_map_progress_and_ls_lists_children(
    server: App, client: Client
) -> None:
    await client.workflow.apply(WAIT_THEN_NAP)
    await client.workflow.apply(
        """
name: cli-parent
steps:
  - id: sub
    call: {definition: cli-demo}
  - id: each
    map:
      items: "input.xs"
      max_concurrency: 2
      steps:
        - {id: look, task: {service: Nobody, type: look}}
"""
    )
    parent = await client.workflow.start("cli-parent", {"xs": [1, 2, 3]})
    (child_id,) = (await client.workflow.status(parent.id)).child_process_ids
    await client.workflow.signal(child_id, "go", {})
    async with asyncio.timeout(10):
        async for frame in client.workflow.watch(parent.id):
            if any(e.step_id == "each" and e.type == HistoryEventType.STEP_STARTED for e in frame.events):
                break

    status = await workflow(server, "status", parent.id)
    child_status = await workflow(server, "status", child_id)
    children = await workflow(server, "ls", "--parent", parent.id)

    assert f"child       {child_id}" in status.stdout, status.stderr
    (each_line,) = [line for line in status.stdout.splitlines() if line.strip().startswith("each ")]
    assert "items 0 completed, 0 failed, 2 running of 3" in each_line
    (sub_line,) = [line for line in status.stdout.splitlines() if line.strip().startswith("sub ")]
    assert f"child {child_id}" in sub_line
    assert f"parent      {parent.id} (step sub)" in child_status.stdout
    _, *rows = children.stdout.splitlines()
    assert [row.split()[:2] for row in rows] == [[child_id, "cli-demo@1"]]
