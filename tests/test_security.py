"""Security: the tokens file, the role table, the listen policy, and auth and TLS through a real server."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import pkgutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import grpc
import grpc.aio
import pytest
from google.protobuf import descriptor, descriptor_pool
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

import hms.mgmt.v1
from control_plane.security import (
    ROLES,
    Principal,
    Role,
    SecurityConfigError,
    check_listen_policy,
    load_tokens,
    required_roles,
    server_credentials,
)
from control_plane.server import App, running
from control_plane.settings import Settings
from hms.mgmt.v1 import registry_pb2, registry_pb2_grpc
from tests.certs import TestCerts, make_certs
from tests.conftest import ServerProcess

ADMIN_TOKEN = "admin-7f3c2a"
CLIENT_TOKEN = "client-91bd04"
WORKER_TOKEN = "worker-c55e18"

TOKENS_YAML = f"""
tokens:
  - {{token: "{ADMIN_TOKEN}", role: admin, name: ops}}
  - {{token: "{CLIENT_TOKEN}", role: client, name: web}}
  - {{token: "{WORKER_TOKEN}", role: worker, name: payments, services: [payments]}}
"""

TOKEN_OF = {Role.ADMIN: ADMIN_TOKEN, Role.CLIENT: CLIENT_TOKEN, Role.WORKER: WORKER_TOKEN}


# --- The tokens file --------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    """Write `text` to `path` readable by its owner only, as a real tokens file should be."""
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_load_tokens_maps_each_token_to_its_principal(tmp_path: Path) -> None:
    tokens = load_tokens(write(tmp_path / "tokens.yaml", TOKENS_YAML))

    assert tokens == {
        ADMIN_TOKEN: Principal("ops", Role.ADMIN),
        CLIENT_TOKEN: Principal("web", Role.CLIENT),
        WORKER_TOKEN: Principal("payments", Role.WORKER, frozenset({"payments"})),
    }


def test_load_tokens_names_an_unnamed_entry_by_its_index(tmp_path: Path) -> None:
    tokens = load_tokens(
        write(tmp_path / "tokens.yaml", "tokens: [{token: abc, role: worker, services: ['*']}]")
    )

    assert tokens == {"abc": Principal("tokens[0]", Role.WORKER, frozenset({"*"}))}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tokens: [{token: abc, role: superuser, name: x}]", "tokens[0] (line 1): unknown role 'superuser'"),
        ("tokens: [{token: abc, role: ADMIN, name: x}]", "tokens[0] (line 1): unknown role 'ADMIN'"),
        ("tokens: [{token: abc, name: x}]", "tokens[0] (line 1): unknown role None"),
        (
            "tokens: [{token: a, role: admin}, {token: b, role: admin}, {token: a, role: client}]",
            "tokens[2] (line 1): duplicate token (same as tokens[0])",
        ),
        ('tokens: [{token: "", role: admin}]', "tokens[0] (line 1): `token` must be a non-empty string"),
        ("tokens: [{role: admin}]", "tokens[0] (line 1): `token` must be a non-empty string"),
        ("tokens: [{token: 1234, role: admin}]", "tokens[0] (line 1): `token` must be a non-empty string"),
        (
            'tokens: [{token: "two words", role: admin}]',
            "tokens[0] (line 1): `token` must be printable ASCII",
        ),
        (
            'tokens: [{token: "abc", role: admin, name: ""}]',
            "tokens[0] (line 1): `name` must be a non-empty string",
        ),
        ("tokens: [{token: abc, rol: admin}]", "tokens[0] (line 1): unknown key 'rol'"),
        (
            "tokens:\n  - {token: a, role: admin}\n  - {token: b, role: worker}",
            "tokens[1] (line 3): a worker token needs `services`",
        ),
        ("tokens: [{token: b, role: worker, services: []}]", "`services` must be a non-empty list"),
        ("tokens: [{token: b, role: worker, services: payments}]", "`services` must be a non-empty list"),
        ("tokens: [{token: b, role: client, services: [x]}]", "`services` applies to worker tokens only"),
        ("tokens: [abc]", "tokens[0] (line 1): expected a mapping"),
        ("tokens: []", "`tokens` must be a non-empty list"),
        ("tokens: abc", "`tokens` must be a non-empty list"),
        ("- {token: abc, role: admin}", "expected a mapping with one key, `tokens`"),
        ("", "expected a mapping with one key, `tokens`"),
        ("tokens: [{token: abc, role: admin}]\nextra: 1", "expected a mapping with one key, `tokens`"),
        ("tokens: [{token: abc, role: admin}\n", "not valid YAML at line 2"),
    ],
)
def test_load_tokens_refuses_bad_files_naming_file_and_entry(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path / "tokens.yaml", text)

    with pytest.raises(SecurityConfigError) as raised:
        load_tokens(path)

    message = str(raised.value)
    assert message.startswith(f"--tokens {path}: ")
    assert expected in message
    assert "\n" not in message


def test_load_tokens_never_repeats_a_token_in_its_message(tmp_path: Path) -> None:
    secret = "s3cr3t-token-value"
    path = write(tmp_path / "tokens.yaml", f"tokens: [{{token: {secret}, role: a}}, {{token: {secret}}}]")

    with pytest.raises(SecurityConfigError) as raised:
        load_tokens(path)

    assert secret not in str(raised.value)


def test_load_tokens_warns_when_others_may_read_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "tokens.yaml", TOKENS_YAML)
    path.chmod(0o644)

    with caplog.at_level(logging.WARNING, logger="control_plane.security"):
        load_tokens(path)

    assert "readable by other users" in caplog.text


def test_load_tokens_refuses_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"

    with pytest.raises(SecurityConfigError, match=r"^--tokens .*nope\.yaml: cannot read"):
        load_tokens(path)


# --- The role table ---------------------------------------------------------------------------------

ANYONE = None
ALL = frozenset(Role)
ADMIN_ONLY = frozenset({Role.ADMIN})
CLIENTS = frozenset({Role.ADMIN, Role.CLIENT})
WORKERS = frozenset({Role.ADMIN, Role.WORKER})


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("/grpc.health.v1.Health/Check", ANYONE),
        ("/grpc.health.v1.Health/Watch", ANYONE),
        ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", ANYONE),
        ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", ANYONE),
        ("/hms.mgmt.v1.Registry/Register", WORKERS),
        ("/hms.mgmt.v1.Registry/Heartbeat", WORKERS),
        ("/hms.mgmt.v1.Registry/KeepAlive", WORKERS),
        ("/hms.mgmt.v1.Registry/Deregister", WORKERS),
        ("/hms.mgmt.v1.Registry/Lookup", ALL),
        ("/hms.mgmt.v1.Registry/ListServices", ALL),
        ("/hms.mgmt.v1.Registry/Watch", ALL),
        ("/hms.mgmt.v1.Bus/Publish", ALL),
        ("/hms.mgmt.v1.Bus/PublishStream", ALL),
        ("/hms.mgmt.v1.Bus/Subscribe", ALL),
        ("/hms.mgmt.v1.Bus/Ack", ALL),
        ("/hms.mgmt.v1.Bus/Nack", ALL),
        ("/hms.mgmt.v1.Bus/ListSubjects", ALL),
        ("/hms.mgmt.v1.Bus/ListConsumers", ALL),
        ("/hms.mgmt.v1.Bus/GetConsumerInfo", ALL),
        ("/hms.mgmt.v1.Bus/ListRetention", ALL),
        ("/hms.mgmt.v1.Bus/DeleteConsumer", ADMIN_ONLY),
        ("/hms.mgmt.v1.Bus/SetRetention", ADMIN_ONLY),
        ("/hms.mgmt.v1.Workflow/RegisterDefinition", ADMIN_ONLY),
        ("/hms.mgmt.v1.Workflow/GetDefinition", CLIENTS),
        ("/hms.mgmt.v1.Workflow/ListDefinitions", CLIENTS),
        ("/hms.mgmt.v1.Workflow/StartProcess", CLIENTS),
        ("/hms.mgmt.v1.Workflow/GetProcess", ALL),
        ("/hms.mgmt.v1.Workflow/ListProcesses", CLIENTS),
        ("/hms.mgmt.v1.Workflow/WatchProcess", CLIENTS),
        ("/hms.mgmt.v1.Workflow/SignalProcess", CLIENTS),
        ("/hms.mgmt.v1.Workflow/CancelProcess", CLIENTS),
        ("/hms.mgmt.v1.Workflow/GetHistory", CLIENTS),
        ("/hms.mgmt.v1.Workflow/SubscribeTasks", WORKERS),
        ("/hms.mgmt.v1.Workflow/ReportTaskEvents", WORKERS),
        ("/hms.mgmt.v1.Workflow/ReportTaskEventBatches", WORKERS),
        ("/hms.mgmt.v1.Workflow/CompleteTask", WORKERS),
        ("/hms.mgmt.v1.Workflow/FailTask", WORKERS),
        # Default deny: what the table does not know is for admins only.
        ("/hms.mgmt.v1.Registry/NotYetInvented", ADMIN_ONLY),
        ("/hms.mgmt.v2.Registry/Register", ADMIN_ONLY),
        ("/grpc.health.v1.HealthX/Check", ADMIN_ONLY),
        ("", ADMIN_ONLY),
    ],
)
def test_required_roles(method: str, expected: frozenset[Role] | None) -> None:
    assert required_roles(method) == expected


def contract_methods() -> list[str]:
    """Full paths of every RPC in every generated hms.mgmt.v1 module, and of Envoy's served for the mesh."""
    methods: list[str] = []
    modules = [
        f"hms.mgmt.v1.{m.name}" for m in pkgutil.iter_modules(hms.mgmt.v1.__path__) if m.name.endswith("_pb2")
    ]
    modules += ["envoy.service.discovery.v3.ads_pb2", "envoy.service.status.v3.csds_pb2"]
    for name in modules:
        file: descriptor.FileDescriptor = importlib.import_module(name).DESCRIPTOR
        for service in file.services_by_name.values():
            methods += [f"/{service.full_name}/{method.name}" for method in service.methods]
    return methods


def test_every_contract_method_has_a_row_in_the_role_table() -> None:
    methods = contract_methods()

    services = {method.split("/")[1] for method in methods}
    assert {"hms.mgmt.v1.Registry", "hms.mgmt.v1.Bus", "hms.mgmt.v1.Workflow"} <= services  # the walk works
    assert sorted(set(methods) - set(ROLES)) == []


def test_every_row_of_the_role_table_is_a_contract_method() -> None:
    # A misspelt row would leave the real method admin-only without anyone noticing.
    assert sorted(set(ROLES) - set(contract_methods())) == []


def test_admin_may_call_every_method() -> None:
    assert all(Role.ADMIN in roles for roles in ROLES.values())


# --- The listen policy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LocalHost", "::ffff:127.0.0.1"]
)
def test_loopback_needs_nothing(host: str) -> None:
    check_listen_policy(host, tls=False, tokens=False, insecure=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "[::]", "", "10.0.0.5", "192.168.1.2", "example.com"])
def test_non_loopback_without_protection_is_refused(host: str) -> None:
    with pytest.raises(SecurityConfigError) as raised:
        check_listen_policy(host, tls=False, tokens=False, insecure=False)

    message = str(raised.value)
    for flag in ("--tls-cert", "--tls-key", "--tokens", "--insecure"):
        assert flag in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("tls", "tokens", "insecure"), [(True, False, False), (False, True, False), (False, False, True)]
)
def test_non_loopback_with_tls_tokens_or_insecure_is_accepted(
    tls: bool, tokens: bool, insecure: bool
) -> None:
    check_listen_policy("0.0.0.0", tls=tls, tokens=tokens, insecure=insecure)


# --- TLS credentials --------------------------------------------------------------------------------


@pytest.fixture
def certs(tmp_path: Path) -> TestCerts:
    """A fresh CA with server and client certificates."""
    return make_certs(tmp_path / "certs")


def test_no_tls_files_means_no_credentials() -> None:
    assert server_credentials(None, None, None) is None


def test_tls_and_mutual_tls_credentials_are_built(certs: TestCerts) -> None:
    assert isinstance(server_credentials(certs.server_cert, certs.server_key, None), grpc.ServerCredentials)
    assert isinstance(
        server_credentials(certs.server_cert, certs.server_key, certs.ca_cert), grpc.ServerCredentials
    )


@pytest.mark.parametrize(
    ("cert", "key", "client_ca", "expected"),
    [
        ("server_cert", None, None, "--tls-cert and --tls-key must be given together"),
        (None, "server_key", None, "--tls-cert and --tls-key must be given together"),
        (None, None, "ca_cert", "--tls-client-ca needs --tls-cert and --tls-key"),
        ("missing", "server_key", None, "--tls-cert {missing}: cannot read"),
        ("server_cert", "missing", None, "--tls-key {missing}: cannot read"),
        ("server_cert", "server_key", "missing", "--tls-client-ca {missing}: cannot read"),
        ("server_key", "server_key", None, "--tls-cert {server_key}: not a PEM certificate file"),
        ("garbage", "server_key", None, "--tls-cert {garbage}: not a PEM certificate file"),
        ("server_cert", "server_cert", None, "--tls-key {server_cert}: not a usable PEM private key"),
        ("server_cert", "garbage", None, "--tls-key {garbage}: not a usable PEM private key"),
        (
            "server_cert",
            "client_key",
            None,
            "--tls-key {client_key}: not the private key of --tls-cert {server_cert}",
        ),
        ("server_cert", "server_key", "garbage", "--tls-client-ca {garbage}: not a PEM certificate file"),
    ],
)
def test_bad_tls_settings_name_the_flag_and_file(
    certs: TestCerts, cert: str | None, key: str | None, client_ca: str | None, expected: str
) -> None:
    garbage = certs.ca_cert.parent / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    files = {
        "server_cert": certs.server_cert,
        "server_key": certs.server_key,
        "client_key": certs.client_key,
        "ca_cert": certs.ca_cert,
        "missing": certs.ca_cert.parent / "missing.pem",
        "garbage": garbage,
    }

    def pick(name: str | None) -> Path | None:
        return None if name is None else files[name]

    with pytest.raises(SecurityConfigError) as raised:
        server_credentials(pick(cert), pick(key), pick(client_ca))

    assert str(raised.value).startswith(expected.format(**files))


# --- Through a real server: bearer tokens -------------------------------------------------------------

Metadata = tuple[tuple[str, str], ...]


def bearer(token: str) -> Metadata:
    """Call metadata carrying `token`."""
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
async def guarded(settings: Settings, tmp_path: Path) -> AsyncIterator[grpc.aio.Channel]:
    """A plaintext channel to a control plane that requires bearer tokens."""
    tokens = write(tmp_path / "tokens.yaml", TOKENS_YAML)
    async with (
        running(replace(settings, tokens_file=tokens)) as app,
        grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel,
    ):
        yield channel


def register_request(service: str = "payments") -> registry_pb2.RegisterRequest:
    """A valid registration."""
    return registry_pb2.RegisterRequest(
        instance=registry_pb2.ServiceInstance(service=service, address="127.0.0.1:9000")
    )


def raw(data: bytes) -> bytes:
    """Identity (de)serializer for calls made without the generated stubs."""
    return data


async def status_of(channel: grpc.aio.Channel, path: str, metadata: Metadata) -> tuple[grpc.StatusCode, str]:
    """Call `path` with an empty request (of whatever shape the contract gives it) and return how it ended."""
    method = descriptor_pool.Default().FindMethodByName(path.strip("/").replace("/", "."))
    # Raw bytes both ways: the empty byte string is a valid encoding of every request message.
    call: grpc.aio.Call
    if method.client_streaming and method.server_streaming:
        call = channel.stream_stream(path, raw, raw)(iter(()), metadata=metadata)
    elif method.client_streaming:
        call = channel.stream_unary(path, raw, raw)(iter(()), metadata=metadata)
    elif method.server_streaming:
        call = channel.unary_stream(path, raw, raw)(b"", metadata=metadata)
    else:
        call = channel.unary_unary(path, raw, raw)(b"", metadata=metadata)
    async with asyncio.timeout(5):
        return await call.code(), await call.details()


async def test_worker_may_register(guarded: grpc.aio.Channel) -> None:
    registry = registry_pb2_grpc.RegistryStub(guarded)

    reply = await registry.Register(register_request(), metadata=bearer(WORKER_TOKEN))

    assert reply.instance.service == "payments"


async def test_client_may_look_up_and_watch(guarded: grpc.aio.Channel) -> None:
    registry = registry_pb2_grpc.RegistryStub(guarded)
    await registry.Register(register_request(), metadata=bearer(WORKER_TOKEN))

    found = await registry.Lookup(
        registry_pb2.LookupRequest(service="payments"), metadata=bearer(CLIENT_TOKEN)
    )
    watch = registry.Watch(registry_pb2.WatchRequest(), metadata=bearer(CLIENT_TOKEN))
    async with asyncio.timeout(5):
        first = await watch.read()
    watch.cancel()

    assert [i.service for i in found.instances] == ["payments"]
    assert first != grpc.aio.EOF


async def test_admin_may_call_worker_and_client_rpcs(guarded: grpc.aio.Channel) -> None:
    registry = registry_pb2_grpc.RegistryStub(guarded)

    await registry.Register(register_request("billing"), metadata=bearer(ADMIN_TOKEN))
    listed = await registry.ListServices(registry_pb2.ListServicesRequest(), metadata=bearer(ADMIN_TOKEN))

    assert "billing" in [s.name for s in listed.services]


@pytest.mark.parametrize(
    "path",
    [
        "/hms.mgmt.v1.Workflow/RegisterDefinition",
        "/hms.mgmt.v1.Bus/SetRetention",
        "/hms.mgmt.v1.Bus/DeleteConsumer",
    ],
)
async def test_admin_passes_the_guard_of_admin_only_rpcs(guarded: grpc.aio.Channel, path: str) -> None:
    code, _ = await status_of(guarded, path, bearer(ADMIN_TOKEN))

    # The servicer answers (UNIMPLEMENTED until it lands, then its own validation): the guard let it through.
    assert code not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


@pytest.mark.parametrize(
    ("role", "path"),
    [
        (Role.CLIENT, "/hms.mgmt.v1.Registry/Register"),  # unary
        (Role.CLIENT, "/hms.mgmt.v1.Registry/KeepAlive"),  # bidirectional stream
        (Role.CLIENT, "/hms.mgmt.v1.Registry/Deregister"),
        (Role.CLIENT, "/hms.mgmt.v1.Workflow/SubscribeTasks"),  # server stream
        (Role.CLIENT, "/hms.mgmt.v1.Workflow/ReportTaskEvents"),  # client stream
        (Role.CLIENT, "/hms.mgmt.v1.Workflow/ReportTaskEventBatches"),  # bidirectional stream
        (Role.CLIENT, "/hms.mgmt.v1.Workflow/RegisterDefinition"),
        (Role.WORKER, "/hms.mgmt.v1.Workflow/StartProcess"),
        (Role.WORKER, "/hms.mgmt.v1.Workflow/RegisterDefinition"),
        (Role.WORKER, "/hms.mgmt.v1.Bus/SetRetention"),
    ],
)
async def test_role_is_refused_what_it_may_not_call(guarded: grpc.aio.Channel, role: Role, path: str) -> None:
    code, details = await status_of(guarded, path, bearer(TOKEN_OF[role]))

    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert f"role {role}" in details
    assert path in details


async def test_a_refused_call_changes_nothing(guarded: grpc.aio.Channel) -> None:
    registry = registry_pb2_grpc.RegistryStub(guarded)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await registry.Register(register_request(), metadata=bearer(CLIENT_TOKEN))
    found = await registry.Lookup(
        registry_pb2.LookupRequest(service="payments"), metadata=bearer(ADMIN_TOKEN)
    )

    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert list(found.instances) == []


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param((), id="missing"),
        pytest.param(bearer("not-a-known-token"), id="wrong"),
        pytest.param((("authorization", f"Basic {ADMIN_TOKEN}"),), id="other-scheme"),
        pytest.param((("authorization", ADMIN_TOKEN),), id="no-scheme"),
        pytest.param((("authorization", "Bearer "),), id="empty"),
        pytest.param((*bearer(ADMIN_TOKEN), *bearer(CLIENT_TOKEN)), id="two-headers"),
    ],
)
@pytest.mark.parametrize(
    "path",
    [
        "/hms.mgmt.v1.Registry/Lookup",  # unary, allowed to every role
        "/hms.mgmt.v1.Registry/Watch",  # server stream
        "/hms.mgmt.v1.Registry/KeepAlive",  # bidirectional stream
    ],
)
async def test_missing_or_bad_token_is_unauthenticated(
    guarded: grpc.aio.Channel, metadata: Metadata, path: str
) -> None:
    code, details = await status_of(guarded, path, metadata)

    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert ADMIN_TOKEN not in details


async def test_health_and_reflection_need_no_token(guarded: grpc.aio.Channel) -> None:
    # Built by hand: the typeshed stubs of grpc_health and grpc_reflection describe sync channels only.
    reflection = guarded.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        reflection_pb2.ServerReflectionRequest.SerializeToString,
        reflection_pb2.ServerReflectionResponse.FromString,
    )

    status = await health_status(guarded)
    listing = reflection(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    async with asyncio.timeout(5):
        answer = await listing.read()
    listing.cancel()

    assert status == grpc.StatusCode.OK
    assert isinstance(answer, reflection_pb2.ServerReflectionResponse)
    assert "hms.mgmt.v1.Registry" in [s.name for s in answer.list_services_response.service]


# --- Through a real server: TLS and mutual TLS --------------------------------------------------------


async def health_status(channel: grpc.aio.Channel) -> grpc.StatusCode:
    """How a whole-server health Check over `channel` ends: OK when the server answers SERVING."""
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        health_pb2.HealthCheckRequest.SerializeToString,
        health_pb2.HealthCheckResponse.FromString,
    )
    try:
        async with asyncio.timeout(5):
            reply = await check(health_pb2.HealthCheckRequest())
    except grpc.aio.AioRpcError as error:
        return error.code()
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    return grpc.StatusCode.OK


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_tls_client_trusting_the_ca_connects(settings: Settings, certs: TestCerts, host: str) -> None:
    tls = replace(settings, tls_cert=certs.server_cert, tls_key=certs.server_key)
    trust = grpc.ssl_channel_credentials(root_certificates=certs.ca_cert.read_bytes())

    async with running(tls) as app, grpc.aio.secure_channel(f"{host}:{app.port}", trust) as channel:
        registry = registry_pb2_grpc.RegistryStub(channel)
        await registry.Register(register_request())
        found = await registry.Lookup(registry_pb2.LookupRequest(service="payments"))

    assert len(found.instances) == 1


async def test_plaintext_client_cannot_talk_to_a_tls_server(settings: Settings, certs: TestCerts) -> None:
    tls = replace(settings, tls_cert=certs.server_cert, tls_key=certs.server_key)

    async with running(tls) as app, grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        assert await health_status(channel) == grpc.StatusCode.UNAVAILABLE


@pytest.fixture
async def mutual_tls(settings: Settings, certs: TestCerts) -> AsyncIterator[App]:
    """A control plane that requires client certificates signed by the test CA."""
    mtls = replace(
        settings, tls_cert=certs.server_cert, tls_key=certs.server_key, tls_client_ca=certs.ca_cert
    )
    async with running(mtls) as app:
        yield app


async def test_mutual_tls_client_with_a_certificate_connects(mutual_tls: App, certs: TestCerts) -> None:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=certs.ca_cert.read_bytes(),
        private_key=certs.client_key.read_bytes(),
        certificate_chain=certs.client_cert.read_bytes(),
    )

    async with grpc.aio.secure_channel(f"localhost:{mutual_tls.port}", credentials) as channel:
        assert await health_status(channel) == grpc.StatusCode.OK


async def test_mutual_tls_client_without_a_certificate_is_refused(mutual_tls: App, certs: TestCerts) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=certs.ca_cert.read_bytes())

    async with grpc.aio.secure_channel(f"localhost:{mutual_tls.port}", credentials) as channel:
        assert await health_status(channel) == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_client_with_a_foreign_certificate_is_refused(
    mutual_tls: App, certs: TestCerts, tmp_path: Path
) -> None:
    stranger = make_certs(tmp_path / "stranger")  # signed by another CA
    credentials = grpc.ssl_channel_credentials(
        root_certificates=certs.ca_cert.read_bytes(),
        private_key=stranger.client_key.read_bytes(),
        certificate_chain=stranger.client_cert.read_bytes(),
    )

    async with grpc.aio.secure_channel(f"localhost:{mutual_tls.port}", credentials) as channel:
        assert await health_status(channel) == grpc.StatusCode.UNAVAILABLE


async def test_tls_with_tokens_enforces_both(settings: Settings, certs: TestCerts, tmp_path: Path) -> None:
    both = replace(
        settings,
        tls_cert=certs.server_cert,
        tls_key=certs.server_key,
        tokens_file=write(tmp_path / "tokens.yaml", TOKENS_YAML),
    )
    trust = grpc.ssl_channel_credentials(root_certificates=certs.ca_cert.read_bytes())

    async with running(both) as app, grpc.aio.secure_channel(f"localhost:{app.port}", trust) as channel:
        anonymous, _ = await status_of(channel, "/hms.mgmt.v1.Registry/ListServices", ())
        client, _ = await status_of(channel, "/hms.mgmt.v1.Registry/ListServices", bearer(CLIENT_TOKEN))

    assert (anonymous, client) == (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.OK)


# --- The listen policy, as `mgmt serve` applies it ------------------------------------------------------


def child_env() -> dict[str, str]:
    """This environment without MGMT_* settings, so only the flags under test apply."""
    return {key: value for key, value in os.environ.items() if not key.startswith("MGMT_")}


def test_serve_refuses_a_public_address_without_protection(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "control_plane",
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--data-dir",
        str(tmp_path),
    ]

    done = subprocess.run(command, capture_output=True, text=True, timeout=30, env=child_env(), check=False)

    assert done.returncode != 0
    assert "--insecure" in done.stderr
    assert "--tokens" in done.stderr
    assert "Traceback" not in done.stderr


async def test_serve_with_insecure_listens_on_a_public_address(
    server_process: Callable[..., Awaitable[ServerProcess]],
) -> None:
    # Later flags win: this overrides the fixture's loopback --listen.
    proc = await server_process("--listen", "0.0.0.0:0", "--insecure")
    port = proc.address.rpartition(":")[2]

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        assert await health_status(channel) == grpc.StatusCode.OK
    assert await proc.stop() == 0


def readme_role_table() -> dict[str, frozenset[Role]]:
    """The README's table of what each role may call, as {"/hms.mgmt.v1.Service/Method": roles}."""
    import re

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    table: dict[str, frozenset[Role]] = {}
    for roles_cell, rpcs_cell in re.findall(r"^\| ([a-z, ]+?)(?: \(.*?\))? \| (`.*`) \|$", text, flags=re.M):
        if roles_cell.startswith("anyone"):
            continue  # health and reflection: OPEN_SERVICES, checked by test_required_roles
        roles = frozenset(Role(name.strip()) for name in roles_cell.split(","))
        for rpc in re.findall(r"`([A-Za-z0-9.]+/[A-Za-z]+)`", rpcs_cell):
            # Envoy's services (the mesh's xDS) are written in full; the contract's without hms.mgmt.v1.
            path = f"/{rpc}" if "." in rpc else f"/hms.mgmt.v1.{rpc}"
            assert path not in table, f"{rpc} is in two rows of the README's table"
            table[path] = roles
    return table


def test_readme_role_table_matches_the_code_for_every_rpc() -> None:
    table = readme_role_table()

    assert table == dict(ROLES)
    assert sorted(table) == sorted(contract_methods())
