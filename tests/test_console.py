"""The operations console over HTTP: pages, filters, live streams, actions, CSRF and tokens.

The same console in a real browser is tested in test_console_browser.py.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path

import pytest

from control_plane.models.bus import StoredMessage
from control_plane.server import App, running
from control_plane.settings import Settings
from hms_mgmt import Client, HistoryEventType
from hms_mgmt.types import Process, ProcessState
from tests.conftest import CLI_OUTPUT
from tests.console_support import WAITER, console_session, dead_letter, write_tokens


@pytest.fixture
def url(server: App) -> str:
    assert server.http_url is not None
    return server.http_url


async def start_waiters(client: Client, *keys: str) -> list[Process]:
    await client.workflow.apply(WAITER)
    return [await client.workflow.start("waiter", {"n": n}, business_key=key) for n, key in enumerate(keys)]


async def test_every_page_renders_from_the_cores(server: App, client: Client, url: str) -> None:
    [process] = await start_waiters(client, "A-17")
    await client.registry.register("DocumentService", "127.0.0.1:7001", instance_id="docs-1", version="1.4.0")
    await client.bus.publish("permit.a17.submitted", b"{}")

    async with console_session(url) as browser:
        pages = {
            path: await browser.get(path) for path in ("/", "/processes", "/definitions", "/registry", "/bus")
        }
        status, page = await browser.get(f"/processes/{process.id}")

    assert {path: status for path, (status, _) in pages.items()} == dict.fromkeys(pages, 200)
    assert 'data-state-count="running"' in pages["/"][1]
    assert "messages/s published over the last minute" in pages["/"][1]
    assert "A-17" in pages["/processes"][1] and 'data-state="running"' in pages["/processes"][1]
    assert "wait_signal: go" in pages["/definitions"][1]
    assert 'data-running="1">1 running, 0 ended' in pages["/definitions"][1]
    assert 'data-instance="docs-1"' in pages["/registry"][1] and "1.4.0" in pages["/registry"][1]
    assert 'data-subject="permit.a17.submitted"' in pages["/bus"][1]
    assert status == 200
    assert 'data-step="wait" data-state="waiting"' in page  # the graph box, coloured as running
    assert 'class="node step kind-wait_signal running"' in page
    assert 'id="signal-form"' in page and 'id="cancel-form"' in page
    assert "process_started" in page  # the history timeline
    assert "Content-Security-Policy" not in page


async def test_pages_forbid_inline_scripts_and_framing(url: str) -> None:
    async with console_session(url) as browser, browser.http.get(url + "/") as response:
        policy = response.headers["Content-Security-Policy"]

    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy


async def test_an_unknown_process_or_a_bad_filter_gets_a_page_saying_so(url: str) -> None:
    async with console_session(url) as browser:
        missing = await browser.get("/processes/no-such-process")
        bad_state = await browser.get("/processes?state=sleeping")
        bad_page = await browser.get("/processes?before=%%%")

    assert missing[0] == 404 and "there is no process no-such-process" in missing[1]
    assert bad_state[0] == 400 and "unknown state" in bad_state[1]
    assert bad_page[0] == 400


async def test_processes_are_filtered_by_state_definition_and_business_key_prefix(
    client: Client, url: str
) -> None:
    first, second, other = await start_waiters(client, "A-17", "A-170", "B-1")
    await client.workflow.signal(second.id, "go", {"answer": 42})
    await client.workflow.wait(second.id)

    async with console_session(url) as browser:
        by_prefix = (await browser.get("/processes?key=A-17"))[1]
        by_state = (await browser.get("/processes?state=completed"))[1]
        by_definition = (await browser.get("/processes?definition=nothing"))[1]
        by_version = (await browser.get("/processes?definition=waiter&version=1&state=running"))[1]
        future = (await browser.get("/processes?from=2999-01-01T00:00"))[1]
        past = (await browser.get("/processes?to=2000-01-01"))[1]
        now = (await browser.get("/processes?from=2000-01-01T00:00&to=2999-01-01T00:00&key=B"))[1]
        bad_time = await browser.get("/processes?from=yesterday")

    assert first.id in by_prefix and second.id in by_prefix and other.id not in by_prefix
    assert second.id in by_state and first.id not in by_state
    assert "No process matches." in by_definition
    assert first.id in by_version and other.id in by_version and second.id not in by_version
    assert "No process matches." in future and "No process matches." in past
    assert other.id in now and first.id not in now
    assert bad_time[0] == 400 and "UTC time" in bad_time[1]


async def test_the_processes_page_pages_from_newest_to_oldest(server: App, client: Client, url: str) -> None:
    processes = await start_waiters(client, *(f"K-{n:03d}" for n in range(55)))

    async with console_session(url) as browser:
        first = (await browser.get("/processes"))[1]
        link = first.split('" id="older-page"', 1)[0].rsplit('href="', 1)[1].replace("&amp;", "&")
        second = (await browser.get(link))[1]
        live = second.split('data-live="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
        async with browser.events(live) as events:
            _, patch = await events.next()

    newest, oldest = processes[-1], processes[0]
    assert newest.id in first and oldest.id not in first
    assert oldest.id in second and newest.id not in second
    assert first.count("data-process=") == 50 and second.count("data-process=") == 5
    assert 'id="older-page"' not in second
    assert oldest.id in patch["process-rows"] and newest.id not in patch["process-rows"]


async def test_a_signal_sent_from_the_console_moves_the_process_on_and_records_who(
    client: Client, url: str
) -> None:
    [process] = await start_waiters(client, "A-17")

    async with console_session(url) as browser:
        await browser.get(f"/processes/{process.id}")
        status, answer = await browser.post(
            f"/processes/{process.id}/signal", {"name": "go", "payload": '{"answer": 42}'}
        )

    assert status == 200 and answer["ok"], answer
    assert answer["event"]["type"] == "signal_received" and answer["event"]["step_id"] == "wait"
    final = await client.workflow.wait(process.id)
    assert final.state == ProcessState.COMPLETED
    history = await client.workflow.history(process.id)
    received = next(e for e in history if e.type == HistoryEventType.SIGNAL_RECEIVED)
    assert received.details["by"] == {"name": "", "role": "", "via": "console"}


async def test_a_cancel_from_the_console_ends_the_process_cancelled(client: Client, url: str) -> None:
    [process] = await start_waiters(client, "A-17")

    async with console_session(url) as browser:
        await browser.get(f"/processes/{process.id}")
        status, answer = await browser.post(f"/processes/{process.id}/cancel", {"reason": "withdrawn"})
        again = await browser.post(f"/processes/{process.id}/signal", {"name": "go", "payload": "{}"})

    assert status == 200 and answer["event"]["type"] == "process_cancel_requested"
    assert "reason: withdrawn" in answer["event"]["summary"]
    assert (await client.workflow.status(process.id)).state == ProcessState.CANCELLED
    assert again[0] == 409 and "already ended" in again[1]["error"]


async def test_an_action_without_the_pages_csrf_token_is_refused_and_changes_nothing(
    client: Client, url: str
) -> None:
    [process] = await start_waiters(client, "A-17")
    events_before = len(await client.workflow.history(process.id))

    async with console_session(url) as browser:
        no_session = await browser.post(f"/processes/{process.id}/cancel", {}, csrf="")
        await browser.get(f"/processes/{process.id}")
        no_token = await browser.post(f"/processes/{process.id}/cancel", {}, csrf="")
        wrong_token = await browser.post(f"/processes/{process.id}/cancel", {}, csrf="0" * 64)
        other_site = await browser.post(f"/processes/{process.id}/cancel", {}, origin="https://evil.example")
    async with console_session(url) as other_browser:
        await other_browser.get("/")
        stolen = await other_browser.post(f"/processes/{process.id}/cancel", {}, csrf=browser.csrf)

    assert [r[0] for r in (no_session, no_token, wrong_token, other_site, stolen)] == [403] * 5
    assert (await client.workflow.status(process.id)).state == ProcessState.RUNNING
    assert len(await client.workflow.history(process.id)) == events_before


async def test_a_bad_signal_payload_is_refused_with_the_reason(client: Client, url: str) -> None:
    [process] = await start_waiters(client, "A-17")

    async with console_session(url) as browser:
        await browser.get(f"/processes/{process.id}")
        not_json = await browser.post(f"/processes/{process.id}/signal", {"name": "go", "payload": "{nope"})
        not_object = await browser.post(f"/processes/{process.id}/signal", {"name": "go", "payload": "[1]"})
        no_name = await browser.post(f"/processes/{process.id}/signal", {"name": "", "payload": "{}"})
        gone = await browser.post("/processes/nope/signal", {"name": "go", "payload": "{}"})

    assert not_json[0] == 400 and "not JSON" in not_json[1]["error"]
    assert not_object[0] == 400 and "JSON object" in not_object[1]["error"]
    assert no_name[0] == 400 and "name" in no_name[1]["error"]
    assert gone[0] == 404
    assert (await client.workflow.status(process.id)).state == ProcessState.RUNNING


async def test_dead_letters_are_listed_and_replayed_once_to_their_subject(client: Client, url: str) -> None:
    letter = await dead_letter(client, "permit.a17.paid", b'{"amount": 12}')
    sequence = str(letter.message.sequence)

    async with console_session(url) as browser:
        bus_page = (await browser.get("/bus"))[1]
        status, page = await browser.get("/bus/dead-letters?subject=%24DLQ.audit")
        async with client.bus.subscribe("permit.a17.paid") as replays:
            replayed = await browser.post("/bus/dead-letters/replay", {"sequence": sequence})
            again = await browser.post("/bus/dead-letters/replay", {"sequence": sequence})
            async with asyncio.timeout(10):
                copy = await anext(replays)
        not_a_letter = await browser.post("/bus/dead-letters/replay", {"sequence": "1"})
        bad_subject = await browser.get("/bus/dead-letters?subject=permit.a17.paid")

    assert 'href="/bus/dead-letters?subject=%24DLQ.audit"' in bus_page
    assert status == 200 and f'data-sequence="{sequence}"' in page
    assert "terminated: bad" in page and "permit.a17.paid" in page and "&#34;amount&#34;: 12" in page
    assert replayed[0] == 200 and replayed[1]["message"].startswith("replayed to permit.a17.paid")
    assert again[0] == 200 and again[1]["sequence"] == replayed[1]["sequence"]  # deduplicated
    assert copy.message.data == b'{"amount": 12}' and copy.message.headers["app"] == "1"
    assert copy.message.headers["hms-replayed-from"] == f"$DLQ.audit#{sequence}"
    assert not any(key.startswith("hms-dlq-") for key in copy.message.headers)
    assert not_a_letter[0] == 404
    assert bad_subject[0] == 400


# -- live -------------------------------------------------------------------------------------------


async def test_the_process_stream_patches_the_page_after_each_transition(client: Client, url: str) -> None:
    [process] = await start_waiters(client, "A-17")

    async with console_session(url) as browser, browser.events(f"/live/processes/{process.id}") as events:
        name, first = await events.next()
        assert name == "patch" and "state-running" in first["process-header"]
        await client.workflow.signal(process.id, "go", {"answer": 42})
        header = await events.patch_where("process-header", "completed")
        ended = await events.next()

    assert "state-completed" in header
    assert ended[0] == "end"  # the process is over: the page stops listening


class RemovalSignalling(list[Callable[[list[StoredMessage]], None]]):
    """The Bus log's listener list, telling the test when the console's stream takes its listener off."""

    def __init__(self, items: list[Callable[[list[StoredMessage]], None]]) -> None:
        super().__init__(items)
        self.removed = asyncio.Event()

    def remove(self, listener: Callable[[list[StoredMessage]], None]) -> None:
        super().remove(listener)
        self.removed.set()


async def test_the_processes_stream_shows_a_state_change_and_then_listens_no_more(
    server: App, client: Client, url: str
) -> None:
    [process] = await start_waiters(client, "A-17")
    watched = RemovalSignalling(server.bus.log.listeners)
    server.bus.log.listeners = watched
    listeners = len(watched)

    async with console_session(url) as browser:
        async with browser.events("/live/processes?definition=waiter") as events:
            name, first = await events.next()
            assert name == "patch" and 'data-state="running"' in first["process-rows"]
            assert len(server.bus.log.listeners) == listeners + 1
            await client.workflow.signal(process.id, "go", {"answer": 1})
            rows = await events.patch_where("process-rows", 'data-state="completed"')
        assert process.id in rows
        # The stream notices the closed connection at its next write; make one happen.
        await client.workflow.start("waiter", {"n": 9}, business_key="A-18")
        # The handler's `finally` removes its listener once its write to the closed socket fails.
        await asyncio.wait_for(watched.removed.wait(), timeout=10)
        assert len(watched) == listeners


async def test_an_instance_going_down_leaves_the_registry_stream_with_its_reason(
    client: Client, url: str
) -> None:
    await client.registry.register("DocumentService", "127.0.0.1:7001", instance_id="docs-1")
    await client.registry.register("DocumentService", "127.0.0.1:7002", instance_id="docs-2")

    async with console_session(url) as browser, browser.events("/live/registry") as events:
        name, first = await events.next()
        assert name == "patch" and 'data-instance="docs-2"' in first["registry-services"]
        loop = asyncio.get_running_loop()
        gone_at = loop.time()
        await client.registry.deregister("DocumentService", "docs-2")
        async with asyncio.timeout(1.0):
            while 'data-instance="docs-2"' in events.regions["registry-services"]:
                await events.next()
        took = loop.time() - gone_at
        departures = await events.patch_where("registry-departures", 'data-gone="docs-2"', timeout_s=1.0)

    assert 'data-instance="docs-1"' in events.regions["registry-services"]
    assert "deregistered" in departures
    assert took < 1.0


# -- tokens -----------------------------------------------------------------------------------------


@pytest.fixture
async def guarded(settings: Settings, tmp_path: Path) -> AsyncIterator[App]:
    """A control plane that requires bearer tokens (admin, client and worker ones)."""
    async with running(replace(settings, tokens_file=write_tokens(tmp_path))) as app:
        yield app


async def test_with_tokens_the_console_asks_for_one_and_keeps_it_in_an_httponly_cookie(guarded: App) -> None:
    assert guarded.http_url is not None
    async with console_session(guarded.http_url) as browser:
        before = await browser.get("/processes?state=running")
        refused = await browser.log_in("not-a-token")
        accepted = await browser.log_in("client-secret")
        cookie = next(c for c in browser.http.cookie_jar if c.key == "mgmt_console_token")
        after = await browser.get("/processes?state=running")

    assert before[0] == 303
    assert refused == 401 and accepted == 303
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert after[0] == 200 and "portal" in after[1] and ">client<" in after[1]


async def test_a_worker_token_sees_no_actions_and_a_forged_action_is_refused(guarded: App) -> None:
    assert guarded.http_url is not None
    async with Client(guarded.address, token="admin-secret") as admin:
        [process] = await start_waiters(admin, "A-17")
        async with console_session(guarded.http_url) as browser:
            assert await browser.log_in("worker-secret") == 303
            status, page = await browser.get(f"/processes/{process.id}")
            nav = (await browser.get("/"))[1]
            listing = await browser.get("/processes")
            forged = await browser.post(f"/processes/{process.id}/cancel", {"reason": "forged"})
            forged_signal = await browser.post(f"/processes/{process.id}/signal", {"name": "go"})
        final = await admin.workflow.status(process.id)

    assert status == 200 and "A-17" in page
    assert 'id="signal-form"' not in page and 'id="cancel-form"' not in page
    assert 'id="process-history"></div>' in page  # GetHistory is not a worker's right either
    assert 'href="/processes"' not in nav and 'href="/registry"' in nav
    assert listing[0] == 403
    assert forged[0] == 403 and "worker may not" in forged[1]["error"]
    assert forged_signal[0] == 403
    assert final.state == ProcessState.RUNNING


async def test_an_action_is_recorded_with_the_name_and_role_of_its_token(guarded: App) -> None:
    assert guarded.http_url is not None
    async with Client(guarded.address, token="admin-secret") as admin:
        [process] = await start_waiters(admin, "A-17")
        async with console_session(guarded.http_url) as browser:
            await browser.log_in("client-secret")
            await browser.get(f"/processes/{process.id}")
            status, answer = await browser.post(f"/processes/{process.id}/cancel", {"reason": "duplicate"})
        history = await admin.workflow.history(process.id)

    assert status == 200, answer
    assert "by portal (client) via console" in answer["event"]["summary"]
    requested = next(e for e in history if e.type == HistoryEventType.PROCESS_CANCEL_REQUESTED)
    assert requested.details["by"] == {"name": "portal", "role": "client", "via": "console"}


async def test_logging_out_forgets_the_token(guarded: App) -> None:
    assert guarded.http_url is not None
    async with console_session(guarded.http_url) as browser:
        await browser.log_in("admin-secret")
        await browser.get("/")
        status, _ = await browser.post("/logout", {"csrf": browser.csrf})
        after = await browser.get("/")

    assert status == 303 and after[0] == 303


async def test_live_streams_need_a_token_too(guarded: App) -> None:
    assert guarded.http_url is not None
    async with (
        console_session(guarded.http_url) as browser,
        browser.http.get(guarded.http_url + "/live/registry") as response,
    ):
        assert response.status == 401


# -- mgmt console ----------------------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "control_plane", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "MGMT_CONSOLE_URL": "", **(env or {})},
    )


@CLI_OUTPUT
async def test_mgmt_console_prints_the_url_of_a_console_that_answers(url: str) -> None:
    result = await asyncio.to_thread(run_cli, "console", "--url", url)

    assert result.returncode == 0, result.stderr
    assert result.stdout == url + "/\n"  # not a terminal: printed, never opened


@CLI_OUTPUT
async def test_mgmt_console_says_when_nothing_answers(url: str) -> None:
    derived = await asyncio.to_thread(run_cli, "console", "--server", "127.0.0.2:1", "--no-open")
    not_http = await asyncio.to_thread(run_cli, "console", "--url", "file:///etc/passwd")

    assert derived.stdout == "http://127.0.0.2:50052/\n"
    assert derived.returncode == 1 and "nothing answers at http://127.0.0.2:50052/" in derived.stderr
    assert not_http.returncode == 2 and "http:// or https://" in not_http.stderr


async def test_open_live_pages_do_not_hold_up_a_shutdown(settings: Settings) -> None:
    server = AsyncExitStack()
    app = await server.enter_async_context(running(settings))
    assert app.http_url is not None
    try:
        async with Client(app.address) as client:
            [process] = await start_waiters(client, "A-17")
        async with (
            console_session(app.http_url) as browser,
            browser.events(f"/live/processes/{process.id}") as one,
            browser.events("/live/processes") as many,
            browser.events("/live/registry") as registry,
        ):
            for stream in (one, many, registry):
                assert (await stream.next())[0] == "patch"
            stopping = asyncio.ensure_future(server.aclose())
            async with asyncio.timeout(10):
                for stream in (one, many, registry):
                    with pytest.raises(EOFError):
                        while True:
                            await stream.next()
                await stopping
    finally:
        await server.aclose()


async def test_a_replicas_console_follows_what_another_replica_does(
    settings: Settings, postgres_url: str
) -> None:
    shared = replace(settings, store_url=postgres_url)
    async with (
        running(replace(shared, data_dir=settings.data_dir / "a")) as a,
        running(replace(shared, data_dir=settings.data_dir / "b")) as b,
        Client(a.address) as on_a,
    ):
        assert b.http_url is not None
        [process] = await start_waiters(on_a, "A-17")
        async with (
            console_session(b.http_url) as browser,
            browser.events(f"/live/processes/{process.id}") as one,
            browser.events("/live/processes") as many,
            browser.events("/live/registry") as registry,
        ):
            await many.patch_where("process-rows", process.id)
            await registry.next()
            await on_a.workflow.signal(process.id, "go", {"answer": 1})
            await on_a.registry.register("DocumentService", "127.0.0.1:7001", instance_id="docs-1")
            await one.patch_where("process-header", "state-completed")
            await many.patch_where("process-rows", 'data-state="completed"')
            await registry.patch_where("registry-services", 'data-instance="docs-1"')
