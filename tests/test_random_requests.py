"""Property: any well-typed request to any RPC gets a clean status and, when refused, stores nothing.

Hypothesis builds random requests for every method of the three services from their descriptors
(tests/proto_strategies.py). For each one: the answer is a status a client can act on (never UNKNOWN
or INTERNAL), the health service still answers SERVING, and when the call was refused every stored
row is as it was just before it. The control plane runs in the test's event loop; Hypothesis drives
synchronous gRPC calls from a worker thread, and stored rows are read straight from the database.

Bounded: a fixed number of examples per method, derandomized (the same requests every run), every
call under a deadline, every stream ended by the client after its first answer.
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from control_plane.server import running
from control_plane.settings import Settings
from hms.mgmt.v1 import bus_pb2, registry_pb2, workflow_pb2
from tests.proto_strategies import messages
from tests.wire_support import ONE_TASK, Stubs

SERVICES = [
    registry_pb2.DESCRIPTOR.services_by_name["Registry"],
    bus_pb2.DESCRIPTOR.services_by_name["Bus"],
    workflow_pb2.DESCRIPTOR.services_by_name["Workflow"],
]
METHODS = [method for service in SERVICES for method in service.methods]
EXAMPLES_PER_METHOD = 30
DEADLINE_S = 5.0
CLEAN = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
# Methods that never refuse with a status: no fields to get wrong, or answers per item (KeepAlive).
IN_BAND_ONLY = {"ListServices", "ListRetention", "KeepAlive"}
# Columns written behind the requests that cause them: which replica hands out a task (workers come
# and go), and lease renewals, which a replica shares in batches after answering (PostgreSQL).
VOLATILE = {"wf_tasks": {"owner"}, "registry_leases": {"expires_at"}}

SIGNALLED = """
name: signalled
steps:
  - id: wait
    wait_signal: {name: go}
  - id: work
    task: {service: Worker, type: work}
"""


def _token(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


async def seed(stubs: Stubs) -> dict[str, list[Any]]:
    """Real things to name in requests (a process, a task token, a delivery, a lease), by field name."""
    await stubs.workflow.RegisterDefinition(workflow_pb2.RegisterDefinitionRequest(source=SIGNALLED))
    token = await stubs.task_token()
    process_id = await stubs.process()
    lease = await stubs.registry.Register(
        registry_pb2.RegisterRequest(
            instance=registry_pb2.ServiceInstance(service="svc", instance_id="i-1", address="127.0.0.1:9")
        )
    )
    subscription = stubs.bus.Subscribe(
        bus_pb2.SubscribeRequest(pattern="orders.>", durable="d1", ack_mode=bus_pb2.ACK_MODE_EXPLICIT)
    )
    await subscription.read()
    await stubs.bus.Publish(
        bus_pb2.PublishRequest(message=bus_pb2.BusMessage(subject="orders.eu", data=b"{}"))
    )
    async with asyncio.timeout(10):
        frame = await subscription.read()
    subscription.cancel()
    assert isinstance(frame, bus_pb2.SubscribeResponse)
    delivery_id = frame.deliveries[0].delivery_id
    subjects = ["orders.eu", "orders.>", "orders.*", "$DLQ.d1", "a..b", ">", ""]
    return {
        "service": ["svc", "Worker", ""],
        "instance_id": ["i-1", "w-1", ""],
        "address": ["127.0.0.1:9", "[::1]:9", "localhost", "bad address"],
        "lease_id": [lease.lease.lease_id, ""],
        "subject": subjects,
        "pattern": subjects,
        "subject_prefix": subjects,
        "dead_letter_subject": subjects,
        "durable": ["d1", "d2", ""],
        "name": ["d1", "one_task", "signalled", "go", ""],
        "definition": ["one_task", "signalled", ""],
        "source": [ONE_TASK, SIGNALLED, "name: x\nsteps: []\n", "{", ""],
        "process_id": [process_id, ""],
        "task_token": [token, token[:-2], ""],
        "delivery_id": [delivery_id, delivery_id[:-2]],
        "delivery_ids": [delivery_id],
        "page_token": [
            _token('["history",1]'),
            _token(f'["history",{2**64}]'),
            _token('["processes",1e999,"x"]'),
            _token('["subjects","orders"]'),
            "%%%",
        ],
        "version": ["1.0.0", ">=1,<2", "nonsense"],
        "error_code": ["E", ""],
    }


class Rows:
    """Every stored row of every table, read straight from the database (SQLite or PostgreSQL).

    One connection for the whole run, each snapshot one read transaction (consistent across tables).
    """

    def __init__(self, url: str) -> None:
        self._sqlite = url.startswith("sqlite:")
        if self._sqlite:
            path = url.removeprefix("sqlite:///")
            self._db: Any = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
            self._tables = "SELECT name FROM sqlite_master WHERE type = 'table'"
        else:
            self._db = psycopg.connect(url)
            self._db.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            self._tables = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"

    def snapshot(self) -> dict[str, list[str]]:
        if self._sqlite:
            self._db.execute("BEGIN")
        try:
            tables = [row[0] for row in self._db.execute(self._tables).fetchall()]
            return {t: self._rows(self._db.execute(f'SELECT * FROM "{t}"'), t) for t in tables}
        finally:
            if self._sqlite:
                self._db.execute("COMMIT")
            else:
                self._db.commit()

    def close(self) -> None:
        self._db.close()

    @staticmethod
    def _rows(cursor: Any, table: str) -> list[str]:
        names = [d[0] for d in cursor.description]
        kept = [i for i, name in enumerate(names) if name not in VOLATILE.get(table, set())]
        return sorted(repr(tuple(row[i] for i in kept)) for row in cursor.fetchall())


def call(
    channel: grpc.Channel, method: MethodDescriptor, requests: Sequence[Message]
) -> tuple[grpc.StatusCode, list[Any]]:
    """Call `method` with `requests` (one, unless it takes a stream) and return how it ended.

    A response stream is read up to its first answer, then cancelled: the answer counts.
    """
    path = f"/{method.containing_service.full_name}/{method.name}"
    reply = message_factory.GetMessageClass(method.output_type).FromString
    serialize: Callable[[Message], bytes] = lambda m: m.SerializeToString()  # noqa: E731
    answers: list[Any] = []
    try:
        if method.client_streaming and method.server_streaming:
            stream = channel.stream_stream(path, serialize, reply)(iter(requests), timeout=DEADLINE_S)
            answers = list(stream)
        elif method.client_streaming:
            answers = [channel.stream_unary(path, serialize, reply)(iter(requests), timeout=DEADLINE_S)]
        elif method.server_streaming:
            stream = channel.unary_stream(path, serialize, reply)(requests[0], timeout=DEADLINE_S)
            answers = _first(stream)
        else:
            answers = [channel.unary_unary(path, serialize, reply)(requests[0], timeout=DEADLINE_S)]
    except grpc.RpcError as error:
        return error.code(), answers
    return grpc.StatusCode.OK, answers


def _first(stream: Any) -> list[Any]:
    try:
        return [next(iter(stream))]
    except StopIteration:
        return []
    finally:
        stream.cancel()


def refused(code: grpc.StatusCode, answers: list[Any]) -> bool:
    """Whether the call changed nothing by its own account."""
    if code != grpc.StatusCode.OK:
        return not answers
    if answers and isinstance(answers[0], workflow_pb2.ReportTaskEventsResponse):
        return answers[0].accepted == 0
    if answers and all(isinstance(a, workflow_pb2.ReportTaskEventBatchesResponse) for a in answers):
        return all(r != workflow_pb2.REPORT_RESULT_ACCEPTED for a in answers for r in a.results)
    if answers and all(isinstance(a, bus_pb2.PublishStreamResponse) for a in answers):
        return all(a.violations for a in answers)
    return False


def changes(before: dict[str, list[str]], after: dict[str, list[str]]) -> dict[str, Any]:
    """The rows that differ, per table: what went and what came."""
    return {
        table: {
            "gone": sorted(set(rows) - set(after.get(table, []))),
            "new": sorted(set(after.get(table, [])) - set(rows)),
        }
        for table, rows in before.items()
        if rows != after.get(table)
    }


def serving(channel: grpc.Channel) -> bool:
    """Whether the health service answers SERVING (the control plane did not fall over)."""
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        health_pb2.HealthCheckRequest.SerializeToString,
        health_pb2.HealthCheckResponse.FromString,
    )
    return bool(
        check(health_pb2.HealthCheckRequest(), timeout=DEADLINE_S).status
        == health_pb2.HealthCheckResponse.SERVING
    )


def explore(address: str, store_url: str, vocabulary: dict[str, list[Any]]) -> dict[str, int]:
    """Run the property for every method; returns how many calls were refused, per method."""
    refusals: dict[str, int] = {}
    rows = Rows(store_url)
    try:
        with grpc.insecure_channel(address) as channel:
            for method in METHODS:
                refusals[method.name] = 0
                answers_cleanly(channel, method, rows, vocabulary, refusals)()
    finally:
        rows.close()
    return refusals


def answers_cleanly(
    channel: grpc.Channel,
    method: MethodDescriptor,
    rows: Rows,
    vocabulary: dict[str, list[Any]],
    refusals: dict[str, int],
) -> Callable[[], None]:
    """The property for one method, as a Hypothesis test."""
    requests = st.lists(
        messages(method.input_type, vocabulary),
        min_size=0 if method.client_streaming else 1,
        max_size=3 if method.client_streaming else 1,
    )

    @hypothesis_settings(
        max_examples=EXAMPLES_PER_METHOD,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests)
    def check(sent: list[Message]) -> None:
        before = rows.snapshot()
        code, answers = call(channel, method, sent)
        assert code in CLEAN, f"{method.name} answered {code}"
        if refused(code, answers):
            refusals[method.name] += 1
            after = rows.snapshot()
            assert after == before, f"refused {method.name} changed stored rows: {changes(before, after)}"
        assert serving(channel)

    return check


@pytest.mark.timeout(180)
async def test_random_requests_get_clean_statuses(settings: Settings) -> None:
    # Leases long enough not to lapse during the run, and no background trimming: stored rows then
    # change only by the requests themselves.
    quiet = replace(
        settings,
        registry=replace(settings.registry, min_ttl_s=600.0, default_ttl_s=600.0),
        bus=replace(settings.bus, housekeeping_interval_s=3600.0),
    )
    async with running(quiet) as app, grpc.aio.insecure_channel(app.address) as channel:
        stubs = Stubs.on(channel)
        vocabulary = await seed(stubs)
        try:
            refusals = await asyncio.to_thread(explore, app.address, quiet.resolved_store_url, vocabulary)
        finally:
            stubs.close()

    assert set(refusals) == {m.name for m in METHODS}
    # Every method was exercised on its error paths, not only on lucky valid requests.
    assert all(refusals[m.name] > 0 for m in METHODS if m.name not in IN_BAND_ONLY), refusals
