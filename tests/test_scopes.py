"""Scoped worker tokens and unforgeable task tokens and delivery ids, through a real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import struct_pb2

from control_plane.server import App, running
from control_plane.settings import Settings
from hms.mgmt.v1 import (
    bus_pb2,
    bus_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)
from tests.test_security import bearer, write
from tests.workflow_support import next_tasks

ADMIN = "admin-5d1e"
CLIENT = "client-08a2"
PAYMENTS = "payments-worker-77c1"
DOCUMENTS = "documents-worker-3b90"

TOKENS = f"""
tokens:
  - {{token: "{ADMIN}", role: admin, name: ops}}
  - {{token: "{CLIENT}", role: client, name: portal}}
  - {{token: "{PAYMENTS}", role: worker, name: payments, services: [PaymentService]}}
  - {{token: "{DOCUMENTS}", role: worker, name: documents, services: [DocumentService]}}
"""

VALIDATE = """
name: validate_only
steps:
  - id: validate
    task: {service: DocumentService, type: validateDocs}
"""


@pytest.fixture
async def scoped(settings: Settings, tmp_path: Path) -> AsyncIterator[tuple[App, grpc.aio.Channel]]:
    """A control plane with scoped worker tokens, and a plaintext channel to it."""
    tokens = write(tmp_path / "tokens.yaml", TOKENS)
    async with (
        running(replace(settings, tokens_file=tokens)) as app,
        grpc.aio.insecure_channel(app.address) as channel,
    ):
        yield app, channel


def instance(service: str, address: str, instance_id: str = "i-1") -> registry_pb2.RegisterRequest:
    return registry_pb2.RegisterRequest(
        instance=registry_pb2.ServiceInstance(service=service, instance_id=instance_id, address=address)
    )


async def code_of(call: Awaitable[Any]) -> grpc.StatusCode:
    """The status code a unary call ends with."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_worker_token_acts_only_for_the_services_of_its_scope(
    scoped: tuple[App, grpc.aio.Channel],
) -> None:
    app, channel = scoped
    registry = registry_pb2_grpc.RegistryStub(channel)
    await registry.Register(instance("DocumentService", "10.0.0.1:7001"), metadata=bearer(DOCUMENTS))

    as_payments = bearer(PAYMENTS)
    register_other = await code_of(
        registry.Register(instance("DocumentService", "10.0.0.9:7001", "i-2"), metadata=as_payments)
    )
    hijack = await code_of(
        registry.Register(instance("DocumentService", "10.6.6.6:7001"), metadata=as_payments)
    )
    deregister_other = await code_of(
        registry.Deregister(
            registry_pb2.DeregisterRequest(service="DocumentService", instance_id="i-1"), metadata=as_payments
        )
    )
    own = await registry.Register(instance("PaymentService", "10.0.0.2:7002"), metadata=as_payments)
    by_admin = await registry.Register(instance("AuditService", "10.0.0.3:7003"), metadata=bearer(ADMIN))

    assert register_other == hijack == deregister_other == grpc.StatusCode.PERMISSION_DENIED
    [kept] = app.registry.instances("DocumentService")
    assert kept.address == "10.0.0.1:7001", "a token outside the scope moved another service's traffic"
    assert own.instance.service == "PaymentService"
    assert by_admin.instance.service == "AuditService"


async def test_worker_token_takes_no_tasks_of_another_service(scoped: tuple[App, grpc.aio.Channel]) -> None:
    _, channel = scoped
    await registry_pb2_grpc.RegistryStub(channel).Register(
        instance("DocumentService", "10.0.0.1:7001"), metadata=bearer(DOCUMENTS)
    )
    stream = workflow_pb2_grpc.WorkflowStub(channel).SubscribeTasks(
        workflow_pb2.SubscribeTasksRequest(service="DocumentService", instance_id="i-1"),
        metadata=bearer(PAYMENTS),
    )

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async with asyncio.timeout(10):
            await stream.read()

    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_task_tokens_cannot_be_forged_or_used_by_another_service(
    scoped: tuple[App, grpc.aio.Channel],
) -> None:
    _, channel = scoped
    workflow = workflow_pb2_grpc.WorkflowStub(channel)
    await workflow.RegisterDefinition(
        workflow_pb2.RegisterDefinitionRequest(source=VALIDATE), metadata=bearer(ADMIN)
    )
    await registry_pb2_grpc.RegistryStub(channel).Register(
        instance("DocumentService", "10.0.0.1:7001"), metadata=bearer(DOCUMENTS)
    )
    tasks = workflow.SubscribeTasks(
        workflow_pb2.SubscribeTasksRequest(service="DocumentService", instance_id="i-1"),
        metadata=bearer(DOCUMENTS),
    )
    started = await workflow.StartProcess(
        workflow_pb2.StartProcessRequest(definition="validate_only"), metadata=bearer(CLIENT)
    )
    [task] = (await next_tasks(tasks)).tasks
    output = struct_pb2.Struct()
    output.update({"ok": True})

    def complete(token: str, by: str) -> Awaitable[workflow_pb2.CompleteTaskResponse]:
        return workflow.CompleteTask(
            workflow_pb2.CompleteTaskRequest(task_token=token, output=output), metadata=bearer(by)
        )

    # The readable form an attacker could write from a process id alone, and a tampered genuine token.
    guessed = await code_of(complete(f"{started.process.id}/validate/1/t", DOCUMENTS))
    tampered = await code_of(complete(task.task_token.replace("/1/t", "/2/t"), DOCUMENTS))
    other_service = await code_of(complete(task.task_token, PAYMENTS))
    process = await workflow.GetProcess(
        workflow_pb2.GetProcessRequest(process_id=started.process.id), metadata=bearer(CLIENT)
    )
    genuine = await complete(task.task_token, DOCUMENTS)
    tasks.cancel()

    assert guessed == tampered == grpc.StatusCode.INVALID_ARGUMENT
    assert other_service == grpc.StatusCode.PERMISSION_DENIED
    assert process.process.state == workflow_pb2.PROCESS_STATE_RUNNING, "a refused report changed the process"
    assert genuine.result == workflow_pb2.REPORT_RESULT_ACCEPTED


async def test_delivery_ids_cannot_be_forged(scoped: tuple[App, grpc.aio.Channel]) -> None:
    _, channel = scoped
    bus = bus_pb2_grpc.BusStub(channel)
    subscription = bus.Subscribe(
        bus_pb2.SubscribeRequest(
            pattern="permit.>",
            durable="audit",
            ack_mode=bus_pb2.ACK_MODE_EXPLICIT,
            start=bus_pb2.START_POSITION_ALL,
        ),
        metadata=bearer(CLIENT),
    )
    await bus.Publish(
        bus_pb2.PublishRequest(message=bus_pb2.BusMessage(subject="permit.a1.submitted", data=b"{}")),
        metadata=bearer(CLIENT),
    )
    async with asyncio.timeout(10):
        while True:
            frame = await subscription.read()
            assert isinstance(frame, bus_pb2.SubscribeResponse)
            if frame.deliveries:
                break
    [delivery] = frame.deliveries

    def ack(delivery_id: str) -> Awaitable[bus_pb2.AckResponse]:
        return bus.Ack(
            bus_pb2.AckRequest(items=[bus_pb2.AckItem(delivery_id=delivery_id)]), metadata=bearer(CLIENT)
        )

    guessed = await code_of(ack("audit/1/1"))
    wrong_tag = await code_of(ack(delivery.delivery_id.rsplit(".", 1)[0] + ".AAAAAAAAAAAAAAAAAAAAAA"))
    genuine = await ack(delivery.delivery_id)
    subscription.cancel()

    assert "audit/1/1." in delivery.delivery_id
    assert guessed == wrong_tag == grpc.StatusCode.INVALID_ARGUMENT
    assert list(genuine.results) == [bus_pb2.ACK_RESULT_ACCEPTED]
