"""Memory that must not grow without bound: cleared timers, heartbeat deadlines, buffered signals."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path
from typing import cast

import pytest

from control_plane.backpressure import limit_wait
from control_plane.core.workflow.dispatch import Dispatcher
from control_plane.core.workflow.machine import (
    MAX_BUFFERED_SIGNAL_BYTES,
    MAX_BUFFERED_SIGNAL_NAMES,
    MAX_BUFFERED_SIGNALS,
)
from control_plane.errors import InvalidArgument, ResourceExhausted
from control_plane.models import TaskAttempt
from control_plane.server import App, running
from control_plane.settings import Settings
from control_plane.storage.connection import Connection
from control_plane.storage.writer import Writer
from hms_mgmt import Client, HistoryEventType
from hms_mgmt.types import ProcessState
from tests.writer_support import Blocked

WAITING = """
name: waiting
timeout: 30d
steps:
  - id: go
    wait_signal: {name: go, timeout: 14d}
"""


async def test_cleared_timers_leave_memory(server: App, client: Client) -> None:
    """A 14-day wait timeout (and the process's 30-day timeout) cleared by a signal is forgotten at once."""
    await client.workflow.apply(WAITING)
    processes = [await client.workflow.start("waiting", {}) for _ in range(200)]
    timers = server.workflows._timers
    assert len(timers) == 400  # each process: its wait timeout and its process timeout

    for process in processes:
        answer = await client.workflow.signal(process.id, "go")
        assert not answer.buffered
    done = await client.workflow.status(processes[-1].id)

    assert done.state == ProcessState.COMPLETED
    assert len(timers) == 0
    assert timers.footprint <= 65  # dead heap entries are compacted away, not kept for 14 days


@pytest.mark.postgres_pass  # replicas share PostgreSQL
async def test_timers_cleared_on_another_replica_leave_memory(settings: Settings, tmp_path: Path) -> None:
    """A process started here and ended by a signal on another replica takes its timers out of memory here."""
    other = dataclasses.replace(settings, data_dir=tmp_path / "other")
    async with (
        running(settings) as here,
        running(other) as there,
        Client(here.address) as client_here,
        Client(there.address) as client_there,
    ):
        await client_here.workflow.apply(WAITING)
        process = await client_here.workflow.start("waiting", {})
        assert len(here.workflows._timers) == 2
        async with client_here.bus.subscribe(f"workflow.waiting.{process.id}.process_completed") as ended:
            await client_there.workflow.signal(process.id, "go")
            async with asyncio.timeout(10):
                await anext(ended)  # delivered here after this replica's engine saw the event

    assert len(here.workflows._timers) == 0


def attempt(token: str, *, timeout_s: float | None = 600.0, heartbeat_s: float | None = 60.0) -> TaskAttempt:
    return TaskAttempt(
        token=token,
        process_id=token,
        definition="d",
        definition_version=1,
        step_id="s",
        service="Svc",
        task_type="t",
        version="",
        attempt=1,
        input={},
        business_key="",
        compensation=False,
        timeout_s=timeout_s,
        heartbeat_timeout_s=heartbeat_s,
    )


async def test_heartbeats_keep_one_deadline_per_attempt() -> None:
    """A heartbeat moves the attempt's deadline; it does not add one (1,000 heartbeats, one entry)."""
    now = [0.0]
    dispatcher = Dispatcher(monotonic=lambda: now[0])
    session = dispatcher.attach("Svc", "w1", "", frozenset(), 10)
    dispatcher.offer([attempt("a", timeout_s=3600.0), attempt("b")])
    assert len(session.held) == 2

    for _ in range(1000):
        now[0] += 1.0
        assert dispatcher.heartbeat("a")

    assert dispatcher._deadlines.footprint == 2
    assert dispatcher._deadlines.get("a") == 1000.0 + 60.0  # moved by the last heartbeat
    assert dispatcher._deadlines.get("b") == 60.0


async def test_ended_attempts_leave_no_deadline_behind() -> None:
    """Completed, withdrawn and requeued attempts drop their deadlines at once, not after 10 minutes."""
    dispatcher = Dispatcher(monotonic=lambda: 0.0)
    session = dispatcher.attach("Svc", "w1", "", frozenset(), 1000)
    dispatcher.offer([attempt(f"t{n}") for n in range(300)])
    assert len(dispatcher._deadlines) == 300

    for n in range(100):
        dispatcher.settle(f"t{n}")
    for n in range(100, 200):
        dispatcher.withdraw(f"t{n}", "process_cancelled")
    dispatcher.detach(session)  # the last 100 go back to the queue, with no worker to time them

    assert len(dispatcher._deadlines) == 0
    assert dispatcher._deadlines.footprint <= 65
    assert dispatcher.queued() == 100


async def test_a_heartbeat_deadline_still_times_the_attempt_out() -> None:
    """The single entry keeps both rules: the heartbeat deadline fires when it comes before the timeout."""
    now = [0.0]
    dispatcher = Dispatcher(monotonic=lambda: now[0])
    timed_out: list[tuple[str, str]] = []
    fired = asyncio.Event()

    def on_timeout(task: TaskAttempt, kind: str) -> None:
        timed_out.append((task.token, kind))
        fired.set()

    dispatcher.on_timeout = on_timeout
    dispatcher.attach("Svc", "w1", "", frozenset(), 10)
    dispatcher.offer([attempt("slow", timeout_s=600.0, heartbeat_s=60.0)])
    now[0] = 30.0
    dispatcher.heartbeat("slow")  # due at 90 now
    now[0] = 89.0
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(dispatcher.run(stop))
        now[0] = 90.0
        dispatcher._wakeup.notify()
        async with asyncio.timeout(5):
            await fired.wait()
        stop.set()
    assert timed_out == [("slow", "HEARTBEAT_TIMEOUT")]


BUSY = """
name: busy
steps:
  - id: first
    task: {service: Nobody, type: work}
  - id: go
    wait_signal: {name: go}
"""


async def test_buffered_signals_capped(client: Client) -> None:
    """Signals no step waits for yet are kept up to a count, a number of names and a size; then refused."""
    await client.workflow.apply(BUSY)
    many = await client.workflow.start("busy", {})  # stays in its first step: every signal is buffered
    for n in range(MAX_BUFFERED_SIGNALS):
        answer = await client.workflow.signal(many.id, "go", {"n": n}, signal_id=f"s{n}")
        assert answer.buffered
    with pytest.raises(ResourceExhausted):
        await client.workflow.signal(many.id, "go", {"n": "one too many"})
    again = await client.workflow.signal(many.id, "go", {"n": 0}, signal_id="s0")
    assert again.duplicate  # a sender's retry is still answered

    names = await client.workflow.start("busy", {})
    for n in range(MAX_BUFFERED_SIGNAL_NAMES):
        await client.workflow.signal(names.id, f"name-{n}")
    with pytest.raises(ResourceExhausted):
        await client.workflow.signal(names.id, "one-name-too-many")
    assert (await client.workflow.signal(names.id, "name-0")).buffered  # a known name still has room

    big = await client.workflow.start("busy", {})
    blob = "x" * (MAX_BUFFERED_SIGNAL_BYTES // 2)
    await client.workflow.signal(big.id, "go", {"blob": blob})
    with pytest.raises(ResourceExhausted):
        await client.workflow.signal(big.id, "go", {"blob": blob})
    with pytest.raises(InvalidArgument) as too_big:
        await client.workflow.signal(big.id, "go", {"blob": blob * 3})
    assert [v.field for v in too_big.value.violations] == ["payload"]

    received = [
        e for e in await client.workflow.history(many.id) if e.type == HistoryEventType.SIGNAL_RECEIVED
    ]
    assert len(received) == MAX_BUFFERED_SIGNALS  # a refused signal left no trace


async def test_group_commit_queue_is_bounded(tmp_path: Path) -> None:
    """Past its bound the queue pushes back: internal writers wait for room, a client's request gives up."""
    conn = sqlite3.connect(tmp_path / "w.db", isolation_level=None, check_same_thread=False)
    writer = Writer(cast(Connection, conn), "BEGIN IMMEDIATE", max_pending=8)
    try:
        blocked = Blocked()
        first = asyncio.ensure_future(writer.submit(blocked))
        await asyncio.to_thread(blocked.entered.wait, 10)
        internal = [asyncio.ensure_future(writer.submit(lambda c: None)) for _ in range(30)]
        # One loop pass, not time: each submitter runs to its first suspension, queued or waiting for room.
        await asyncio.sleep(0)  # waits-on-purpose

        assert writer._queue.qsize() == 7  # the blocked write is one of the 8; 23 wait outside the queue
        assert writer.pending == 8

        async def client_request() -> None:
            limit_wait(0.05)
            await writer.submit(lambda c: None)

        with pytest.raises(ResourceExhausted):
            await client_request()
        assert not any(task.done() for task in internal)  # still waiting, not refused

        blocked.release.set()
        async with asyncio.timeout(10):
            await asyncio.gather(first, *internal)
        assert writer.pending == 0
        await client_request()  # room again
    finally:
        writer.close()


async def test_a_client_is_refused_when_the_store_queue_stays_full(
    server: App, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through gRPC: RESOURCE_EXHAUSTED after the client's patience, while the engine's own writes wait."""
    monkeypatch.setattr("control_plane.servicers.errors.CLIENT_WRITE_PATIENCE_S", 0.2)
    writer: Writer = server.store._writer  # type: ignore[attr-defined]
    blocked = Blocked()
    first = asyncio.ensure_future(writer.submit(blocked, slow=True))
    await asyncio.to_thread(blocked.entered.wait, 10)
    filler = [asyncio.ensure_future(writer.submit(lambda c: None)) for _ in range(writer._max_pending)]
    try:
        with pytest.raises(ResourceExhausted):
            await client.registry.register("svc", "127.0.0.1:7000", instance_id="i1")
    finally:
        blocked.release.set()
    async with asyncio.timeout(10):
        await asyncio.gather(first, *filler)
    await client.registry.register("svc", "127.0.0.1:7000", instance_id="i1")
