"""Background loops, reader connections and leases when the store fails (issue 10: robustness).

Faults are injected into a real control plane: `Outage` makes some of its store's methods raise
UNAVAILABLE for a while, as they do while PostgreSQL fails over; `Slow` stands in for a reader
connection under load. Everything else is real: servers on free ports, SDK clients, the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from control_plane.core.registry import Registration
from control_plane.errors import Unavailable
from control_plane.models import ChangeType, Instance
from control_plane.server import App, running
from control_plane.settings import Settings
from control_plane.storage import Store, open_store
from hms.mgmt.v1 import registry_pb2 as pb
from hms_mgmt import Client, TaskContext, WatchStream
from hms_mgmt.types import ChangeType as Change
from hms_mgmt.types import HealthStatus, ProcessState, RegistryChange
from tests.conftest import with_registry
from tests.workflow_support import BUS_WAIT, Services


class Outage:
    """Makes some store methods raise UNAVAILABLE while active; counts the calls refused and let through."""

    def __init__(self, store: Store, *methods: str, refuse: int | None = None) -> None:
        # With `refuse`, the outage ends by itself after refusing that many calls.
        self._refuse = refuse
        self.active = False
        self.refused = 0
        self.passed = 0
        self._changed = asyncio.Condition()
        for name in methods:
            setattr(store, name, self._wrap(name, getattr(store, name)))

    def _wrap(self, name: str, original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.active:
                self.refused += 1
                if self._refuse is not None and self.refused >= self._refuse:
                    self.active = False
                await self._note()
                raise Unavailable(f"injected store outage ({name})")
            result = await original(*args, **kwargs)
            self.passed += 1
            await self._note()
            return result

        return call

    async def _note(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def begin(self) -> None:
        self.active = True
        self.refused = self.passed = 0

    def end(self) -> None:
        self.active = False
        self.passed = 0

    async def wait(self, *, refused: int = 0, passed: int = 0, timeout_s: float = 10.0) -> None:
        """Until `refused` calls were refused (since `begin`) and `passed` let through (since `begin`/`end`)."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: self.refused >= refused and self.passed >= passed)


async def next_changes(stream: WatchStream, count: int, timeout_s: float = 10.0) -> list[RegistryChange]:
    """Read until `count` changes arrived (progress messages are skipped)."""
    changes: list[RegistryChange] = []
    async with asyncio.timeout(timeout_s):
        async for response in stream:
            changes.extend(response.changes)
            if len(changes) >= count:
                return changes
    raise AssertionError("watch ended early")


async def still_serving(client: Client) -> None:
    """The server answers while a loop is failing: the loop's failure did not take it down."""
    async with asyncio.timeout(5):
        await client.registry.lookup("anything")
        await client.registry.list_services()


# -- 1. every long-running loop survives store failures and catches up --------------------------------

NAP = """
name: nap
steps:
  - {id: nap, sleep: 300ms}
"""

TIMED = """
name: timed
steps:
  - id: slow
    task: {service: Slow, type: work}
    timeout: 2s
    retry: {max_attempts: 1}
"""


@pytest.fixture
def loop_settings(settings: Settings) -> Settings:
    """Loops that run often: compaction keeps 3 changes, every 0.2 s; Bus housekeeping every 0.2 s."""
    fast = with_registry(settings, history_size=3, compact_interval_s=0.2)
    return dataclasses.replace(fast, bus=dataclasses.replace(fast.bus, housekeeping_interval_s=0.2))


class HealthInstance:
    """An instance that serves only grpc.health.v1, with a status the test sets."""

    def __init__(self) -> None:
        self.server = grpc.aio.server()
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")


async def lease_expiry(app: App, client: Client) -> None:
    outage = Outage(app.store, "registry_commit", "registry_remove")
    async with client.registry.watch("lapse") as watch:
        await client.registry.register("lapse", "127.0.0.1:1", instance_id="x", ttl_s=2.0)
        await next_changes(watch, 1)
        outage.begin()
        await outage.wait(refused=2)  # the eviction failed, and was tried again
        await still_serving(client)
        outage.end()
        (down,) = await next_changes(watch, 1)
    assert (down.type, down.reason, down.instance.instance_id) == (Change.DOWN, "lease_expired", "x")
    assert await client.registry.lookup("lapse", include_unhealthy=True) == []


async def compaction(app: App, client: Client) -> None:
    outage = Outage(app.store, "registry_compact")
    outage.begin()
    for n in range(6):
        await client.registry.register("kept", f"127.0.0.1:{n + 1}", instance_id=f"k{n}", ttl_s=60.0)
    await outage.wait(refused=2)
    await still_serving(client)
    outage.end()
    await outage.wait(passed=1)
    left = await app.store.registry_changes_after(0, 100)
    assert [c.revision for c in left] == [4, 5, 6]


async def probing(app: App, client: Client) -> None:
    instance = HealthInstance()
    await instance.server.start()
    try:
        await instance.health.set("permits", health_pb2.HealthCheckResponse.NOT_SERVING)
        probe = pb.HealthProbe(
            service_name="permits",
            interval=duration_pb2.Duration(nanos=100_000_000),
            timeout=duration_pb2.Duration(nanos=50_000_000),
            threshold=1,
        )
        async with client.registry.watch("permits") as watch:
            await client.registry.register(
                "permits", f"127.0.0.1:{instance.port}", instance_id="p", probe=probe, ttl_s=60.0
            )
            await next_changes(watch, 1)
            outage = Outage(app.store, "registry_commit")
            outage.begin()
            await instance.health.set("permits", health_pb2.HealthCheckResponse.SERVING)
            await outage.wait(refused=2)  # the PASSING verdict could not be stored, and was tried again
            await still_serving(client)
            outage.end()
            (passing,) = await next_changes(watch, 1)
    finally:
        await instance.server.stop(None)
    assert (passing.type, passing.instance.health) == (
        Change.HEALTH,
        HealthStatus.PASSING,
    )


async def retention(app: App, client: Client) -> None:
    await client.bus.set_retention("kept", max_messages=1)
    outage = Outage(app.store, "bus_apply_retention")
    outage.begin()
    for n in range(3):
        await client.bus.publish("kept.a", f"{n}".encode())
    await outage.wait(refused=2)
    await still_serving(client)
    outage.end()
    await outage.wait(passed=1)
    (subject,) = await client.bus.subjects("kept.>")
    assert (subject.messages, subject.last_subject_sequence) == (1, 3)


async def timers(app: App, client: Client) -> None:
    await client.workflow.apply(NAP)
    process = await client.workflow.start("nap", {})
    outage = Outage(app.store, "wf_transact")
    outage.begin()  # before the 300 ms sleep ends: its timer fires into the outage
    await outage.wait(refused=2)
    await still_serving(client)
    outage.end()
    async with asyncio.timeout(10):
        done = await client.workflow.wait(process.id)
    assert done.state == ProcessState.COMPLETED


async def bus_waits(app: App, client: Client) -> None:
    await client.workflow.apply(BUS_WAIT)
    process = await client.workflow.start("inspection", {"application_id": "a1"})
    outage = Outage(app.store, "wf_transact")
    outage.begin()
    await client.bus.publish("inspection.a1.result", b'{"application_id": "a1", "approved": true}')
    await outage.wait(refused=2)
    await still_serving(client)
    outage.end()
    async with asyncio.timeout(10):
        done = await client.workflow.wait(process.id)
    assert done.state == ProcessState.COMPLETED


async def task_timeouts(app: App, client: Client) -> None:
    await client.workflow.apply(TIMED)
    services = Services(client)
    held = asyncio.Event()
    gate = asyncio.Event()

    async def work(task: TaskContext) -> dict[str, Any]:
        held.set()
        await gate.wait()  # never reports in time: the 2 s start-to-close timeout fires
        return {}

    services.behaviour["work"] = work
    try:
        await services.start("Slow", "work")
        process = await client.workflow.start("timed", {})
        async with asyncio.timeout(10):
            await held.wait()
        outage = Outage(app.store, "wf_transact")
        outage.begin()
        await outage.wait(refused=2)  # the timeout could not be recorded, and was tried again
        await still_serving(client)
        outage.end()
        async with asyncio.timeout(10):
            done = await client.workflow.wait(process.id)
    finally:
        gate.set()
        await services.stop()
    assert (done.state, done.error.code) == (ProcessState.FAILED, "TIMEOUT")


Scenario = Callable[[App, Client], Awaitable[None]]
LOOPS: dict[str, Scenario] = {
    "lease-expiry": lease_expiry,
    "compaction": compaction,
    "probing": probing,
    "bus-retention": retention,
    "workflow-timers": timers,
    "bus-waits": bus_waits,
    "task-timeouts": task_timeouts,
}


@pytest.mark.parametrize("loop", list(LOOPS))
async def test_background_loops_survive_store_failures(loop: str, loop_settings: Settings) -> None:
    async with running(loop_settings) as app, Client(app.address) as client:
        await LOOPS[loop](app, client)
        await still_serving(client)


# -- 2. a cancelled read keeps its connection until its query has finished -----------------------------


class Slow:
    """A reader connection under load: each statement takes a while; overlapping use is counted."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._busy = threading.Lock()
        self._count = threading.Lock()
        self.overlaps = 0

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        if not self._busy.acquire(blocking=False):
            with self._count:
                self.overlaps += 1  # another query is on this connection right now
            self._busy.acquire()
        try:
            time.sleep(0.002)  # waits-on-purpose: a statement that takes a while, as under load
            return self._conn.execute(sql, parameters)
        finally:
            self._busy.release()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'cp.db'}"
    opened = await open_store(url)
    yield opened
    await opened.close()


def instance(n: int) -> Instance:
    return Instance(
        service="svc",
        instance_id=f"i{n:03}",
        address=f"127.0.0.1:{1000 + n}",
        lease_id=f"lease-{n}",
        ttl_s=10.0,
        registered_at=1_700_000_000.0,
    )


@pytest.mark.timeout(120)
async def test_cancelled_reads_never_share_a_connection(store: Store) -> None:
    await asyncio.gather(
        *(store.registry_commit(instance(n), ChangeType.UP, reason="", now=1.0) for n in range(200))
    )
    # The fault: every reader connection is slow. Private on purpose: the pool is what is under test.
    pool: asyncio.Queue[Any] = store._readers  # type: ignore[attr-defined]
    slow = [Slow(pool.get_nowait()) for _ in range(pool.qsize())]
    for conn in slow:
        pool.put_nowait(conn)
    rng = random.Random(10)
    wrong: list[str] = []

    async def load() -> None:
        snapshot = await store.registry_load(5)
        if (len(snapshot.instances), snapshot.revision) != (200, 200):
            wrong.append(f"load: {len(snapshot.instances)} instances at {snapshot.revision}")
        if [c.revision for c in snapshot.changes] != [196, 197, 198, 199, 200]:
            wrong.append(f"load: changes {[c.revision for c in snapshot.changes]}")

    async def changes(after: int) -> None:
        got = [c.revision for c in await store.registry_changes_after(after, 5)]
        if got != list(range(after + 1, min(after + 5, 200) + 1)):
            wrong.append(f"changes after {after}: {got}")

    async def reader() -> None:
        for _ in range(25):
            read = load() if rng.random() < 0.5 else changes(rng.randrange(200))
            if rng.random() < 0.5:
                # Cancelled while its query runs (or before it got a connection).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(read, rng.uniform(0.0, 0.006))
            else:
                await read

    errors = await asyncio.gather(*(reader() for _ in range(8)), return_exceptions=True)

    assert [e for e in errors if e is not None] == []
    assert wrong == []
    assert [c.overlaps for c in slow] == [0] * len(slow)


# -- 7. leases: evictions in batches, renewals kept until written --------------------------------------


class SlowCommits:
    """The store's writer connection on a disk whose fsync takes 3 ms (an SSD without a write cache).

    Machines differ (here a commit costs well under a millisecond): the cost of every commit is made
    explicit so that what is measured is how many commits the evictions take, not this disk.
    """

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        if sql == "COMMIT":
            time.sleep(0.003)  # waits-on-purpose: the fsync of one commit
        return self._conn.execute(sql, parameters)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.mark.timeout(120)
async def test_thousand_leases_lapse_together_evicted_within_one_second(settings: Settings) -> None:
    async with (
        running(settings) as app,
        Client(app.address) as client,
        client.registry.watch("herd") as watch,
    ):
        writer = app.store._writer  # type: ignore[attr-defined]
        writer._conn = SlowCommits(writer._conn)
        # Registered through the core, then renewed all at once: the thousand leases lapse together.
        # (Registering them takes seconds on a loaded machine; the TTL outlasts that.)
        granted = await asyncio.gather(
            *(
                app.registry.register(
                    Registration("herd", f"10.0.{n // 200}.{n % 200 + 1}:80", instance_id=f"h{n}", ttl_s=8.0)
                )
                for n in range(1000)
            )
        )
        renewed = {instance.instance_id: app.registry.renew(lease.lease_id) for instance, lease in granted}
        expires = {
            instance_id: lease.expires_at for instance_id, lease in renewed.items() if lease is not None
        }
        assert len(expires) == 1000, "leases lapsed while the others registered"
        evicted_at: dict[str, float] = {}
        received_at: dict[str, float] = {}
        async with asyncio.timeout(30):
            async for response in watch:
                now = time.time()
                for change in response.changes:
                    if change.type == Change.DOWN:
                        evicted_at[change.instance.instance_id] = change.proto.time.ToMicroseconds() / 1e6
                        received_at[change.instance.instance_id] = now
                if len(evicted_at) == len(expires):
                    break

    evicted = sorted(evicted_at[i] - expires[i] for i in expires)
    received = sorted(received_at[i] - expires[i] for i in expires)
    assert evicted[0] >= -0.05, "evicted before its lease lapsed"
    assert evicted[-1] <= 1.0, f"evicted: median {evicted[500]:.2f} s, worst {evicted[-1]:.2f} s after expiry"
    # A watcher's view adds the stream and this client's own scheduling (on a loaded machine).
    assert received[-1] <= 1.5, (
        f"received: median {received[500]:.2f} s, worst {received[-1]:.2f} s after expiry"
    )


@pytest.mark.timeout(60)
async def test_failed_lease_renewal_write_is_retried(settings: Settings, postgres_url: str) -> None:
    shared = dataclasses.replace(settings, store_url=postgres_url)
    async with running(shared) as first, running(shared) as second:
        leader, follower = await leader_and_follower(first, second)
        outage = Outage(follower.store, "registry_renew", refuse=1)
        async with (
            Client(leader.address) as at_leader,
            Client(follower.address) as at_follower,
            at_leader.registry.watch("beat") as watch,
        ):
            registered = await at_follower.registry.register(
                "beat", "10.0.0.1:80", instance_id="b", ttl_s=2.0
            )
            await next_changes(watch, 1)  # the leader knows the lease from here on
            await outage.wait(passed=1)  # the renewal of the registration is shared
            await asyncio.sleep(1.0)  # waits-on-purpose: renew half-way through the TTL
            outage.begin()
            renewed = await at_follower.registry.heartbeat(registered.lease.lease_id)
            await outage.wait(refused=1)
            (down,) = await next_changes(watch, 1)
            down_at = time.time()

    expires_at = renewed.proto.expires_at.seconds + renewed.proto.expires_at.nanos / 1e9
    assert (down.type, down.reason) == (Change.DOWN, "lease_expired")
    # Evicted at the last renewal + TTL, not at the registration's: the failed write was retried.
    assert down_at >= expires_at - 0.2, f"evicted {expires_at - down_at:.2f} s before the renewed expiry"


# -- replicas: the follower's loops and its listener thread --------------------------------------------


async def leader_and_follower(first: App, second: App) -> tuple[App, App]:
    """The two replicas, the one that leads first (it took the lock when it started)."""
    led = asyncio.Event()
    for app in (first, second):
        app.registry.leadership_listeners.append(lambda leader: led.set() if leader else None)
    if not (first.registry.leader or second.registry.leader):
        async with asyncio.timeout(10):
            await led.wait()
    return (first, second) if first.registry.leader else (second, first)


@pytest.mark.timeout(60)
async def test_a_follower_catches_up_after_store_failures(settings: Settings, postgres_url: str) -> None:
    shared = dataclasses.replace(settings, store_url=postgres_url)
    async with running(shared) as first, running(shared) as second:
        leader, follower = await leader_and_follower(first, second)
        outage = Outage(follower.store, "registry_changes_after")
        async with (
            Client(leader.address) as at_leader,
            Client(follower.address) as at_follower,
            at_follower.registry.watch("far") as watch,
        ):
            outage.begin()
            await at_leader.registry.register("far", "10.0.0.1:80", instance_id="f", ttl_s=60.0)
            await outage.wait(refused=2)  # told of the change, the follower cannot read it: it tries again
            await still_serving(at_follower)
            outage.end()
            (up,) = await next_changes(watch, 1)
    assert (up.type, up.instance.instance_id) == (Change.UP, "f")


@pytest.mark.timeout(60)
async def test_an_error_in_the_listener_thread_does_not_leave_a_replica_deaf(
    settings: Settings, postgres_url: str
) -> None:
    shared = dataclasses.replace(settings, store_url=postgres_url)
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(running(shared))
        async with running(shared) as second:
            leader, follower = await leader_and_follower(first, second)
            assert leader is first
            # Something other than the database goes wrong once in the follower's listener thread.
            cluster: Any = follower.store.cluster
            drain = cluster._drain
            loop = asyncio.get_running_loop()
            raised = asyncio.Event()
            once = threading.Lock()

            def failing_drain() -> None:
                if once.acquire(blocking=False):
                    loop.call_soon_threadsafe(raised.set)
                    raise RuntimeError("injected listener failure")
                drain()

            took_over = asyncio.Event()
            follower.registry.leadership_listeners.append(lambda leader: took_over.set() if leader else None)
            cluster._drain = failing_drain
            async with asyncio.timeout(10):
                await raised.wait()
            await stack.aclose()  # the leader stops: the follower's listener must take the lock
            async with asyncio.timeout(10):
                await took_over.wait()
            assert follower.registry.leader
