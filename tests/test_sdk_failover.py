"""The SDK with several control-plane addresses: calls, streams and the Worker move on when a replica goes.

The replicas are real `mgmt serve` child processes. A replica "goes away" by SIGKILL; the next one
is the same store served again on the second address of the list.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import signal
from collections.abc import Awaitable, Callable

import grpc
import pytest

from control_plane import errors
from hms.mgmt.v1 import bus_pb2
from hms_mgmt import Client, Delivery, HistoryEventType, TaskContext, Unavailable, Worker
from hms_mgmt.types import ChangeType, ProcessState
from tests.conftest import ServerProcess
from tests.ports import free_address
from tests.test_bus import take
from tests.test_registry import next_changes

Start = Callable[..., Awaitable[ServerProcess]]

CLOSED = "127.0.0.1:1"  # nothing listens there: connections are refused at once

THREE_STEPS = """
name: failover
steps:
""" + "".join(f"  - {{id: s{n}, task: {{service: Failover, type: step}}}}\n" for n in range(1, 4))


def switches(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "switching to" in r.getMessage()]


async def test_a_client_whose_first_address_refuses_uses_the_next(
    server_process: Start, caplog: pytest.LogCaptureFixture
) -> None:
    live = await server_process()
    caplog.set_level(logging.WARNING, logger="hms_mgmt")

    async with Client(f"{CLOSED}, {live.address}") as client:
        services = await client.registry.list_services()  # a read: retried on the live address
        address = client.address
    async with Client([CLOSED, live.address]) as client, client.registry.watch() as stream:
        watched = stream.revision  # a stream opened on the live address
    async with Client([CLOSED, live.address]) as client:
        with pytest.raises(Unavailable) as refused:
            await client.bus.publish("orders.new", b"no id")  # not safe to repeat: raised, not retried
        then = await client.bus.publish("orders.new", b"no id")  # the client moved on meanwhile
        deduplicated = await client.bus.publish("orders.new", b"with id", message_id="o-1")

    assert services == [] and watched == 0
    assert address == live.address
    assert isinstance(refused.value, errors.Unavailable)
    assert isinstance(refused.value, grpc.aio.AioRpcError)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert then.sequence == 1 and deduplicated.sequence == 2
    assert all(
        m.startswith(f"control plane {CLOSED} unavailable") and m.endswith(f"switching to {live.address}")
        for m in switches(caplog)
    )
    assert len(switches(caplog)) == 3  # once per client, however many calls saw the refusal


async def test_a_message_published_without_an_id_is_not_sent_twice(server_process: Start) -> None:
    live = await server_process()
    second = free_address()

    async with Client([live.address, second]) as client:
        await client.bus.publish("orders.new", b"stored")
        await live.stop(signal.SIGKILL)
        with pytest.raises(Unavailable):
            await client.bus.publish("orders.new", b"maybe stored")

        assert client.address == second


async def test_a_worker_moves_to_the_next_replica_and_every_step_completes_once(
    server_process: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hms_mgmt")
    first = await server_process()
    addresses = [first.address, free_address()]
    runs: collections.Counter[str] = collections.Counter()
    in_s2, release, returning = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def step(task: TaskContext) -> dict[str, str]:
        runs[task.step_id] += 1
        if task.step_id == "s2":
            in_s2.set()
            await release.wait()
            returning.set()
        return {"step": task.step_id}

    worker = Worker(addresses, "Failover", instance_id="failover-1", ttl_s=5.0, drain_timeout_s=1.0)
    worker.task("step")(step)
    run = asyncio.create_task(worker.run())
    try:
        async with Client(addresses) as client:
            await client.workflow.apply(THREE_STEPS)
            async with asyncio.timeout(10):
                await worker.ready.wait()
            process = await client.workflow.start("failover", {}, business_key="permit-1")
            async with asyncio.timeout(10):
                await in_s2.wait()

            await first.stop(signal.SIGKILL)
            release.set()  # s2 finishes while no control plane runs: its completion must wait
            async with asyncio.timeout(5):
                # The handler's task queues the report in the same step as it sets `returning`.
                await returning.wait()
            second = await server_process("--listen", addresses[1])

            async with asyncio.timeout(30):
                final = await client.workflow.wait(process.id)
            history = await client.workflow.history(process.id)
            instances = await client.registry.lookup("Failover", include_unhealthy=True)
    finally:
        worker.stop()
        async with asyncio.timeout(10):
            await run

    assert second.address == addresses[1]
    assert final.state == ProcessState.COMPLETED
    completed = collections.Counter(e.step_id for e in history if e.type == HistoryEventType.STEP_COMPLETED)
    assert completed == {"s1": 1, "s2": 1, "s3": 1}
    assert runs == {"s1": 1, "s2": 1, "s3": 1}  # s2's report was delivered, not its task run again
    assert [i.instance_id for i in instances] == ["failover-1"]  # updated, not duplicated
    # s2's completion waited for the next replica (with s1's, if its answer was lost with the first).
    assert any("reports kept since the last stream broke" in r.getMessage() for r in caplog.records)


async def test_a_watch_resumes_on_the_next_replica_without_missing_a_change(server_process: Start) -> None:
    first = await server_process()
    addresses = [first.address, free_address()]

    async with Client(addresses) as client:
        kept = await client.registry.register("svc", "127.0.0.1:7001", instance_id="a", ttl_s=60)
        async with (
            client.registry.watch("svc") as stream,
            client.registry.keep_alive(kept.lease.lease_id, interval_s=0.1) as lost,
        ):
            up = await client.registry.register("svc", "127.0.0.1:7002", instance_id="b", ttl_s=60)
            before = await next_changes(stream, 1)
            await first.stop(signal.SIGKILL)
            await server_process("--listen", addresses[1])
            async with Client(addresses[1]) as other:  # made while the watch has no stream
                # The keep-alive's refused attempts put the address in gRPC's reconnect backoff, which
                # channels to it in this process share: wait for the connection.
                await other.wait_ready()
                missed = await other.registry.register("svc", "127.0.0.1:7003", instance_id="c", ttl_s=60)
            after = await next_changes(stream, 1, timeout_s=20)
            lease = await client.registry.heartbeat(kept.lease.lease_id)
            assert not lost.is_set()  # the keep-alive stream moved too

    assert [i.instance_id for i in stream.snapshot] == ["a"]
    assert [(c.instance.instance_id, c.revision) for c in before] == [("b", up.revision)]
    assert [(c.type, c.instance.instance_id, c.revision) for c in after] == [
        (ChangeType.UP, "c", missed.revision)
    ]
    assert stream.revision >= missed.revision
    assert lease.lease_id == kept.lease.lease_id


async def test_a_durable_subscriber_resumes_on_the_next_replica_and_loses_nothing(
    server_process: Start,
) -> None:
    first = await server_process()
    addresses = [first.address, free_address()]

    def ids(deliveries: list[Delivery]) -> list[str]:
        return [d.message.message_id for d in deliveries]

    async with (
        Client(addresses) as client,
        client.bus.subscribe("orders.>", durable="audit", explicit_ack=True) as sub,
    ):
        for n in range(6):
            await client.bus.publish("orders.new", b"before", message_id=f"before-{n}")
        acked = await take(sub, 3)
        await client.bus.ack(*(d.delivery_id for d in acked))
        await first.stop(signal.SIGKILL)
        await server_process("--listen", addresses[1])
        for n in range(4):  # each publish fails over first, then is retried: it has an id
            await client.bus.publish("orders.new", b"after", message_id=f"after-{n}")
        rest: list[Delivery] = []
        async with asyncio.timeout(20):
            while not {f"after-{n}" for n in range(4)} <= set(ids(rest)):
                rest.extend(await take(sub, 1, timeout_s=20))
        results = await client.bus.ack(*(d.delivery_id for d in rest))
        info = await client.bus.consumer_info("audit")

    assert sub.endpoint.address == addresses[1]
    assert set(ids(acked)) | set(ids(rest)) == {f"before-{n}" for n in range(6)} | {
        f"after-{n}" for n in range(4)
    }
    assert not set(ids(acked)) & set(ids(rest))  # what was acked before the kill stays acked
    assert set(results) == {bus_pb2.ACK_RESULT_ACCEPTED}
    assert info.num_ack_pending == 0


@pytest.mark.postgres
@pytest.mark.timeout(90)
async def test_on_postgresql_a_client_and_a_worker_move_to_the_surviving_replica(
    server_process: Start, postgres_url: str
) -> None:
    first = await server_process("--store", postgres_url)
    second = await server_process("--store", postgres_url)
    addresses = [first.address, second.address]
    runs: collections.Counter[str] = collections.Counter()
    in_s2, release = asyncio.Event(), asyncio.Event()

    async def step(task: TaskContext) -> dict[str, str]:
        runs[task.step_id] += 1
        if task.step_id == "s2":
            in_s2.set()
            await release.wait()
        return {"step": task.step_id}

    worker = Worker(addresses, "Failover", instance_id="failover-1", ttl_s=5.0, drain_timeout_s=1.0)
    worker.task("step")(step)
    run = asyncio.create_task(worker.run())
    try:
        async with (
            Client(addresses) as client,
            client.registry.watch("svc") as watch,
            client.bus.subscribe("orders.>", durable="audit", explicit_ack=True, ack_wait_s=1) as sub,
        ):
            await client.workflow.apply(THREE_STEPS)
            async with asyncio.timeout(10):
                await worker.ready.wait()
            process = await client.workflow.start("failover", {}, business_key="permit-1")
            await client.bus.publish("orders.new", b"before", message_id="before")
            async with asyncio.timeout(10):
                await in_s2.wait()
                (early,) = await take(sub, 1)
                await client.bus.ack(early.delivery_id)

            await first.stop(signal.SIGKILL)  # the replica everything uses
            release.set()
            async with Client(second.address) as other:
                missed = await other.registry.register("svc", "127.0.0.1:7003", instance_id="c", ttl_s=60)
            await client.bus.publish("orders.new", b"after", message_id="after")
            async with asyncio.timeout(30):
                final = await client.workflow.wait(process.id)
                changes = await next_changes(watch, 1, timeout_s=30)
                (late,) = await take(sub, 1, timeout_s=30)
            history = await client.workflow.history(process.id)
            acked = await client.bus.ack(late.delivery_id)
    finally:
        worker.stop()
        async with asyncio.timeout(10):
            await run

    assert final.state == ProcessState.COMPLETED
    completed = collections.Counter(e.step_id for e in history if e.type == HistoryEventType.STEP_COMPLETED)
    assert completed == {"s1": 1, "s2": 1, "s3": 1}
    assert runs["s1"] == runs["s3"] == 1 and runs["s2"] in (1, 2)  # s2 again only if reclaimed first
    assert [(c.instance.instance_id, c.revision) for c in changes] == [("c", missed.revision)]
    assert (early.message.message_id, late.message.message_id) == ("before", "after")
    assert acked == [bus_pb2.ACK_RESULT_ACCEPTED]
    assert sub.endpoint.address == second.address


async def test_calls_sent_while_a_replica_shuts_down_gracefully_are_answered_by_the_next(
    server_process: Callable[..., Awaitable[ServerProcess]],
) -> None:
    """gRPC's core answers CANCELLED to calls that reach a server after its shutdown began but before a
    handler took them (grpc/grpc#41785); such a call never ran, so the SDK takes it as UNAVAILABLE."""
    stopping = await server_process()
    standby = await server_process(data_dir=stopping.data_dir.with_name("standby"))
    outcomes: collections.Counter[str] = collections.Counter()
    flowing, answered_by_standby = asyncio.Event(), asyncio.Event()

    async with Client([stopping.address, standby.address]) as client:
        await client.registry.list_services()
        assert client.address == stopping.address  # the first address, used until it goes

        async def read_until_moved() -> None:
            # Reads are safe to repeat: the SDK sends them again on the next address.
            while not answered_by_standby.is_set():
                try:
                    await client.registry.list_services()
                except Exception as exc:  # every failure is a finding: counted by its type
                    outcomes[describe_failure(exc)] += 1
                    flowing.set()
                    return
                outcomes["answered"] += 1
                if outcomes["answered"] >= 100:
                    flowing.set()
                if client.address == standby.address:
                    answered_by_standby.set()

        readers = [asyncio.create_task(read_until_moved()) for _ in range(50)]
        async with asyncio.timeout(30):
            await flowing.wait()
        await stopping.stop(signal.SIGTERM)
        async with asyncio.timeout(30):
            await asyncio.gather(*readers)

    assert set(outcomes) == {"answered"}, outcomes
    assert answered_by_standby.is_set()


def describe_failure(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{type(exc).__name__} {exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"
