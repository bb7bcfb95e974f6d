"""Per-resource access checks: which services a caller's token may act for.

The interceptor (control_plane.security) decides per RPC from the token's role; what a worker token
may touch within an RPC (the instances of its own services, the tasks handed to them) depends on
the request, so servicers ask here.
"""

from __future__ import annotations

from typing import Any

import grpc

from control_plane.errors import PermissionDenied
from control_plane.models import Actor
from control_plane.security import Authenticator

Context = grpc.aio.ServicerContext[Any, Any]


class Scopes:
    """Answers whether the caller of an RPC may act for a service; allows everything without tokens."""

    def __init__(self, authenticator: Authenticator | None) -> None:
        self._authenticator = authenticator

    def check(self, context: Context, service: str, action: str) -> None:
        """Raise PermissionDenied unless the caller's token may `action` for `service`."""
        if self._authenticator is None:
            return
        principal = self._authenticator.principal(context.invocation_metadata())
        # The interceptor has already refused calls without a known token.
        if principal is None or not principal.may_serve(service):
            who = principal.name if principal is not None else "an unknown caller"
            raise PermissionDenied(f"token {who!r} may not {action} for service {service[:128]!r}")

    def actor(self, context: Context) -> Actor:
        """Who is calling, as recorded in the history of what an operator did: the token's name and role."""
        if self._authenticator is None:
            return Actor(name="", role="", via="grpc")
        principal = self._authenticator.principal(context.invocation_metadata())
        if principal is None:
            return Actor(name="", role="", via="grpc")
        return Actor(name=principal.name, role=principal.role.value, via="grpc")


OPEN = Scopes(None)
