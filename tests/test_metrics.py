"""Metrics of the cores checked against known workloads, and label sets that do not grow with traffic."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from control_plane.core.bus.stats import MAX_TOKENS, OTHER, BusStats
from control_plane.errors import Unavailable
from control_plane.models import StoredMessage
from control_plane.server import App, running
from control_plane.settings import Settings
from hms.mgmt.v1 import bus_pb2
from hms.mgmt.v1 import workflow_pb2 as pb
from hms_mgmt import ChangeType, Client, TaskContext, TaskFailure, Worker
from hms_mgmt.types import ProcessState
from tests.metrics_support import sample, scrape, series
from tests.test_probing import NOT_SERVING, SERVING, Instance, fast_probe
from tests.workflow_support import Services, finish

# Every hundredth process runs a task; the others end in the transaction that starts them.
BOUNDED = """
name: bounded
steps:
  - id: route
    choice:
      - when: "input.vip"
        steps: [{id: echo, task: {service: Echo, type: echo}}]
"""

TWO_TASKS = """
name: pair
steps:
  - {id: first, task: {service: Pair, type: one}}
  - {id: second, task: {service: Pair, type: two}}
"""


async def count_events(subscription: Any, wanted: int) -> None:
    """Read deliveries until `wanted` have arrived (a gap would mean some were skipped)."""
    seen = 0
    async with asyncio.timeout(120):
        while seen < wanted:
            frame = await subscription.next_frame()
            assert not frame.HasField("gap")
            seen += len(frame.deliveries)


async def test_fifty_completed_processes_move_the_completed_counter_by_exactly_fifty(
    server: App, client: Client, services: Services
) -> None:
    await client.workflow.apply(TWO_TASKS)
    await services.start("Pair", "one", "two")
    before = await scrape(server)
    ended = {"definition": "pair", "state": "completed"}

    processes = [await client.workflow.start("pair", {"n": n}) for n in range(50)]
    for process in processes:
        assert (await finish(client, process.id)).state == ProcessState.COMPLETED
    after = await scrape(server)

    moved = sample(after, "mgmt_workflow_processes_ended_total", **ended) - sample(
        before, "mgmt_workflow_processes_ended_total", **ended
    )
    assert moved == 50
    assert sample(after, "mgmt_workflow_processes_started_total", definition="pair") == 50
    assert sample(after, "mgmt_workflow_processes", definition="pair", state="completed") == 50
    assert sample(after, "mgmt_workflow_processes", definition="pair", state="running") == 0
    # A start and one completion per task: three transitions per process.
    assert sample(after, "mgmt_workflow_transitions_total", definition="pair") == 150
    assert sample(after, "mgmt_workflow_step_duration_seconds_count", definition="pair", kind="task") == 100
    for task_type in ("one", "two"):
        waits = sample(after, "mgmt_workflow_task_wait_seconds_count", service="Pair", task_type=task_type)
        assert waits == 50
        assert sample(after, "mgmt_workflow_task_queue_depth", service="Pair", task_type=task_type) == 0
    assert sample(after, "mgmt_workflow_task_retries_total", definition="pair") == 0
    assert sample(after, "mgmt_store_commit_duration_seconds_count") > 0
    assert sample(after, "mgmt_store_leader") == 1


FLAKY = """
name: flaky
steps:
  - id: charge
    task: {service: Flaky, type: charge}
    compensate: {service: Flaky, type: refund}
  - id: check
    task: {service: Flaky, type: check}
    timeout: 1s
    retry: {max_attempts: 3, initial_interval: 10ms, non_retryable: [BAD]}
"""

WAITS = """
name: waits
steps:
  - id: approval
    wait_signal: {name: approve, timeout: 1s}
"""

DEADLINE = """
name: deadline
timeout: 1s
steps:
  - id: forever
    wait_signal: {name: never}
"""


async def test_retries_timeouts_compensations_and_signals_are_counted(
    server: App, client: Client, services: Services
) -> None:
    for source in (FLAKY, WAITS, DEADLINE):
        await client.workflow.apply(source)
    gate = asyncio.Event()

    async def check(task: TaskContext) -> None:
        if task.attempt == 1:
            await gate.wait()  # never reports: its 1 s timeout fires
        if task.attempt == 2:
            raise TaskFailure("TRANSIENT", "try again")
        raise TaskFailure("BAD", "for good", non_retryable=True)

    services.behaviour["check"] = check
    await services.start("Flaky", "charge", "refund", "check")
    flaky = await client.workflow.start("flaky", {})
    approved = await client.workflow.start("waits", {})
    unanswered = await client.workflow.start("waits", {})
    late = await client.workflow.start("deadline", {})
    await client.workflow.signal(approved.id, "approve", {"ok": True})
    try:
        ends = {p.id: (await finish(client, p.id)).state for p in (flaky, approved, unanswered, late)}
    finally:
        gate.set()
    text = await scrape(server)

    assert ends == {
        flaky.id: ProcessState.COMPENSATED,
        approved.id: ProcessState.COMPLETED,
        unanswered.id: ProcessState.FAILED,
        late.id: pb.PROCESS_STATE_FAILED,
    }
    assert sample(text, "mgmt_workflow_task_retries_total", definition="flaky") == 2
    assert sample(text, "mgmt_workflow_timeouts_total", definition="flaky", kind="task") == 1
    assert sample(text, "mgmt_workflow_compensations_total", definition="flaky") == 1
    assert sample(text, "mgmt_workflow_processes_ended_total", definition="flaky", state="compensated") == 1
    assert sample(text, "mgmt_workflow_signals_total", definition="waits") == 1
    assert sample(text, "mgmt_workflow_timeouts_total", definition="waits", kind="wait") == 1
    assert sample(text, "mgmt_workflow_timeouts_total", definition="deadline", kind="process") == 1
    assert sample(text, "mgmt_workflow_timeouts_total", definition="deadline", kind="wait") == 0
    # charge completed, check failed; the two waits ended, one completed and one timed out.
    assert sample(text, "mgmt_workflow_step_duration_seconds_count", definition="flaky", kind="task") == 2
    steps = sample(text, "mgmt_workflow_step_duration_seconds_count", definition="waits", kind="wait_signal")
    assert steps == 2
    assert sample(text, "mgmt_workflow_timers_pending") == 0


async def test_consumer_lag_equals_the_unacked_count(server: App, client: Client) -> None:
    for n in range(10):
        await client.bus.publish("orders.created", f"order {n}".encode())
    async with client.bus.subscribe(
        "orders.>", durable="audit", explicit_ack=True, start=bus_pb2.START_POSITION_ALL
    ) as subscription:
        deliveries: list[bus_pb2.Delivery] = []
        async with asyncio.timeout(10):
            while len(deliveries) < 10:
                deliveries.extend((await subscription.next_frame()).deliveries)
        await client.bus.ack(*(d.delivery_id for d in deliveries[:4]))
        connected = await scrape(server)
    for n in range(5):
        await client.bus.publish("orders.created", f"later {n}".encode())
    gone = await scrape(server)

    assert sample(connected, "mgmt_bus_consumer_ack_pending", consumer="audit") == 6
    assert sample(connected, "mgmt_bus_consumer_lag_messages", consumer="audit") == 6
    assert sample(connected, "mgmt_bus_subscribers", kind="durable") == 1
    # Disconnected: the 6 unacked wait for the next subscriber, the 5 new ones were never delivered.
    assert sample(gone, "mgmt_bus_consumer_ack_pending", consumer="audit") == 6
    assert sample(gone, "mgmt_bus_consumer_lag_messages", consumer="audit") == 11
    assert sample(gone, "mgmt_bus_subscribers", kind="durable") == 0
    assert sample(gone, "mgmt_bus_messages_published_total", first_token="orders") == 15
    assert sample(gone, "mgmt_bus_published_bytes_total", first_token="orders") == 10 * 7 + 5 * 7
    assert sample(gone, "mgmt_bus_messages_delivered_total", first_token="orders") == 10
    assert sample(gone, "mgmt_bus_consumer_redeliveries_total", consumer="audit") == 0


async def test_a_scrape_shows_older_values_when_the_store_cannot_answer(
    server: App, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with client.bus.subscribe("orders.>", durable="audit", explicit_ack=True):
        pass
    await client.bus.publish("orders.created", b"1")
    before = await scrape(server)

    async def unreachable(include_ephemeral: bool) -> list[Any]:
        raise Unavailable("the store is unreachable: injected fault")

    monkeypatch.setattr(server.bus, "consumers", unreachable)
    await client.bus.publish("orders.created", b"2")
    after = await scrape(server)

    assert sample(before, "mgmt_bus_consumer_lag_messages", consumer="audit") == 1
    assert sample(after, "mgmt_bus_consumer_lag_messages", consumer="audit") == 1
    assert sample(after, "mgmt_bus_messages_published_total", first_token="orders") == 2


def test_subjects_are_counted_by_first_token_up_to_a_cap_then_as_other() -> None:
    stats = BusStats()

    stats.count_published(_messages(f"t{n}.x" for n in range(MAX_TOKENS + 50)))

    assert len(stats.published) == MAX_TOKENS + 1
    assert stats.published[OTHER] == 50
    assert stats.published["t0"] == 1 and "t149" not in stats.published


def test_runs_and_interleavings_of_subjects_count_every_message_and_byte() -> None:
    stats = BusStats()
    subjects = ["a.x", "a.x", "b.y", "a.z", "a.z", "b.y", "c", "a.x"]
    messages = [
        StoredMessage(n + 1, 1, subject, b"d" * (n + 1), {}, "", "", 0.0)
        for n, subject in enumerate(subjects)
    ]

    stats.count_published(messages)
    stats.count_delivered(iter(messages[2:]))

    assert stats.published == {"a": 5, "b": 2, "c": 1}
    assert stats.published_bytes == {"a": 1 + 2 + 4 + 5 + 8, "b": 3 + 6, "c": 7}
    assert stats.delivered == {"a": 3, "b": 2, "c": 1}
    assert stats.delivered_bytes == {"a": 4 + 5 + 8, "b": 3 + 6, "c": 7}


def _messages(subjects: Iterator[str]) -> list[StoredMessage]:
    return [StoredMessage(n + 1, n + 1, subject, b"", {}, "", "", 0.0) for n, subject in enumerate(subjects)]


async def test_processes_by_state_are_exact_after_a_restart(settings: Settings) -> None:
    async with running(settings) as app, Client(app.address) as client:
        await client.workflow.apply(WAITS.replace("timeout: 1s", "timeout: 1h"))
        waiting = [await client.workflow.start("waits", {}) for _ in range(3)]
        await client.workflow.signal(waiting[0].id, "approve", {})
        await finish(client, waiting[0].id)

    async with running(settings) as app:
        text = await scrape(app)

    assert sample(text, "mgmt_workflow_processes", definition="waits", state="running") == 2
    assert sample(text, "mgmt_workflow_processes", definition="waits", state="completed") == 1
    assert sample(text, "mgmt_workflow_processes_ended_total", definition="waits", state="completed") == 0


async def test_a_lapsed_lease_and_health_probes_are_counted(server: App, client: Client) -> None:
    async with client.registry.watch("Lapsing") as changes:
        await client.registry.register("Lapsing", "127.0.0.1:7001", instance_id="l1", ttl_s=1.0)
        async with asyncio.timeout(10):
            async for response in changes:
                if any(c.type == ChangeType.DOWN for c in response.changes):
                    break
    probed = Instance()
    await probed.server.start()
    try:
        await probed.set(SERVING)
        await client.registry.register("Probed", f"127.0.0.1:{probed.port}", probe=fast_probe(threshold=1))
        await probed.health.wait_checks(3)
        await probed.set(NOT_SERVING)
        await probed.health.wait_checks(3)
    finally:
        await probed.server.stop(None)
    # A probe's result is counted before the next probe is sent: two of each at least.
    text = await scrape(server)

    reason = {"service": "Lapsing", "reason": "lease_expired"}
    assert sample(text, "mgmt_registry_evictions_total", **reason) == 1
    assert sample(text, "mgmt_registry_probes_total", service="Probed", result="passing") >= 2
    assert sample(text, "mgmt_registry_probes_total", service="Probed", result="critical") >= 2
    assert sample(text, "mgmt_registry_probe_duration_seconds_count", service="Probed") >= 4


async def test_metrics_off_leaves_the_cores_unobserved(settings: Settings) -> None:
    async with running(Settings(**{**_fields(settings), "metrics": False})) as app:
        text = await scrape(app)

        assert app.metrics is None
        assert app.workflows.stats.step_observer is None and app.store.stats.on_commit is None
        assert app.workflows.dispatcher.on_handed is None
    assert "mgmt_" not in text and "grpc_server" not in text


def _fields(settings: Settings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}


@pytest.mark.timeout(300)
@pytest.mark.store_independent(
    reason="the exported series come from the cores' counters, whichever store holds the processes"
)
async def test_series_do_not_grow_with_processes_business_keys_or_subjects(
    server: App, client: Client
) -> None:
    await client.workflow.apply(BOUNDED)
    worker = Worker(client, "Echo", max_in_flight=200)

    @worker.task("echo")
    async def echo(task: TaskContext) -> dict[str, Any]:
        return {"key": task.business_key}

    running_worker = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(10):
            await worker.ready.wait()
        async with client.bus.subscribe(
            "workflow.bounded.*.process_completed", max_in_flight=100_000, max_batch=1000
        ) as completions:
            await _workload(client, completions, 0, 300)
            warm = series(await scrape(server))
            await _workload(client, completions, 300, int(os.environ.get("MGMT_METRICS_WORKLOAD", 10_000)))
            loaded = series(await scrape(server))
    finally:
        worker.stop()
        await running_worker

    assert loaded == warm, f"new series {sorted(loaded - warm)[:10]}, gone {sorted(warm - loaded)[:10]}"


async def _workload(client: Client, completions: Any, first: int, count: int) -> None:
    """`count` processes with distinct business keys, and one message on each of `count` distinct subjects
    (distinct first tokens too, past the cap)."""
    keys = iter(range(first, first + count))

    async def starter() -> None:
        for n in keys:
            await client.workflow.start("bounded", {"vip": n % 100 == 0}, business_key=f"customer-{n}")

    async with asyncio.TaskGroup() as tasks:
        for _ in range(50):
            tasks.create_task(starter())
        messages = [
            bus_pb2.BusMessage(subject=f"t{n}.order.{n}", data=b"x") for n in range(first, first + count)
        ]
        tasks.create_task(client.bus.publish_many(messages))
    await count_events(completions, count)


@pytest.mark.postgres_pass  # replicas share PostgreSQL
async def test_replicas_report_processes_by_state_as_stored_and_their_follower_lag(
    settings: Settings,
) -> None:
    async with running(settings) as first, running(settings) as second, Client(first.address) as client:
        await client.workflow.apply(WAITS.replace("timeout: 1s", "timeout: 1h"))
        for _ in range(3):
            await client.workflow.start("waits", {})
        await client.bus.publish("orders.created", b"{}")
        on_first, on_second = await scrape(first), await scrape(second)

    for text in (on_first, on_second):
        assert sample(text, "mgmt_workflow_processes", definition="waits", state="running") == 3
        assert 'mgmt_store_follower_lag{log="bus"}' in text
        assert 'mgmt_store_follower_lag{log="registry"} 0.0' in text
    assert sample(on_first, "mgmt_store_leader") + sample(on_second, "mgmt_store_leader") <= 1
    # Started on the first replica: counted there, not twice.
    assert sample(on_first, "mgmt_workflow_processes_started_total", definition="waits") == 3
    assert sample(on_second, "mgmt_workflow_processes_started_total", definition="waits") == 0
    assert sample(on_second, "mgmt_bus_messages_published_total", first_token="orders") == 0


OBSERVABILITY_DOC = Path(__file__).resolve().parent.parent / "docs" / "observability.md"


async def test_every_exported_family_is_documented_and_every_documented_one_exported(server: App) -> None:
    text = await scrape(server)
    # The text format shows an unlabelled histogram's creation time as a family of its own: not documented.
    families = {
        line.split()[2]
        for line in text.splitlines()
        if line.startswith("# TYPE ") and "_created " not in line
    }
    documented = set(re.findall(r"^\| `((?:mgmt|grpc_server)_\w+)` \|", OBSERVABILITY_DOC.read_text(), re.M))

    assert {f for f in families if f.startswith("mgmt_")} == {d for d in documented if d.startswith("mgmt_")}
    assert {d for d in documented if d.startswith("grpc_")} <= families
