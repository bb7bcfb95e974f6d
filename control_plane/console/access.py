"""Who is looking at the console: the token in an HttpOnly cookie, its role's rights, CSRF tokens.

The console grants exactly what the gRPC API grants the same token: each page and action names the
RPC it mirrors, and `security.required_roles` (the one table of rights) decides. Without tokens
configured the console is as open as the gRPC port is.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from aiohttp import web

from control_plane.models import Actor
from control_plane.security import Authenticator, Principal, required_roles
from hms.mgmt.v1 import bus_pb2, registry_pb2, workflow_pb2

TOKEN_COOKIE = "mgmt_console_token"
SESSION_COOKIE = "mgmt_console_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"

_WORKFLOW = workflow_pb2.DESCRIPTOR.services_by_name["Workflow"].full_name
_REGISTRY = registry_pb2.DESCRIPTOR.services_by_name["Registry"].full_name
_BUS = bus_pb2.DESCRIPTOR.services_by_name["Bus"].full_name


class Rpc:
    """The RPCs whose rights the console's pages and actions borrow."""

    LIST_PROCESSES = f"/{_WORKFLOW}/ListProcesses"
    GET_PROCESS = f"/{_WORKFLOW}/GetProcess"
    GET_HISTORY = f"/{_WORKFLOW}/GetHistory"
    LIST_DEFINITIONS = f"/{_WORKFLOW}/ListDefinitions"
    SIGNAL_PROCESS = f"/{_WORKFLOW}/SignalProcess"
    CANCEL_PROCESS = f"/{_WORKFLOW}/CancelProcess"
    LIST_INCIDENTS = f"/{_WORKFLOW}/ListIncidents"
    RETRY_STEP = f"/{_WORKFLOW}/RetryStep"
    SKIP_STEP = f"/{_WORKFLOW}/SkipStep"
    RETRY_PROCESS = f"/{_WORKFLOW}/RetryProcess"
    LIST_SERVICES = f"/{_REGISTRY}/ListServices"
    LIST_SUBJECTS = f"/{_BUS}/ListSubjects"
    LIST_CONSUMERS = f"/{_BUS}/ListConsumers"
    SUBSCRIBE = f"/{_BUS}/Subscribe"
    PUBLISH = f"/{_BUS}/Publish"


@dataclass(frozen=True, slots=True)
class Viewer:
    """The person behind one request: their token's principal (None on an open console) and session."""

    principal: Principal | None
    session: str
    csrf: str
    fresh: bool = False  # the session id was made for this request: its cookie goes with the response

    def may(self, method: str) -> bool:
        """Whether this viewer's token may call `method`, so the console may do its equivalent."""
        allowed = required_roles(method)
        return self.principal is None or allowed is None or self.principal.role in allowed

    @property
    def actor(self) -> Actor:
        """How this viewer's actions are recorded in a process history."""
        if self.principal is None:
            return Actor(name="", role="", via="console")
        return Actor(name=self.principal.name, role=self.principal.role.value, via="console")


class Access:
    """Reads the cookies of a request into a `Viewer`, and checks CSRF tokens on actions."""

    def __init__(self, authenticator: Authenticator | None, *, secure_cookies: bool) -> None:
        self._authenticator = authenticator
        self._secure = secure_cookies
        # CSRF tokens are a MAC of the browser's session id: a page from another site cannot read one,
        # and a new key on restart only costs a page reload.
        self._key = secrets.token_bytes(32)

    @property
    def needs_login(self) -> bool:
        """Whether the control plane has tokens, so the console asks for one."""
        return self._authenticator is not None

    def session(self, request: web.Request) -> str:
        """The browser's session id from its cookie ("" when it has none yet)."""
        value = request.cookies.get(SESSION_COOKIE, "")
        return value if 20 <= len(value) <= 64 and value.isascii() else ""

    def csrf_for(self, session: str) -> str:
        """The CSRF token of a session."""
        return hmac.new(self._key, b"csrf:" + session.encode(), hashlib.sha256).hexdigest()

    def viewer(self, request: web.Request) -> Viewer | None:
        """The viewer of `request`; None when tokens are configured and it carries no valid one."""
        session = self.session(request)
        fresh = not session
        session = session or new_session()
        csrf = self.csrf_for(session)
        if self._authenticator is None:
            return Viewer(None, session, csrf, fresh)
        principal = self._authenticator.token_principal(request.cookies.get(TOKEN_COOKIE, ""))
        return None if principal is None else Viewer(principal, session, csrf, fresh)

    def principal(self, token: str) -> Principal | None:
        """The principal of a token typed into the login form."""
        return self._authenticator.token_principal(token) if self._authenticator is not None else None

    def check_csrf(self, request: web.Request, sent: str) -> bool:
        """Whether an action carries the CSRF token of its session and comes from this origin."""
        session = self.session(request)
        if not session or not sent or not hmac.compare_digest(sent, self.csrf_for(session)):
            return False
        origin = request.headers.get("Origin")
        # Browsers send Origin on every POST; a page elsewhere posting here cannot make it ours.
        return origin is None or origin == f"{request.scheme}://{request.host}"

    def remember(self, response: web.StreamResponse, viewer: Viewer) -> None:
        """Give the browser the viewer's session cookie if it was made for this request."""
        if viewer.fresh:
            self.set_session(response, viewer.session)

    def set_session(self, response: web.StreamResponse, session: str) -> None:
        """Give the browser a session id (which CSRF tokens are bound to)."""
        self._set_cookie(response, SESSION_COOKIE, session)

    def log_in(self, response: web.StreamResponse, token: str) -> None:
        """Keep the token in an HttpOnly cookie, under a new session id (so old CSRF tokens stop working)."""
        self._set_cookie(response, TOKEN_COOKIE, token)
        self.set_session(response, new_session())

    def log_out(self, response: web.StreamResponse) -> None:
        """Forget the token."""
        response.del_cookie(TOKEN_COOKIE, path="/")

    def _set_cookie(self, response: web.StreamResponse, name: str, value: str) -> None:
        # HttpOnly: page scripts never see the token; SameSite=Strict: other sites' requests carry neither.
        response.set_cookie(name, value, httponly=True, samesite="Strict", path="/", secure=self._secure)


def new_session() -> str:
    """A random session id."""
    return secrets.token_urlsafe(24)
