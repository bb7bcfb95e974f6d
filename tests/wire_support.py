"""Helpers for bad-input tests: raw stubs on one channel, status details, hand-encoded protobuf."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2

from hms.mgmt.v1 import (
    bus_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)

# One task step, nothing timed: a process waits for its task as long as the test wants.
# A failed attempt is retried only an hour later: no retry timer fires while a test runs (the property
# test reads every stored row before and after each refused request).
ONE_TASK = """
name: one_task
steps:
  - id: work
    task: {service: Worker, type: work}
    retry: {initial_interval: 1h, max_interval: 1h}
"""


@dataclass
class Stubs:
    """Raw stubs of the three services on one channel, and a worker for ONE_TASK's tasks."""

    channel: grpc.aio.Channel
    registry: registry_pb2_grpc.RegistryAsyncStub
    bus: bus_pb2_grpc.BusAsyncStub
    workflow: workflow_pb2_grpc.WorkflowAsyncStub
    tasks: (
        grpc.aio.UnaryStreamCall[workflow_pb2.SubscribeTasksRequest, workflow_pb2.SubscribeTasksResponse]
        | None
    ) = None

    @classmethod
    def on(cls, channel: grpc.aio.Channel) -> Stubs:
        return cls(
            channel,
            registry_pb2_grpc.RegistryStub(channel),
            bus_pb2_grpc.BusStub(channel),
            workflow_pb2_grpc.WorkflowStub(channel),
        )

    async def process(self) -> str:
        """A new running ONE_TASK process (the definition is registered on first use)."""
        await self.workflow.RegisterDefinition(workflow_pb2.RegisterDefinitionRequest(source=ONE_TASK))
        started = await self.workflow.StartProcess(workflow_pb2.StartProcessRequest(definition="one_task"))
        return started.process.id

    async def task_token(self) -> str:
        """The token of a fresh task attempt, handed to this test's worker."""
        if self.tasks is None:
            await self.registry.Register(
                registry_pb2.RegisterRequest(
                    instance=registry_pb2.ServiceInstance(
                        service="Worker", instance_id="w-1", address="127.0.0.1:9"
                    )
                )
            )
            self.tasks = self.workflow.SubscribeTasks(
                workflow_pb2.SubscribeTasksRequest(service="Worker", instance_id="w-1", max_in_flight=10_000)
            )
            ready = await self.tasks.read()
            assert isinstance(ready, workflow_pb2.SubscribeTasksResponse) and ready.ready
        await self.process()
        async with asyncio.timeout(10):
            while True:
                frame = await self.tasks.read()
                assert isinstance(frame, workflow_pb2.SubscribeTasksResponse)
                if frame.tasks:
                    return frame.tasks[0].task_token

    def close(self) -> None:
        if self.tasks is not None:
            self.tasks.cancel()


def details_of(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The google.rpc.Status carried in the trailers of a failed call (empty if none)."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            assert isinstance(value, bytes)
            return status_pb2.Status.FromString(value)
    return status_pb2.Status()


def violations(error: grpc.aio.AioRpcError) -> list[str]:
    """Fields named by the google.rpc.BadRequest detail of a failed call."""
    fields: list[str] = []
    for detail in details_of(error).details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return fields


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The google.rpc.ErrorInfo detail of a failed call."""
    for detail in details_of(error).details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError("no ErrorInfo detail")


def raw(data: bytes) -> bytes:
    """Identity (de)serializer, for calls that send bytes of our own making."""
    return data


async def serving(channel: grpc.aio.Channel) -> bool:
    """Whether the control plane's health service answers SERVING."""
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        health_pb2.HealthCheckRequest.SerializeToString,
        health_pb2.HealthCheckResponse.FromString,
    )
    reply = await check(health_pb2.HealthCheckRequest())
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def varint(n: int) -> bytes:
    """A protobuf base-128 varint."""
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def delimited(number: int, payload: bytes) -> bytes:
    """A length-delimited field (strings, bytes, messages)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def nested_struct(depth: int) -> bytes:
    """A google.protobuf.Struct {"a": {"a": ... "x"}} of `depth` objects, encoded by hand.

    The Python library refuses to build or copy messages nested past its parse limit, so bytes
    nested that deep can only be written directly.
    """
    value = delimited(3, b"x")  # Value.string_value
    struct = b""
    for _ in range(depth):
        struct = delimited(1, delimited(1, b"a") + delimited(2, value))  # Struct.fields["a"]
        value = delimited(5, struct)  # Value.struct_value
    return struct
