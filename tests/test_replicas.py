"""Several control-plane replicas on one PostgreSQL database: any replica serves any RPC, nothing is lost.

These tests need PostgreSQL and run in the PostgreSQL pass (`make test-postgres`); each starts its
replicas as child processes on a database of its own.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from control_plane import errors
from hms.mgmt.v1 import bus_pb2, registry_pb2
from hms.mgmt.v1 import workflow_pb2 as pb
from hms_mgmt import Client, HistoryEventType, ProcessState, TaskContext, Worker, duration
from hms_mgmt.types import ChangeType, Process, RegistryChange, RegistryChanges
from services.permit.demo import DEFINITION, DEFINITION_FILE
from services.permit.documents import DocumentService
from services.permit.inspections import InspectionService
from services.permit.notifications import NotificationService
from services.permit.payments import PaymentService
from services.permit.runtime import serving
from tests.conftest import ServerProcess
from tests.ports import free_port
from tests.workflow_support import BUS_WAIT, finish, wait_for_step

Start = Callable[..., Awaitable[ServerProcess]]
T = TypeVar("T")
Handler = Callable[[TaskContext], Awaitable[Mapping[str, Any]]]

# Replicas share one PostgreSQL database: in the PostgreSQL pass only (see tests/conftest.py).
pytestmark = pytest.mark.postgres_pass

TWO_STEPS = """
name: two
steps:
  - {id: first, task: {service: Far, type: work}}
  - {id: second, task: {service: Far, type: work}}
"""


class Replicas:
    """Replicas of one control plane on one database, each on an address of its own."""

    def __init__(self, start: Start, store_url: str) -> None:
        self._start = start
        self._store_url = store_url
        self.addresses: list[str] = []
        self.processes: list[ServerProcess] = []

    async def add(self, count: int) -> None:
        for _ in range(count):
            address = f"127.0.0.1:{free_port()}"
            self.addresses.append(address)
            self.processes.append(await self._start("--listen", address, "--store", self._store_url))

    async def restart(self, index: int, signum: int = signal.SIGTERM) -> None:
        await self.processes[index].stop(signum)
        self.processes[index] = await self._start(
            "--listen", self.addresses[index], "--store", self._store_url
        )


@pytest.fixture
async def replicas(server_process: Start, postgres_url: str) -> Replicas:
    return Replicas(server_process, postgres_url)


@contextlib.asynccontextmanager
async def clients(addresses: list[str]) -> AsyncIterator[list[Client]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(Client(a)) for a in addresses]


async def next_change(watch: AsyncIterator[RegistryChanges]) -> RegistryChange:
    """The next change of a watch, skipping progress frames."""
    async for frame in watch:
        if frame.changes:
            return frame.changes[0]
    raise AssertionError("watch ended")


@pytest.mark.timeout(60)
async def test_a_watch_on_one_replica_sees_what_another_registers(replicas: Replicas) -> None:
    await replicas.add(2)
    async with clients(replicas.addresses) as (a, b):
        async with b.registry.watch("Orders") as watch:
            await a.registry.register("Orders", "10.0.0.1:80", instance_id="o-1")
            async with asyncio.timeout(10):
                up = await next_change(watch)
                await a.registry.deregister("Orders", "o-1")
                down = await next_change(watch)
        looked_up = await b.registry.lookup("Orders")

    assert (up.type, up.instance.instance_id) == (ChangeType.UP, "o-1")
    assert down.type == ChangeType.DOWN and down.revision == up.revision + 1
    assert looked_up == []


@pytest.mark.timeout(60)
async def test_a_subscriber_on_one_replica_gets_what_another_publishes(replicas: Replicas) -> None:
    await replicas.add(2)
    async with clients(replicas.addresses) as (a, b), b.bus.subscribe("orders.>") as subscription:
        for n in range(20):
            await a.bus.publish(f"orders.{n}", str(n).encode())
        received: list[str] = []
        async with asyncio.timeout(10):
            async for delivery in subscription:
                received.append(delivery.message.subject)
                if len(received) == 20:
                    break

    assert received == [f"orders.{n}" for n in range(20)]


@pytest.mark.timeout(60)
async def test_a_durable_consumer_made_on_one_replica_is_listed_and_deleted_on_another(
    replicas: Replicas,
) -> None:
    await replicas.add(2)
    async with clients(replicas.addresses) as (a, b):
        async with a.bus.subscribe("orders.>", durable="audit", explicit_ack=True):
            pass
        listed = [c.name for c in await b.bus.consumers()]
        await b.bus.delete_consumer("audit")
        after = [c.name for c in await a.bus.consumers()]

    assert listed == ["audit"]
    assert after == []


@pytest.mark.timeout(60)
async def test_a_process_started_on_one_replica_runs_on_a_worker_of_another(replicas: Replicas) -> None:
    await replicas.add(2)
    async with clients(replicas.addresses) as (a, b):
        await a.workflow.apply(TWO_STEPS)
        async with far_worker(b):
            # Started on A, whose dispatcher has no worker of Far: B claims the attempts.
            process = await a.workflow.start("two", {})
            async with asyncio.timeout(20):
                final = await a.workflow.wait(process.id)

    assert final.state == ProcessState.COMPLETED


async def _echo(task: TaskContext) -> dict[str, str]:
    return {"step": task.step_id}


@contextlib.asynccontextmanager
async def far_worker(client: Client) -> AsyncIterator[Worker]:
    """A worker of the `Far` service on `client`'s replica, ready for tasks during the block."""
    worker = Worker(client, "Far", max_in_flight=4)
    worker.task("work")(_echo)
    run = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(10):
            await worker.ready.wait()
        yield worker
    finally:
        worker.stop()
        await run


@pytest.mark.timeout(60)
async def test_a_lease_renewed_on_another_replica_stays_and_lapses_once(replicas: Replicas) -> None:
    await replicas.add(2)
    async with clients(replicas.addresses) as (a, b):
        async with a.registry.watch("Beat") as watch:
            registered = await b.registry.register("Beat", "10.0.0.2:80", instance_id="b-1", ttl_s=1.0)
            lease_id = registered.lease.lease_id
            # Renewed only on B for three TTLs: whichever replica expires leases must see the renewals.
            for _ in range(10):
                await b.registry.heartbeat(lease_id)
                await asyncio.sleep(0.3)  # waits-on-purpose: renewals spread over three TTLs
            async with asyncio.timeout(10):
                up = await next_change(watch)
                down = await next_change(watch)
            after = await a.registry.lookup("Beat", include_unhealthy=True)
        async with b.registry.watch("Beat", after_revision=down.revision) as later:
            revision = later.revision

    assert up.type == ChangeType.UP
    assert (down.type, down.reason) == (ChangeType.DOWN, "lease_expired")
    # One replica expired it: nothing after the one DOWN change.
    assert revision == down.revision
    assert after == []


async def eventually(work: Callable[[], Awaitable[T]], timeout_s: float = 20.0) -> T:
    """Run `work` until it stops failing with Unavailable (a replica reconnecting to its database)."""
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                return await work()
            except errors.Unavailable:
                await asyncio.sleep(0.1)  # waits-on-purpose: pacing retries while the replica reconnects


@pytest.mark.timeout(90)
async def test_replicas_carry_on_when_the_database_drops_their_connections(
    replicas: Replicas, postgres_url: str
) -> None:
    await replicas.add(2)
    async with clients(replicas.addresses) as (a, b):
        await a.workflow.apply(TWO_STEPS)
        async with far_worker(b):
            # As in a database restart or failover: every session of both replicas ends at once.
            async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            async with b.registry.watch("Orders") as watch:
                await eventually(lambda: a.registry.register("Orders", "10.0.0.9:80", instance_id="o-9"))
                async with asyncio.timeout(20):
                    up = await next_change(watch)
            published = await eventually(lambda: a.bus.publish("orders.1", b"x", message_id="after-drop"))
            process = await eventually(lambda: a.workflow.start("two", {}, business_key="after-drop"))
            async with asyncio.timeout(30):
                final = await a.workflow.wait(process.id)
            history = await a.workflow.history(process.id)

    assert (up.type, up.instance.instance_id) == (ChangeType.UP, "o-9")
    assert published.sequence >= 1
    assert final.state == ProcessState.COMPLETED
    completed = [e.step_id for e in history if e.type == HistoryEventType.STEP_COMPLETED]
    assert completed == ["first", "second"]


class CountingHealth(health_pb2_grpc.HealthServicer):
    """Answers SERVING and notes who asked: each replica that probes dials from a connection of its own."""

    def __init__(self) -> None:
        self.peers: list[str] = []
        self.asked = asyncio.Event()

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthCheckResponse:
        self.peers.append(context.peer())
        self.asked.set()
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


@pytest.mark.timeout(60)
async def test_only_one_replica_probes_an_instance(replicas: Replicas) -> None:
    await replicas.add(3)
    checker = CountingHealth()
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with clients(replicas.addresses) as (a, _, _):
            probe = registry_pb2.HealthProbe(interval=duration(0.1), timeout=duration(0.1), threshold=1)
            await a.registry.register("Probed", f"127.0.0.1:{port}", instance_id="p-1", probe=probe)
            async with asyncio.timeout(20):
                while len(checker.peers) < 20:
                    checker.asked.clear()
                    await checker.asked.wait()
    finally:
        await server.stop(None)

    assert len(set(checker.peers)) == 1, set(checker.peers)


NAP = """
name: nap
steps:
  - id: nap
    sleep: 3s
  - id: after
    sleep: 10ms
"""


@pytest.mark.timeout(60)
async def test_timers_held_by_two_replicas_complete_each_step_once(replicas: Replicas) -> None:
    await replicas.add(2)
    async with clients(replicas.addresses) as (a, b):
        await a.workflow.apply(NAP)
        ids = [(await a.workflow.start("nap", {"n": n})).id for n in range(40)]
        # Restarted, B loads every timer too: both replicas now hold each one when it comes due.
        await replicas.restart(1)
        await b.wait_ready(10)
        async with asyncio.timeout(30):
            finals = [await finish(a, pid) for pid in ids]
        histories = [await a.workflow.history(pid) for pid in ids]

    assert {p.state for p in finals} == {ProcessState.COMPLETED}
    for history in histories:
        completed = collections.Counter(
            e.step_id for e in history if e.type == HistoryEventType.STEP_COMPLETED
        )
        assert completed == {"nap": 1, "after": 1}


@pytest.mark.timeout(90)
async def test_when_the_leader_dies_another_replica_takes_over_its_duties(replicas: Replicas) -> None:
    await replicas.add(1)  # the first replica takes the leader lock
    await replicas.add(1)
    async with clients(replicas.addresses) as (a, b):
        await a.workflow.apply(BUS_WAIT)
        process = await a.workflow.start("inspection", {"application_id": "x"})
        await wait_for_step(a, process.id, "result")
        await replicas.processes[0].stop(signal.SIGKILL)
        async with b.registry.watch("Short") as watch:
            await b.registry.register("Short", "10.0.0.3:80", instance_id="s-1", ttl_s=1.0)
            async with asyncio.timeout(20):
                up = await next_change(watch)
                down = await next_change(watch)  # expired by B, now the leader
        # The wait was started on A; B adopts it as leader and resumes the process on a message.
        await b.bus.publish(
            "inspection.b.result", json.dumps({"application_id": "x", "approved": True}).encode()
        )
        async with asyncio.timeout(30):
            final = await finish(b, process.id)

    assert any("took leadership" in line for line in replicas.processes[0].log)
    assert up.type == ChangeType.UP
    assert (down.type, down.reason) == (ChangeType.DOWN, "lease_expired")
    assert (final.state, dict(final.output)) == (ProcessState.COMPLETED, {"approved": True})


# -- the whole platform on three replicas ----------------------------------------------------------

PROCESSES = 500


def gone(exc: BaseException) -> bool:
    """Whether a call failed because its replica is going away (so another one should be asked)."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    return isinstance(exc, errors.Unavailable | ConnectionError | asyncio.InvalidStateError)


MESSAGES = 300


def application(n: int) -> dict[str, object]:
    return {
        "application_id": f"BP-{n:04d}",
        "applicant": f"applicant {n}",
        "cost": 80_000.0,
        "documents": ["site_plan", "ownership_proof"],
        "requested_date": "2026-12-02",
    }


async def with_failover(clients_: list[Client], first: int, work: Callable[[Client], Awaitable[T]]) -> T:
    """Run `work` on replica `first`, or on the next ones while a replica is down."""
    for attempt in range(60):
        client = clients_[(first + attempt) % len(clients_)]
        try:
            return await work(client)
        except Exception as exc:
            if not gone(exc):
                raise
            await asyncio.sleep(0.05)  # waits-on-purpose: pacing retries across replicas
    raise AssertionError("no replica answered")


@pytest.mark.timeout(300)
async def test_permit_processes_finish_exactly_once_while_replicas_die_and_restart(
    replicas: Replicas,
) -> None:
    await replicas.add(3)
    handled = 0
    progress = asyncio.Event()

    def counting(spec_handlers: dict[str, Handler]) -> None:
        for name, handler in list(spec_handlers.items()):

            async def run(task: TaskContext, handler: Handler = handler) -> Mapping[str, Any]:
                nonlocal handled
                result = await handler(task)
                handled += 1
                progress.set()
                return result

            spec_handlers[name] = run

    received: dict[str, int] = collections.Counter()
    acknowledged: set[str] = set()
    delivered = asyncio.Event()

    async with clients(replicas.addresses) as planes, AsyncExitStack() as stack:
        await planes[0].workflow.apply(await asyncio.to_thread(DEFINITION_FILE.read_text))
        # Every service has an instance on every replica.
        # Every service has an instance starting on every replica; each fails over to the others.
        for index in range(3):
            rotated = replicas.addresses[index:] + replicas.addresses[:index]
            worker_client = await stack.enter_async_context(Client(rotated))
            for service in (DocumentService(), PaymentService(), InspectionService(), NotificationService()):
                spec = service.spec()
                handlers = dict(spec.handlers)
                counting(handlers)
                spec = type(spec)(spec.name, spec.version, spec.tags, handlers)
                await stack.enter_async_context(serving(worker_client, spec))
        # A durable consumer, first on replica 1 (killed below); the SDK resubscribes elsewhere.
        subscriber_client = await stack.enter_async_context(
            Client(replicas.addresses[1:] + replicas.addresses[:1])
        )

        async def subscribe() -> None:
            async with subscriber_client.bus.subscribe(
                "audit.>",
                durable="audit",
                explicit_ack=True,
                start=bus_pb2.START_POSITION_ALL,
                ack_wait_s=2.0,
            ) as subscription:
                async for delivery in subscription:
                    received[delivery.message.message_id] += 1
                    delivered.set()
                    # An ack lost with its replica only means the message comes again (at least once).
                    with contextlib.suppress(errors.Unavailable):
                        await subscriber_client.bus.ack(delivery.delivery_id)

        async def publish() -> None:
            for n in range(MESSAGES):
                message_id = f"audit-{n}"

                async def send(client: Client, m: str = message_id) -> object:
                    return await client.bus.publish("audit.permit", m.encode(), message_id=m)

                await with_failover(planes, 2, send)
                acknowledged.add(message_id)
                await asyncio.sleep(0.01)  # waits-on-purpose: publishing spread over the whole run

        subscriber = asyncio.create_task(subscribe())
        publishing = asyncio.create_task(publish())

        async def start(n: int) -> str:
            async def go(client: Client) -> str:
                process = await client.workflow.start(DEFINITION, application(n), business_key=f"BP-{n:04d}")
                await client.workflow.signal(
                    process.id, "inspection_result", {"approved": True}, signal_id=f"insp-{n}"
                )
                return process.id

            result = await with_failover(planes, n % 3, go)
            assert isinstance(result, str)
            return result

        ids = list(await asyncio.gather(*(start(n) for n in range(PROCESSES))))
        steps = PROCESSES * 5
        for fraction, action in ((0.25, "kill"), (0.6, "restart")):
            async with asyncio.timeout(90):
                while handled < fraction * steps:
                    progress.clear()
                    await progress.wait()
            if action == "kill":
                await replicas.processes[1].stop(signal.SIGKILL)
            else:
                await replicas.restart(2)

        async with asyncio.timeout(120):

            async def wait(client: Client, process_id: str) -> Process:
                return await client.workflow.wait(process_id)

            finals = [await with_failover(planes, 0, functools.partial(wait, process_id=pid)) for pid in ids]
            histories = [await planes[0].workflow.history(pid) for pid in ids]
            await publishing
            while not set(received) >= acknowledged:
                delivered.clear()
                await asyncio.wait(
                    [asyncio.ensure_future(delivered.wait()), subscriber], return_when="FIRST_COMPLETED"
                )
                if subscriber.done():
                    subscriber.result()  # raises what ended the subscription
                    raise AssertionError("the subscription ended")
        subscriber.cancel()

    assert collections.Counter(p.state for p in finals) == {pb.PROCESS_STATE_COMPLETED: PROCESSES}
    for history in histories:
        completed = collections.Counter(
            e.step_id for e in history if e.type == HistoryEventType.STEP_COMPLETED
        )
        assert set(completed.values()) == {1}, completed
        assert {"validate", "charge", "assign", "schedule", "inspection", "notify_approved"} <= set(completed)
    assert set(received) == acknowledged and len(acknowledged) == MESSAGES
    assert subscriber_client.address != replicas.addresses[1]  # the consumer did move off the killed replica


CALLED = "name: called\nsteps:\n  - {id: one, task: {service: Far, type: work}}\n"
CALLING = """
name: calling
steps:
  - id: sub
    call: {definition: called}
  - id: each
    map:
      items: "input.xs"
      max_concurrency: 2
      steps:
        - {id: item, task: {service: Far, type: work}, input: {x: "item"}}
"""


@pytest.mark.timeout(60)
async def test_call_and_map_steps_run_across_replicas(replicas: Replicas) -> None:
    await replicas.add(2)
    async with clients(replicas.addresses) as (a, b):
        await a.workflow.apply(CALLED)
        await a.workflow.apply(CALLING)
        async with far_worker(a):
            # Started on B right after A registered both definitions: B loads what the call names.
            process = await b.workflow.start("calling", {"xs": [3, 1, 2]})
            async with asyncio.timeout(20):
                final = await b.workflow.wait(process.id)
            children = await a.workflow.list(parent_process_id=process.id)

    assert final.state == ProcessState.COMPLETED, final.error
    assert [c.state for c in children] == [ProcessState.COMPLETED]
    (each,) = [s for s in final.steps if s.step_id == "each"]
    outputs = each.output["value"]
    assert [x["step"] for x in outputs] == ["item#0", "item#1", "item#2"]
