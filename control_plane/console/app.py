"""The console's routes: pages, live streams, actions and login, added to the HTTP listener's app."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from control_plane.console import live, views
from control_plane.console.access import CSRF_FIELD, CSRF_HEADER, Access, Rpc, Viewer, new_session
from control_plane.console.render import Renderer, secure_headers
from control_plane.console.views import Cores, ProcessFilter
from control_plane.errors import (
    ControlPlaneError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from control_plane.models import EventType, ProcessState

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The pages of the navigation bar: path, title, and the RPC whose right it needs.
_NAV = (
    ("/", "Overview", None),
    ("/processes", "Processes", Rpc.LIST_PROCESSES),
    ("/incidents", "Incidents", Rpc.LIST_INCIDENTS),
    ("/definitions", "Definitions", Rpc.LIST_DEFINITIONS),
    ("/registry", "Registry", Rpc.LIST_SERVICES),
    ("/bus", "Bus", Rpc.LIST_SUBJECTS),
)
# How a refused action is answered.
_ACTION_STATUS: dict[type[ControlPlaneError], int] = {
    NotFound: 404,
    InvalidArgument: 400,
    FailedPrecondition: 409,
    ResourceExhausted: 429,
}


class Console:
    """The operations console: reads the cores in-process and acts through them for the viewer."""

    def __init__(self, cores: Cores, access: Access, stopping: asyncio.Event) -> None:
        self.cores = cores
        self.access = access
        self.stopping = stopping
        self.renderer = Renderer()
        self._static: web.StaticResource | None = None

    def add_to(self, app: web.Application) -> None:
        """Add the console's routes to `app` (the HTTP listener's)."""
        app.router.add_get("/", self.overview_page)
        app.router.add_get("/processes", self.processes_page)
        app.router.add_get("/processes/{process_id}", self.process_page)
        app.router.add_post("/processes/{process_id}/signal", self.signal)
        app.router.add_post("/processes/{process_id}/cancel", self.cancel)
        app.router.add_post("/processes/{process_id}/retry", self.retry)
        app.router.add_post("/processes/{process_id}/skip", self.skip)
        app.router.add_get("/incidents", self.incidents_page)
        app.router.add_get("/definitions", self.definitions_page)
        app.router.add_get("/registry", self.registry_page)
        app.router.add_get("/bus", self.bus_page)
        app.router.add_get("/bus/dead-letters", self.dead_letters_page)
        app.router.add_post("/bus/dead-letters/replay", self.replay)
        app.router.add_get("/live/processes", self.live_processes)
        app.router.add_get("/live/processes/{process_id}", self.live_process)
        app.router.add_get("/live/registry", self.live_registry)
        app.router.add_get("/login", self.login_page)
        app.router.add_post("/login", self.log_in)
        app.router.add_post("/logout", self.log_out)
        app.router.add_get("/favicon.ico", self.favicon)
        static = app.router.add_static("/static/", STATIC_DIR)
        assert isinstance(static, web.StaticResource)
        self._static = static

    # -- shared ---------------------------------------------------------------------------------

    def _viewer(self, request: web.Request, needs: str | None) -> Viewer:
        """The viewer of a page; sends to the login page, or answers 403, when they may not see it."""
        viewer = self.access.viewer(request)
        if viewer is None:
            raise web.HTTPSeeOther(f"/login?{urlencode({'next': request.path_qs})}")
        if needs is not None and not viewer.may(needs):
            raise self._error_page(viewer, 403, f"the role {_role(viewer)} may not see this page")
        return viewer

    def context(self, viewer: Viewer, active: str, **extra: Any) -> dict[str, Any]:
        """What every page's template needs besides its own data."""
        nav = [(path, title, path == active) for path, title, rpc in _NAV if rpc is None or viewer.may(rpc)]
        return {
            "viewer": viewer,
            "nav": nav,
            "needs_login": self.access.needs_login,
            "csrf": viewer.csrf,
            "Rpc": Rpc,
            "static": self._static_url,
            **extra,
        }

    async def favicon(self, request: web.Request) -> web.StreamResponse:
        """Browsers ask for /favicon.ico on what names no icon (a refusal's plain text): the same icon."""
        return web.FileResponse(STATIC_DIR / "favicon.svg", headers={"Content-Type": "image/svg+xml"})

    def _static_url(self, name: str) -> str:
        # Versioned URLs (?v=<hash>): a browser never runs a stale console.js against a newer page.
        assert self._static is not None
        return str(self._static.url_for(filename=name, append_version=True))

    def _page(
        self, viewer: Viewer, template: str, active: str, status: int = 200, **data: Any
    ) -> web.Response:
        response = self.renderer.page(template, status, **self.context(viewer, active, **data))
        self.access.remember(response, viewer)
        return response

    def _error_page(self, viewer: Viewer, status: int, message: str) -> web.HTTPException:
        text = self.renderer.text("error.html", **self.context(viewer, "", status=status, message=message))
        return _ERRORS[status](text=text, content_type="text/html", headers=secure_headers())

    # -- pages ----------------------------------------------------------------------------------

    async def overview_page(self, request: web.Request) -> web.StreamResponse:
        """Counts and troubles: services, processes by state, failures of the last hour, lagging consumers."""
        viewer = self._viewer(request, None)
        summary = await views.overview(
            self.cores,
            processes=viewer.may(Rpc.LIST_PROCESSES),
            services=viewer.may(Rpc.LIST_SERVICES),
            bus=viewer.may(Rpc.LIST_SUBJECTS) and viewer.may(Rpc.LIST_CONSUMERS),
        )
        return self._page(viewer, "overview.html", "/", overview=summary, states=list(ProcessState))

    async def processes_page(self, request: web.Request) -> web.StreamResponse:
        """Processes by definition, version, state and business key prefix, newest first, paged."""
        viewer = self._viewer(request, Rpc.LIST_PROCESSES)
        try:
            filters = ProcessFilter.from_query(request.query)
        except InvalidArgument as exc:
            raise self._error_page(viewer, 400, str(exc)) from None
        page = await views.list_processes(self.cores, filters)
        return self._page(
            viewer,
            "processes.html",
            "/processes",
            filters=filters,
            page=page,
            states=list(ProcessState),
            definitions=sorted({d.name for d in self.cores.workflows.definitions()}),
            # The same page, filters and position included, again as processes change.
            live_url=f"/live/processes?{urlencode(filters.query(before=filters.before))}",
        )

    async def process_page(self, request: web.Request) -> web.StreamResponse:
        """One process: graph, steps, history, input and output, and the actions the viewer may take."""
        viewer = self._viewer(request, Rpc.GET_PROCESS)
        process_id = request.match_info["process_id"]
        try:
            view = await views.process_view(self.cores, process_id, with_history=viewer.may(Rpc.GET_HISTORY))
        except NotFound:
            raise self._error_page(viewer, 404, f"there is no process {process_id}") from None
        return self._page(
            viewer, "process.html", "/processes", view=view, live_url=f"/live/processes/{process_id}"
        )

    async def definitions_page(self, request: web.Request) -> web.StreamResponse:
        """Every definition: its versions, each drawn, with its YAML and how many processes run on it."""
        viewer = self._viewer(request, Rpc.LIST_DEFINITIONS)
        shown = await views.definitions(self.cores, counts=viewer.may(Rpc.LIST_PROCESSES))
        return self._page(viewer, "definitions.html", "/definitions", definitions=shown)

    async def registry_page(self, request: web.Request) -> web.StreamResponse:
        """Services and their instances, live."""
        viewer = self._viewer(request, Rpc.LIST_SERVICES)
        return self._page(
            viewer,
            "registry.html",
            "/registry",
            services=views.registry_rows(self.cores),
            departures=[],
            live_url="/live/registry",
        )

    async def bus_page(self, request: web.Request) -> web.StreamResponse:
        """Subjects, dead-letter subjects and durable consumers."""
        viewer = self._viewer(request, Rpc.LIST_SUBJECTS)
        bus = await views.bus_view(self.cores, subjects=True, consumers=viewer.may(Rpc.LIST_CONSUMERS))
        return self._page(viewer, "bus.html", "/bus", bus=bus)

    async def dead_letters_page(self, request: web.Request) -> web.StreamResponse:
        """The messages of one dead-letter subject, each with a replay button."""
        viewer = self._viewer(request, Rpc.SUBSCRIBE)
        subject = request.query.get("subject", "")
        after_text = request.query.get("after", "0")
        try:
            if not after_text.isdigit():
                raise InvalidArgument.field("after", "must be a log sequence")
            letters, next_after = await views.dead_letters(self.cores, subject, int(after_text))
        except InvalidArgument as exc:
            raise self._error_page(viewer, 400, str(exc)) from None
        return self._page(
            viewer,
            "dead_letters.html",
            "/bus",
            subject=subject,
            letters=letters,
            next_query=urlencode({"subject": subject, "after": next_after}) if next_after else None,
        )

    # -- live -----------------------------------------------------------------------------------

    def _live_viewer(self, request: web.Request, needs: str) -> Viewer:
        viewer = self.access.viewer(request)
        if viewer is None:
            raise web.HTTPUnauthorized(text="log in first\n")
        if not viewer.may(needs):
            raise web.HTTPForbidden(text=f"the role {_role(viewer)} may not see this\n")
        return viewer

    async def live_processes(self, request: web.Request) -> web.StreamResponse:
        """The processes page's rows, again whenever a process changes."""
        viewer = self._live_viewer(request, Rpc.LIST_PROCESSES)
        try:
            filters = ProcessFilter.from_query(request.query)
        except InvalidArgument as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None

        async def regions() -> dict[str, str]:
            page = await views.list_processes(self.cores, filters)
            return live.render(
                self.renderer, live.PROCESSES, self.context(viewer, "", filters=filters, page=page)
            )

        return await live.processes_stream(request, self.cores, self.stopping, regions)

    async def live_process(self, request: web.Request) -> web.StreamResponse:
        """A process page's changing parts, again after each of its transitions."""
        viewer = self._live_viewer(request, Rpc.GET_PROCESS)
        process_id = request.match_info["process_id"]

        async def regions() -> tuple[dict[str, str], bool]:
            view = await views.process_view(self.cores, process_id, with_history=viewer.may(Rpc.GET_HISTORY))
            rendered = live.render(self.renderer, live.PROCESS, self.context(viewer, "", view=view))
            return rendered, view.record.state.final

        return await live.process_stream(request, self.cores, self.stopping, process_id, regions)

    async def live_registry(self, request: web.Request) -> web.StreamResponse:
        """The registry page's tables, again at every registry change (and as leases run down)."""
        viewer = self._live_viewer(request, Rpc.LIST_SERVICES)

        def regions(departures: list[Any]) -> dict[str, str]:
            context = self.context(
                viewer, "", services=views.registry_rows(self.cores), departures=departures
            )
            return live.render(self.renderer, live.REGISTRY, context)

        return await live.registry_stream(request, self.cores, self.stopping, regions)

    # -- actions --------------------------------------------------------------------------------

    async def _action_viewer(self, request: web.Request, needs: str) -> tuple[Viewer, dict[str, str]]:
        """The viewer of an action and its form; refuses a forged or unauthorised one."""
        viewer = self.access.viewer(request)
        if viewer is None:
            raise _json_error(401, "log in first")
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        sent = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD, "")
        if viewer.fresh or not self.access.check_csrf(request, sent):
            logger.warning("console: refused %s %s without a valid CSRF token", request.method, request.path)
            raise _json_error(403, "missing or wrong CSRF token: reload the page and try again")
        if not viewer.may(needs):
            logger.warning("console: refused %s for role %s", request.path, _role(viewer))
            raise _json_error(403, f"the role {_role(viewer)} may not do this")
        return viewer, form

    async def signal(self, request: web.Request) -> web.StreamResponse:
        """Send a signal (name, JSON payload) to a process, as the viewer."""
        viewer, form = await self._action_viewer(request, Rpc.SIGNAL_PROCESS)
        process_id = request.match_info["process_id"]
        name = form.get("name", "").strip()
        try:
            payload = json.loads(form.get("payload", "").strip() or "{}")
        except ValueError as exc:
            return _json(400, {"ok": False, "error": f"the payload is not JSON: {exc}"})
        if not isinstance(payload, dict):
            return _json(400, {"ok": False, "error": "the payload must be a JSON object"})

        async def act() -> None:
            await self.cores.workflows.signal(
                process_id, name, payload, signal_id=str(uuid.uuid4()), actor=viewer.actor
            )

        return await self._act(process_id, act, EventType.SIGNAL_RECEIVED, f"signal {name} sent")

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        """Cancel a process (compensating first when asked), as the viewer."""
        viewer, form = await self._action_viewer(request, Rpc.CANCEL_PROCESS)
        process_id = request.match_info["process_id"]
        reason = form.get("reason", "").strip() or "cancelled from the console"
        compensate = form.get("compensate") in ("on", "true", "1")

        async def act() -> None:
            await self.cores.workflows.cancel(process_id, reason, compensate, actor=viewer.actor)

        return await self._act(process_id, act, EventType.PROCESS_CANCEL_REQUESTED, "cancel requested")

    async def retry(self, request: web.Request) -> web.StreamResponse:
        """Retry a step in INCIDENT (form `step`, optional JSON `payload` as its input), or, without a
        step, a FAILED process from its failed step; as the viewer."""
        process_id = request.match_info["process_id"]
        step_id = (await request.post()).get("step", "")
        needs = Rpc.RETRY_STEP if step_id else Rpc.RETRY_PROCESS
        viewer, form = await self._action_viewer(request, needs)
        reason = form.get("reason", "").strip() or "retried from the console"
        step_input = _json_form(form, required=False)
        if isinstance(step_input, web.Response):
            return step_input

        async def act() -> None:
            if form.get("step"):
                await self.cores.workflows.retry_step(
                    process_id, form["step"], step_input, actor=viewer.actor, reason=reason
                )
            else:
                await self.cores.workflows.retry_process(process_id, actor=viewer.actor, reason=reason)

        expect = EventType.STEP_RETRY_REQUESTED if step_id else EventType.PROCESS_RETRY_REQUESTED
        return await self._act(process_id, act, expect, "retry requested")

    async def skip(self, request: web.Request) -> web.StreamResponse:
        """Complete a step in INCIDENT with the JSON `payload` as its output, as the viewer."""
        viewer, form = await self._action_viewer(request, Rpc.SKIP_STEP)
        process_id = request.match_info["process_id"]
        reason = form.get("reason", "").strip() or "skipped from the console"
        output = _json_form(form, required=True)
        if isinstance(output, web.Response):
            return output

        async def act() -> None:
            await self.cores.workflows.skip_step(
                process_id, form.get("step", ""), output, actor=viewer.actor, reason=reason
            )

        return await self._act(process_id, act, EventType.STEP_SKIP_REQUESTED, "step skipped")

    async def incidents_page(self, request: web.Request) -> web.StreamResponse:
        """Open incidents, newest first: the steps waiting for an operator."""
        viewer = self._viewer(request, Rpc.LIST_INCIDENTS)
        incidents = await self.cores.workflows.incidents(
            definition="", process_id="", resolved=False, before=None, limit=200
        )
        return self._page(viewer, "incidents.html", "/incidents", incidents=incidents)

    async def _act(
        self, process_id: str, act: Callable[[], Awaitable[None]], expect: EventType, done: str
    ) -> web.Response:
        """Run an action and answer with the history event it caused."""
        try:
            before = (await self.cores.workflows.process(process_id)).last_event_sequence
            await act()
            events = await self.cores.workflows.history(process_id, before, 100)
        except ControlPlaneError as exc:
            return _json(_ACTION_STATUS.get(type(exc), 400), {"ok": False, "error": str(exc)})
        event = next((e for e in events if e.type is expect), None)
        shown = (
            None
            if event is None
            else {
                "sequence": event.sequence,
                "type": event.type.value,
                "step_id": event.step_id,
                "time": event.time,
                "summary": views.summary(event),
            }
        )
        return _json(200, {"ok": True, "message": done, "event": shown})

    async def replay(self, request: web.Request) -> web.StreamResponse:
        """Publish a dead letter again on its original subject, as the viewer."""
        _, form = await self._action_viewer(request, Rpc.PUBLISH)
        sequence = form.get("sequence", "")
        if not sequence.isdigit():
            return _json(400, {"ok": False, "error": "sequence must be a log sequence"})
        try:
            letter, position = await self.cores.bus.replay_dead_letter(int(sequence))
        except ControlPlaneError as exc:
            return _json(_ACTION_STATUS.get(type(exc), 400), {"ok": False, "error": str(exc)})
        logger.info(
            "console: dead letter %s of %s replayed as %d", sequence, letter.subject, position.sequence
        )
        original = letter.headers.get("hms-dlq-subject", "")
        message = f"replayed to {original} as sequence {position.sequence}"
        return _json(200, {"ok": True, "message": message, "event": None, "sequence": position.sequence})

    # -- login ----------------------------------------------------------------------------------

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        """The token form (only when the control plane has tokens)."""
        if not self.access.needs_login:
            raise web.HTTPSeeOther("/")
        return self._login_form(request, _next(request.query.get("next", "")), "", 200)

    def _login_form(self, request: web.Request, next_path: str, error: str, status: int) -> web.Response:
        session = self.access.session(request) or new_session()
        response = self.renderer.page(
            "login.html",
            status,
            csrf=self.access.csrf_for(session),
            next_path=next_path,
            error=error,
            static=self._static_url,
        )
        if session != self.access.session(request):
            self.access.set_session(response, session)
        return response

    async def log_in(self, request: web.Request) -> web.StreamResponse:
        """Check the token typed in and keep it in an HttpOnly cookie."""
        if not self.access.needs_login:
            raise web.HTTPSeeOther("/")
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        next_path = _next(form.get("next", ""))
        if not self.access.check_csrf(request, form.get(CSRF_FIELD, "")):
            return self._login_form(request, next_path, "The form expired: try again.", 403)
        token = form.get("token", "").strip()
        principal = self.access.principal(token)
        if principal is None:
            logger.info("console: a login with an unknown token was refused")
            return self._login_form(request, next_path, "Unknown token.", 401)
        logger.info("console: %s (%s) logged in", principal.name, principal.role)
        response = web.HTTPSeeOther(next_path)
        self.access.log_in(response, token)
        raise response

    async def log_out(self, request: web.Request) -> web.StreamResponse:
        """Forget the token (CSRF-checked, so another site cannot log a viewer out)."""
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        if not self.access.check_csrf(request, form.get(CSRF_FIELD, "")):
            raise web.HTTPForbidden(text="missing or wrong CSRF token\n")
        response = web.HTTPSeeOther("/login" if self.access.needs_login else "/")
        self.access.log_out(response)
        raise response


def _json_form(form: dict[str, str], *, required: bool) -> dict[str, Any] | web.Response | None:
    """The form's JSON object `payload` (None when empty and not required), or the 400 answer."""
    text = form.get("payload", "").strip()
    if not text and not required:
        return None
    try:
        value = json.loads(text or "{}")
    except ValueError as exc:
        return _json(400, {"ok": False, "error": f"the JSON is not valid: {exc}"})
    if not isinstance(value, dict):
        return _json(400, {"ok": False, "error": "the JSON must be an object"})
    return value


def _role(viewer: Viewer) -> str:
    return viewer.principal.role.value if viewer.principal is not None else "anonymous"


def _next(path: str) -> str:
    """A path to return to after login: only a local one (never another site's URL)."""
    if path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path
    return "/"


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status, headers=secure_headers())


def _json_error(status: int, message: str) -> web.HTTPException:
    body = json.dumps({"ok": False, "error": message})
    return _ERRORS[status](text=body, content_type="application/json", headers=secure_headers())


_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
}
