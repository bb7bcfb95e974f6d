"""Transport security and access control: TLS credentials, bearer tokens with roles, the listen policy."""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Never

import grpc
import grpc.aio
import yaml
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from hms.mgmt.v1 import bus_pb2, mesh_pb2, registry_pb2, schedule_pb2, workflow_pb2

logger = logging.getLogger(__name__)


class Role(StrEnum):
    """What a bearer token may do: admin everything, client the calling side, worker the serving side."""

    ADMIN = "admin"
    CLIENT = "client"
    WORKER = "worker"


ANY_SERVICE = "*"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a bearer token belongs to, and for a worker the services it may register and serve."""

    name: str
    role: Role
    # The services a worker token may act for ("*": any); admins and clients are not scoped.
    services: frozenset[str] = frozenset({ANY_SERVICE})

    def may_serve(self, service: str) -> bool:
        """Whether this token may register, deregister, take tasks of or report for `service`."""
        if self.role is Role.ADMIN:
            return True
        if self.role is not Role.WORKER:
            return False
        return ANY_SERVICE in self.services or service in self.services


class SecurityConfigError(ValueError):
    """A TLS, token or listen setting that cannot be used; the message names the file or flag at fault."""


# --- Which role may call what -------------------------------------------------------------------------

_HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
_REFLECTION_V1ALPHA = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name
# grpcio-reflection ships no v1 module, but grpcurl asks for v1 first and falls back to v1alpha only on
# UNIMPLEMENTED: v1 must stay open so it gets that answer instead of UNAUTHENTICATED.
_REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"

# Services anyone may call, with or without a token: probes and tooling must work before auth is set up.
OPEN_SERVICES: frozenset[str] = frozenset({_HEALTH, _REFLECTION_V1ALPHA, _REFLECTION_V1})

_REGISTRY = registry_pb2.DESCRIPTOR.services_by_name["Registry"].full_name
_BUS = bus_pb2.DESCRIPTOR.services_by_name["Bus"].full_name
_WORKFLOW = workflow_pb2.DESCRIPTOR.services_by_name["Workflow"].full_name
_SCHEDULE = schedule_pb2.DESCRIPTOR.services_by_name["Schedule"].full_name
_MESH = mesh_pb2.DESCRIPTOR.services_by_name["Mesh"].full_name
# Envoy's services, served for the mesh (their names are Envoy's, not hms.mgmt.v1's).
ADS = "envoy.service.discovery.v3.AggregatedDiscoveryService"
CSDS = "envoy.service.status.v3.ClientStatusDiscoveryService"

_ADMIN: frozenset[Role] = frozenset({Role.ADMIN})
_ANY_ROLE: frozenset[Role] = frozenset(Role)
_CLIENTS: frozenset[Role] = frozenset({Role.ADMIN, Role.CLIENT})
_WORKERS: frozenset[Role] = frozenset({Role.ADMIN, Role.WORKER})

# Every RPC of every hms.mgmt.v1 service, with the roles allowed to call it. Admin may call everything.
# A method missing here is admin-only (default deny); tests check that every descriptor method is listed.
ROLES: Mapping[str, frozenset[Role]] = MappingProxyType(
    {
        # Registry: workers announce themselves; clients only discover.
        f"/{_REGISTRY}/Register": _WORKERS,
        f"/{_REGISTRY}/Heartbeat": _WORKERS,
        f"/{_REGISTRY}/KeepAlive": _WORKERS,
        f"/{_REGISTRY}/Deregister": _WORKERS,
        f"/{_REGISTRY}/Lookup": _ANY_ROLE,
        f"/{_REGISTRY}/ListServices": _ANY_ROLE,
        f"/{_REGISTRY}/Watch": _ANY_ROLE,
        # Bus: both sides publish, consume and inspect; deleting state and changing retention is for admins.
        f"/{_BUS}/Publish": _ANY_ROLE,
        f"/{_BUS}/PublishStream": _ANY_ROLE,
        f"/{_BUS}/Subscribe": _ANY_ROLE,
        f"/{_BUS}/Ack": _ANY_ROLE,
        f"/{_BUS}/Nack": _ANY_ROLE,
        f"/{_BUS}/ListSubjects": _ANY_ROLE,
        f"/{_BUS}/ListConsumers": _ANY_ROLE,
        f"/{_BUS}/GetConsumerInfo": _ANY_ROLE,
        f"/{_BUS}/ListRetention": _ANY_ROLE,
        f"/{_BUS}/DeleteConsumer": _ADMIN,
        f"/{_BUS}/SetRetention": _ADMIN,
        # Workflow: clients drive processes; workers run tasks; definitions change only through an admin.
        f"/{_WORKFLOW}/RegisterDefinition": _ADMIN,
        f"/{_WORKFLOW}/GetDefinition": _CLIENTS,
        f"/{_WORKFLOW}/ListDefinitions": _CLIENTS,
        f"/{_WORKFLOW}/StartProcess": _CLIENTS,
        f"/{_WORKFLOW}/GetProcess": _ANY_ROLE,
        f"/{_WORKFLOW}/ListProcesses": _CLIENTS,
        f"/{_WORKFLOW}/WatchProcess": _CLIENTS,
        f"/{_WORKFLOW}/SignalProcess": _CLIENTS,
        f"/{_WORKFLOW}/CancelProcess": _CLIENTS,
        f"/{_WORKFLOW}/GetHistory": _CLIENTS,
        f"/{_WORKFLOW}/SubscribeTasks": _WORKERS,
        f"/{_WORKFLOW}/ReportTaskEvents": _WORKERS,
        f"/{_WORKFLOW}/ReportTaskEventBatches": _WORKERS,
        f"/{_WORKFLOW}/CompleteTask": _WORKERS,
        f"/{_WORKFLOW}/FailTask": _WORKERS,
        # Operator actions on processes: as CancelProcess, for clients (and admins).
        f"/{_WORKFLOW}/ListIncidents": _CLIENTS,
        f"/{_WORKFLOW}/RetryStep": _CLIENTS,
        f"/{_WORKFLOW}/SkipStep": _CLIENTS,
        f"/{_WORKFLOW}/FailProcess": _CLIENTS,
        f"/{_WORKFLOW}/RetryProcess": _CLIENTS,
        # Schedule: clients read, pause and trigger schedules (as they start processes); creating and
        # deleting one changes what the platform runs by itself, as a definition does: admins only.
        f"/{_SCHEDULE}/CreateSchedule": _ADMIN,
        f"/{_SCHEDULE}/GetSchedule": _CLIENTS,
        f"/{_SCHEDULE}/ListSchedules": _CLIENTS,
        f"/{_SCHEDULE}/PauseSchedule": _CLIENTS,
        f"/{_SCHEDULE}/UnpauseSchedule": _CLIENTS,
        f"/{_SCHEDULE}/TriggerSchedule": _CLIENTS,
        f"/{_SCHEDULE}/DeleteSchedule": _ADMIN,
        # Mesh: anyone may read the traffic policy; only admins change it.
        f"/{_MESH}/SetRoute": _ADMIN,
        f"/{_MESH}/DeleteRoute": _ADMIN,
        f"/{_MESH}/GetRoute": _ANY_ROLE,
        f"/{_MESH}/ListRoutes": _ANY_ROLE,
        # xDS: every service calls others, so any token may discover; client status is for any role too.
        f"/{ADS}/StreamAggregatedResources": _ANY_ROLE,
        f"/{ADS}/DeltaAggregatedResources": _ANY_ROLE,
        f"/{CSDS}/StreamClientStatus": _ANY_ROLE,
        f"/{CSDS}/FetchClientStatus": _ANY_ROLE,
    }
)


def required_roles(method: str) -> frozenset[Role] | None:
    """Roles allowed to call `method` ("/package.Service/Method"); None when it is open to everyone."""
    service = method.lstrip("/").partition("/")[0]
    if service in OPEN_SERVICES:
        return None
    return ROLES.get(method, _ADMIN)


# --- Bearer tokens ----------------------------------------------------------------------------------

_ENTRY_KEYS = frozenset({"token", "role", "name", "services"})
_ROLE_NAMES = frozenset(role.value for role in Role)


def _printable_ascii(value: str) -> bool:
    # gRPC metadata values must be printable ASCII, and a space would break "Bearer <token>".
    return all("!" <= ch <= "~" for ch in value)


def load_tokens(path: Path) -> dict[str, Principal]:
    """Read a tokens file (`tokens: [{token, role, name}]`) into a map from token to principal."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SecurityConfigError(f"--tokens {path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise SecurityConfigError(f"--tokens {path}: not UTF-8 text") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise SecurityConfigError(f"--tokens {path}: not valid YAML{line}") from exc

    if not isinstance(document, dict) or set(document) != {"tokens"}:
        raise SecurityConfigError(f"--tokens {path}: expected a mapping with one key, `tokens`")
    entries = document["tokens"]
    if not isinstance(entries, list) or not entries:
        raise SecurityConfigError(f"--tokens {path}: `tokens` must be a non-empty list")

    roles = ", ".join(role.value for role in Role)
    lines = _entry_lines(text)
    principals: dict[str, Principal] = {}
    first_index: dict[str, int] = {}
    for index, entry in enumerate(entries):
        # Never echo a token value in a message: these end up in logs.
        line = f" (line {lines[index]})" if index < len(lines) else ""
        at = f"--tokens {path}: tokens[{index}]{line}"
        if not isinstance(entry, dict):
            raise SecurityConfigError(f"{at}: expected a mapping with token, role and name")
        unknown = sorted(str(key) for key in entry if key not in _ENTRY_KEYS)
        if unknown:
            raise SecurityConfigError(
                f"{at}: unknown key {unknown[0]!r} (expected token, role, name, services)"
            )
        token = entry.get("token")
        if not isinstance(token, str) or not token:
            raise SecurityConfigError(f"{at}: `token` must be a non-empty string")
        if not _printable_ascii(token):
            raise SecurityConfigError(f"{at}: `token` must be printable ASCII without spaces")
        role = entry.get("role")
        if not isinstance(role, str) or role not in _ROLE_NAMES:
            raise SecurityConfigError(f"{at}: unknown role {role!r} (expected one of {roles})")
        name = entry.get("name", f"tokens[{index}]")
        if not isinstance(name, str) or not name:
            raise SecurityConfigError(f"{at}: `name` must be a non-empty string")
        if token in principals:
            raise SecurityConfigError(f"{at}: duplicate token (same as tokens[{first_index[token]}])")
        principals[token] = Principal(name=name, role=Role(role), services=_scope(at, Role(role), entry))
        first_index[token] = index

    if mode & 0o077:
        logger.warning("tokens file %s is readable by other users; chmod 600 it", path)
    return principals


def _entry_lines(text: str) -> list[int]:
    """1-based line of each entry of `tokens`, so an error can point at it without quoting it."""
    root = yaml.compose(text)
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if key.value == "tokens" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def _scope(at: str, role: Role, entry: dict[str, Any]) -> frozenset[str]:
    """The `services` of a worker entry: required, a non-empty list of names or ["*"]."""
    services = entry.get("services")
    if role is not Role.WORKER:
        if services is not None:
            raise SecurityConfigError(f"{at}: `services` applies to worker tokens only")
        return frozenset({ANY_SERVICE})
    if services is None:
        raise SecurityConfigError(
            f'{at}: a worker token needs `services`: the services it may register and serve (["*"] for any)'
        )
    if (
        not isinstance(services, list)
        or not services
        or not all(isinstance(name, str) and name and _printable_ascii(name) for name in services)
    ):
        raise SecurityConfigError(f"{at}: `services` must be a non-empty list of service names")
    return frozenset(services)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Authenticator:
    """Finds the principal of a call from its metadata; servicers ask it for scope checks."""

    def __init__(self, tokens: Mapping[str, Principal]) -> None:
        # Keyed by digest so the lookup's timing depends on a hash, not on how much of a token matched.
        self._principals = {_digest(token): principal for token, principal in tokens.items()}

    def principal(self, metadata: Any) -> Principal | None:
        """The caller's principal, or None when its metadata carries no known token."""
        return self.authenticate(metadata)[0]

    def token_principal(self, token: str) -> Principal | None:
        """The principal of a bare token (the console keeps one in a cookie), or None when unknown."""
        return self._principals.get(_digest(token)) if token else None

    def authenticate(self, metadata: Any) -> tuple[Principal | None, str]:
        """(principal, "") or (None, why not)."""
        values = [value for key, value in metadata or () if key == "authorization"]
        if not values:
            return None, "missing bearer token: send metadata `authorization: Bearer <token>`"
        if len(values) > 1:
            return None, "more than one authorization metadata entry"
        value = values[0].decode("ascii", "replace") if isinstance(values[0], bytes) else values[0]
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None, "malformed authorization metadata: expected `Bearer <token>`"
        principal = self._principals.get(_digest(token))
        if principal is None:
            return None, "unknown bearer token"
        return principal, ""


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Checks `authorization: Bearer <token>` on every call and the token's role against the method."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Pass the call on when allowed; otherwise answer UNAUTHENTICATED or PERMISSION_DENIED."""
        method = handler_call_details.method
        allowed = required_roles(method)
        if allowed is None:
            return await continuation(handler_call_details)
        principal, problem = self._authenticator.authenticate(handler_call_details.invocation_metadata)
        if principal is None:
            return await _refusal(
                continuation, handler_call_details, grpc.StatusCode.UNAUTHENTICATED, problem
            )
        if principal.role not in allowed:
            logger.info("denied %s (role %s) calling %s", principal.name, principal.role, method)
            denied = f"role {principal.role} may not call {method}"
            return await _refusal(
                continuation, handler_call_details, grpc.StatusCode.PERMISSION_DENIED, denied
            )
        return await continuation(handler_call_details)


async def _refusal(
    continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
    details: grpc.HandlerCallDetails,
    code: grpc.StatusCode,
    message: str,
) -> grpc.RpcMethodHandler[Any, Any] | None:
    """A handler shaped like the called method's that aborts with `code`; None for a method nobody knows."""
    # The shape must match the call's (a unary handler would wait forever for a streaming client's first
    # message). Take it from the served handler or, for contract methods not implemented yet, from the
    # contract, so the guard answers the same before and after a servicer lands.
    handler = await continuation(details)
    if handler is not None:
        request_streaming, response_streaming = handler.request_streaming, handler.response_streaming
    else:
        try:
            found = descriptor_pool.Default().FindMethodByName(details.method.strip("/").replace("/", "."))
        except KeyError:
            return None  # UNIMPLEMENTED, as without the guard
        request_streaming, response_streaming = found.client_streaming, found.server_streaming

    # Aborting inside the handler is what grpc.aio supports for every call shape. A plain coroutine is valid
    # for streaming responses too: grpc.aio awaits it as a writer-style handler. The request is never
    # looked at, so it stays raw bytes.
    async def refuse(_request: object, context: grpc.aio.ServicerContext[Any, Any]) -> Never:
        await context.abort(code, message)

    if request_streaming and response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)


# --- TLS ----------------------------------------------------------------------------------------------


def _read(flag: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SecurityConfigError(f"{flag} {path}: cannot read: {exc.strerror or exc}") from exc


def _check_certificates(flag: str, path: Path, data: bytes) -> None:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=data.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError) as exc:
        raise SecurityConfigError(f"{flag} {path}: not a PEM certificate file") from exc


def _check_key_pair(cert: Path, key: Path) -> None:
    try:
        # The empty password makes an encrypted key fail here rather than prompt on the terminal.
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, password="")
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise SecurityConfigError(f"--tls-key {key}: not the private key of --tls-cert {cert}") from exc
        raise SecurityConfigError(
            f"--tls-key {key}: not a usable PEM private key (gRPC needs it unencrypted)"
        ) from exc


def server_credentials(
    cert: Path | None, key: Path | None, client_ca: Path | None
) -> grpc.ServerCredentials | None:
    """TLS credentials from PEM files (mutual TLS when `client_ca` is given), or None without TLS."""
    if cert is None and key is None:
        if client_ca is not None:
            raise SecurityConfigError("--tls-client-ca needs --tls-cert and --tls-key: mutual TLS is TLS")
        return None
    if cert is None or key is None:
        raise SecurityConfigError("--tls-cert and --tls-key must be given together")
    # gRPC reports bad TLS material only when it binds, as "Failed to bind to address"; the stdlib's OpenSSL
    # parses the same PEM files up front, so the message can name the file at fault.
    chain = _read("--tls-cert", cert)
    _check_certificates("--tls-cert", cert, chain)
    private_key = _read("--tls-key", key)
    _check_key_pair(cert, key)
    roots = None
    if client_ca is not None:
        roots = _read("--tls-client-ca", client_ca)
        _check_certificates("--tls-client-ca", client_ca, roots)
    return grpc.ssl_server_credentials(
        [(private_key, chain)], root_certificates=roots, require_client_auth=roots is not None
    )


# --- Listen policy ------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether `host` (an IP literal, possibly in brackets, or a name) is only reachable from this machine."""
    host = host.strip().removeprefix("[").removesuffix("]")
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        # Any other name may resolve to a public interface; do not guess.
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def check_listen_policy(host: str, *, tls: bool, tokens: bool, insecure: bool) -> None:
    """Refuse a non-loopback `host` that has neither TLS nor tokens, unless `insecure` says it is meant."""
    if is_loopback(host) or tls or tokens or insecure:
        return
    shown = host or "all interfaces"
    raise SecurityConfigError(
        f"refusing to listen on {shown} without TLS or tokens: anyone who can reach it could change the "
        "registry; pass --tls-cert/--tls-key, --tokens, or --insecure to accept plaintext without auth"
    )
