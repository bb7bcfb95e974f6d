"""`mgmt schedule ...` as a real child process against a control plane served in the test's event loop."""

from __future__ import annotations

import asyncio
import json
import subprocess

from control_plane.server import App
from hms_mgmt import Client
from tests.conftest import CLI_OUTPUT
from tests.test_cli_workflow import run_cli

pytestmark = CLI_OUTPUT

WAITING = """
name: cli-sched
steps:
  - id: wait
    wait_signal: {name: go}
"""


async def schedule(server: App, *args: str) -> subprocess.CompletedProcess[str]:
    """`mgmt schedule <args> --server <server>`, run off the event loop that serves it."""
    return await asyncio.to_thread(run_cli, "schedule", *args, "--server", server.address)


async def test_the_schedule_verbs(server: App, client: Client) -> None:
    await client.workflow.apply(WAITING)
    created = await schedule(
        server,
        "create",
        "nightly",
        "--definition",
        "cli-sched",
        "--cron",
        "0 1 * * *",
        "--tz",
        "Europe/Berlin",
        "--jitter",
        "5m",
        "--overlap",
        "buffer-one",
        "--catchup-window",
        "1h",
        "--input",
        '{"reminder": true}',
        "--paused",
        "--note",
        "set up by ops",
    )
    assert created.returncode == 0, created.stderr
    assert "cron '0 1 * * *' Europe/Berlin" in created.stdout
    assert "overlap     buffer-one" in created.stdout
    assert "paused  (set up by ops)" in created.stdout

    listed = await schedule(server, "ls", "-o", "json")
    (item,) = json.loads(listed.stdout)
    assert item["id"] == "nightly" and item["overlap"] == "OVERLAP_POLICY_BUFFER_ONE"
    assert item["spec"]["jitter"] == "300s" and item["catchup_window"] == "3600s"
    table = await schedule(server, "ls")
    assert table.stdout.splitlines()[1].split()[:3] == ["nightly", "paused", "cli-sched"]

    triggered = await schedule(server, "trigger", "nightly", "--request-id", "r1", "-o", "json")
    reply = json.loads(triggered.stdout)
    assert reply["outcome"] == "TRIGGER_OUTCOME_STARTED"
    process = await client.workflow.status(reply["process_id"])
    assert process.business_key == "schedule:nightly:trigger:r1"
    again = await schedule(server, "trigger", "nightly", "--request-id", "r2")
    assert again.stdout.strip() == "nightly: buffered"

    unpaused = await schedule(server, "unpause", "nightly", "-o", "json")
    assert "paused" not in json.loads(unpaused.stdout)
    shown = await schedule(server, "show", "nightly")
    assert "state       active" in shown.stdout and "buffered    " in shown.stdout
    paused = await schedule(server, "pause", "nightly", "--note", "holiday")
    assert "paused  (holiday)" in paused.stdout

    removed = await schedule(server, "rm", "nightly")
    assert removed.stdout.strip() == "nightly: deleted"
    gone = await schedule(server, "show", "nightly")
    assert gone.returncode != 0 and "not found" in gone.stderr


async def test_bad_schedule_arguments_are_explained(server: App, client: Client) -> None:
    await client.workflow.apply(WAITING)
    bad_cron = await schedule(server, "create", "s", "--definition", "cli-sched", "--cron", "not cron")
    assert bad_cron.returncode != 0 and "spec.cron" in bad_cron.stderr
    neither = await schedule(server, "create", "s", "--definition", "cli-sched")
    assert neither.returncode == 2 and "--cron" in neither.stderr
    bad_every = await schedule(server, "create", "s", "--definition", "cli-sched", "--every", "soon")
    assert bad_every.returncode == 2 and "not a duration" in bad_every.stderr
