"""The operations console in a real headless Chromium, following the building-permit applications.

Skipped, with the reason printed, where Chromium, its driver or selenium is missing; .ci/run installs
them and sets MGMT_REQUIRE_BROWSER=1, which makes a missing browser a failure. Every page is
screenshotted (MGMT_CONSOLE_SCREENSHOTS=docs/console refreshes the README's pictures), and a page
that logs a console error fails the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from control_plane.server import App, running
from control_plane.settings import Settings
from hms_mgmt import Client, HistoryEventType
from hms_mgmt.types import Process, ProcessState
from services.permit.demo import APPLICATIONS, DEFINITION, DEFINITION_FILE
from services.permit.documents import DocumentService
from services.permit.inspections import InspectionService
from services.permit.notifications import NotificationService
from services.permit.payments import PaymentService
from services.permit.runtime import RunningService, serving, wait_passing
from tests.browser import Browser, chromium, require_browser, screenshot_dir
from tests.console_support import WAITER, dead_letter, write_tokens

pytestmark = [
    pytest.mark.timeout(180),
    # tests/test_console.py checks the console's pages and actions on both stores.
    pytest.mark.store_independent(reason="the pages in a browser: scripts, forms, what a token may click"),
]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """One Chromium for the module's tests (it takes a second or two to start)."""
    require_browser()
    with chromium(screenshot_dir(tmp_path_factory.mktemp("screenshots"))) as window:
        yield window


@pytest.fixture
async def window(browser: Browser) -> AsyncIterator[Browser]:
    """The browser as a new visitor; at the end no page may have logged a console error."""
    await browser.forget()
    yield browser
    errors = await browser.console_errors()
    await browser.forget()
    assert errors == []


async def no_console_errors(browser: Browser) -> None:
    assert await browser.console_errors() == []


async def waiting_for_inspection(client: Client, process_id: str) -> None:
    """Return once the process waits for the inspector's signal."""
    async with asyncio.timeout(30):
        async for frame in client.workflow.watch(process_id):
            if any(
                e.type == HistoryEventType.STEP_STARTED and e.step_id == "inspection" for e in frame.events
            ):
                return
    raise AssertionError(f"process {process_id} ended before it waited for the inspection")


async def start_application(client: Client, values: dict[str, Any]) -> Process:
    return await client.workflow.start(DEFINITION, values, business_key=str(values["application_id"]))


async def test_the_console_follows_the_permit_applications_in_a_browser(
    window: Browser, server: App, client: Client
) -> None:
    assert server.http_url is not None
    url = server.http_url
    async with AsyncExitStack() as stack:
        running_services: list[RunningService] = []
        for service in (DocumentService(), PaymentService(), InspectionService(), NotificationService()):
            running_service = await stack.enter_async_context(serving(client, service.spec()))
            await wait_passing(client, running_service.name, running_service.instance_id)
            running_services.append(running_service)
        await client.workflow.apply(await asyncio.to_thread(DEFINITION_FILE.read_text))

        # The three applications of the demo; the approved one waits for its inspector here.
        started = {a.label: await start_application(client, dict(a.input)) for a in APPLICATIONS}
        await waiting_for_inspection(client, started["approved"].id)
        for label in ("rejected", "refunded"):
            await client.workflow.wait(started[label].id)

        await window.open(url + "/")
        await window.screenshot("overview")
        await no_console_errors(window)

        # The processes page lists the three with their states.
        await window.open(url + "/processes")
        await window.live()
        states = await window.js(
            "return Object.fromEntries(Array.from(document.querySelectorAll('tr[data-process]'))"
            ".map(r => [r.dataset.process, r.dataset.state]))"
        )
        assert states == {
            started["approved"].id: "running",
            started["rejected"].id: "failed",
            started["refunded"].id: "compensated",
        }
        await window.screenshot("processes")
        await no_console_errors(window)

        # The compensated one's graph marks the refunded step (charge) compensated, the failed one failed.
        await window.open(f"{url}/processes/{started['refunded'].id}")
        await window.live()
        charge = await window.js("return document.querySelector('.graph [data-step=charge]').className")
        schedule = await window.js("return document.querySelector('.graph [data-step=schedule]').className")
        assert "compensated" in charge.split() and "failed" in schedule.split()
        await window.screenshot("process-compensated")
        await no_console_errors(window)

        # The inspector's result, sent from the page, moves the waiting process on, without a reload.
        approved = started["approved"].id
        await window.open(f"{url}/processes/{approved}")
        await window.live()
        await window.screenshot("process-waiting")
        assert await window.js("return document.getElementById('signal-name').value") == "inspection_result"
        await window.js("window.notReloaded = true")
        await window.fill("#signal-payload", '{"approved": true, "notes": "Foundations match the plans."}')
        await window.click("#signal-send")
        question = await window.accept_confirmation()
        assert "Send this signal" in question
        result = await window.wait_js(
            "const t = document.getElementById('signal-result').innerText;"
            "return t.includes('signal_received') && t"
        )
        assert "inspection" in result
        await window.wait_js("return document.querySelector('#process-header .state-completed') !== null", 30)
        assert await window.js("return window.notReloaded === true")
        assert await window.js(
            "return document.querySelector('.graph [data-step=notify_approved]').className"
        )
        await window.screenshot("process-completed")
        await no_console_errors(window)
        assert (await client.workflow.status(approved)).state == ProcessState.COMPLETED

        # Cancelling from the page ends a process CANCELLED.
        fourth = dict(APPLICATIONS[0].input, application_id="BP-2026-0420", applicant="Lea Novak")
        cancelled = await start_application(client, fourth)
        await waiting_for_inspection(client, cancelled.id)
        await window.open(f"{url}/processes/{cancelled.id}")
        await window.live()
        await window.fill("#cancel-reason", "the applicant withdrew")
        await window.click("#cancel-send")
        assert "Cancel process" in await window.accept_confirmation()
        await window.wait_js("return document.getElementById('cancel-result').innerText.includes('cancel')")
        await window.wait_js("return document.querySelector('#process-header .state-cancelled') !== null")
        assert (await client.workflow.status(cancelled.id)).state == ProcessState.CANCELLED
        history = await window.texts("#process-history .type-process_cancel_requested")
        assert history and "the applicant withdrew" in history[0]
        await no_console_errors(window)

        await window.open(url + "/definitions")
        await window.screenshot("definitions")

        # A dead letter, browsed and replayed to its subject from the page.
        letter = await dead_letter(client, "permit.BP-2026-0417.archived", b'{"archive": "failed"}')
        await window.open(url + "/bus")
        await window.screenshot("bus")
        await window.click("#bus-dead-letters a")
        await window.wait_js(
            f"return document.querySelector('tr[data-sequence=\"{letter.message.sequence}\"]')"
        )
        await window.screenshot("dead-letters")
        await window.click("form.replay button")
        assert "Publish message" in await window.accept_confirmation()
        replayed = await window.wait_js(
            "const t = document.querySelector('form.replay output').innerText; return t.includes('replayed') && t"
        )
        assert "replayed to permit.BP-2026-0417.archived" in replayed
        await no_console_errors(window)

        # An instance that goes away leaves the registry page within 2 s, with its reason.
        async with AsyncExitStack() as extra:
            spare = await extra.enter_async_context(serving(client, InspectionService().spec()))
            await wait_passing(client, spare.name, spare.instance_id)
            await window.open(url + "/registry")
            await window.live()
            row = f"tr[data-instance='{spare.instance_id}']"
            await window.wait_js(f'return document.querySelector("{row}") !== null')
            await window.screenshot("registry")
            loop = asyncio.get_running_loop()
            gone_at = loop.time()
        # Leaving the block stopped the spare instance's worker, which deregistered it.
        await window.wait_js(f'return document.querySelector("{row}") === null', 2.0)
        took = loop.time() - gone_at
        reason = await window.wait_js(
            f"const r = document.querySelector(\"tr[data-gone='{spare.instance_id}'] .reason\");"
            "return r && r.innerText"
        )
        assert took < 2.0 and reason == "deregistered"
        await no_console_errors(window)


@pytest.fixture
async def guarded(settings: Settings, tmp_path: Path) -> AsyncIterator[App]:
    """A control plane that requires bearer tokens."""
    async with running(replace(settings, tokens_file=write_tokens(tmp_path))) as app:
        yield app


async def test_a_token_without_the_right_to_act_sees_no_action_buttons(window: Browser, guarded: App) -> None:
    assert guarded.http_url is not None
    url = guarded.http_url
    async with Client(guarded.address, token="admin-secret") as admin:
        await admin.workflow.apply(WAITER)
        process = await admin.workflow.start("waiter", {}, business_key="A-17")

        await window.open(f"{url}/processes/{process.id}")
        assert await window.js("return location.pathname") == "/login"
        await window.screenshot("login")
        await window.fill("#token", "worker-secret")
        await window.click("#login-form button[type=submit]")
        await window.wait_js(f"return location.pathname === '/processes/{process.id}'")
        await window.live()
        # A worker token may read a process (GetProcess) but neither signal nor cancel it.
        assert await window.count("#signal-form, #cancel-form, #actions") == 0
        assert await window.texts("#identity") == ["payments worker"]
        assert await window.count("nav a[href='/processes']") == 0

        # A request forged with the page's own cookies and CSRF token is refused all the same.
        status = await window.js(
            "const form = new URLSearchParams({reason: 'forged'});"
            "const csrf = document.querySelector('meta[name=csrf-token]').content;"
            "return fetch(arguments[0], {method: 'POST', body: form, headers: {'X-CSRF-Token': csrf}})"
            ".then(r => r.status)",
            f"/processes/{process.id}/cancel",
        )
        assert status == 403
        await window.console_errors()  # Chromium reports the refused request itself as an error
        assert (await admin.workflow.status(process.id)).state == ProcessState.RUNNING

        # An admin (or client) token gets the buttons.
        await window.forget()
        await window.open(f"{url}/login")
        await window.fill("#token", "client-secret")
        await window.click("#login-form button[type=submit]")
        await window.wait_js("return location.pathname === '/'")
        await window.open(f"{url}/processes/{process.id}")
        assert await window.count("#signal-form") == 1 and await window.count("#cancel-form") == 1


@asynccontextmanager
async def other_site(html: str) -> AsyncIterator[str]:
    """A page served from another origin (another port); yields its URL."""

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


async def test_a_form_on_another_site_cannot_act_for_the_viewer(
    window: Browser, server: App, client: Client
) -> None:
    assert server.http_url is not None
    await client.workflow.apply(WAITER)
    process = await client.workflow.start("waiter", {}, business_key="A-17")
    await window.open(f"{server.http_url}/processes/{process.id}")  # the viewer has a session cookie
    target = f"{server.http_url}/processes/{process.id}/cancel"
    forged = (
        f'<form method="post" action="{target}"><input name="reason" value="forged"></form>'
        "<script>document.forms[0].submit()</script>"
    )

    async with other_site(forged) as evil:
        await window.open(evil)
        answer = await window.wait_js(
            f"return location.href.startsWith({server.http_url!r}) && document.body.innerText"
        )

    assert "CSRF" in answer
    await window.console_errors()  # the refused POST is reported by Chromium itself
    assert (await client.workflow.status(process.id)).state == ProcessState.RUNNING
    # Back on a console page while the server runs: nothing of the refusal's page loads after it stops.
    await window.open(f"{server.http_url}/processes/{process.id}")
