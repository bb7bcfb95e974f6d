"""The benchmark's own machinery: its workflow and output check on a real control plane, its HTTP client,
the issue-18 target table, and its knobs. The benchmarks themselves are not run here (they measure)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from aiohttp import web

from bench import engine_loop, floor_plane, http1, suite, targets
from bench.bus_clients import open_subscription
from bench.figures import Figure, GroupResult, Load, RunContext, Target
from bench.harness import Rate, free_port, median_rate
from bench.peers import Pair
from bench.workflow import (
    DEFINITION,
    EXPECTED_OUTPUT,
    FIVE_STEPS,
    SERVICE,
    STEPS,
    TASK_TYPE,
    WAITING,
    WAITING_ENV,
    Loaded,
    Tracker,
    check_output,
    count_label,
    open_loop,
    start_request,
    waiting_count,
)
from bench.workflow_clients import step_output
from control_plane.server import App
from hms.mgmt.v1 import bus_pb2, workflow_pb2, workflow_pb2_grpc
from hms_mgmt import Client, Worker


@contextlib.asynccontextmanager
async def bench5_followed(
    address: str,
) -> AsyncIterator[tuple[workflow_pb2_grpc.WorkflowAsyncStub, Tracker, dict[str, list[str]]]]:
    """bench5 registered at `address`, an SDK worker serving it, and its events followed as the bench
    follows them: the stub, the tracker, and each process's event names in the order they arrived."""
    events: dict[str, list[str]] = {}

    async def recorded(
        responses: AsyncIterator[bus_pb2.SubscribeResponse],
    ) -> AsyncIterator[bus_pb2.SubscribeResponse]:
        async for response in responses:
            for delivery in response.deliveries:
                _, _, process_id, event = delivery.message.subject.split(".")
                events.setdefault(process_id, []).append(event)
            yield response

    async with Client(address) as client, grpc.aio.insecure_channel(address) as channel:
        stub = workflow_pb2_grpc.WorkflowStub(channel)
        await stub.RegisterDefinition(workflow_pb2.RegisterDefinitionRequest(source=FIVE_STEPS))
        worker = Worker(client, SERVICE, max_in_flight=10, drain_timeout_s=1.0)

        @worker.task(TASK_TYPE)
        async def noop(task: Any) -> dict[str, Any]:
            return step_output(task)

        running = asyncio.create_task(worker.run())
        try:
            async with asyncio.timeout(30):
                await worker.ready.wait()
            subscription = bus_pb2.SubscribeRequest(
                pattern=f"workflow.{DEFINITION}.>",
                start=bus_pb2.START_POSITION_NEW_ONLY,
                ack_mode=bus_pb2.ACK_MODE_NONE,
            )
            call, responses = await open_subscription(channel, subscription)
            tracker = Tracker()
            following = asyncio.create_task(tracker.follow(recorded(responses)))
            try:
                yield stub, tracker, events
            finally:
                following.cancel()
                call.cancel()
        finally:
            worker.stop()
            await running


async def run_bench5(address: str, processes: int = 3) -> tuple[Tracker, dict[str, list[str]], list[str]]:
    """Run `processes` of bench5 at `address` to their end: the tracker, each process's event names in the
    order they arrived, and the process ids."""
    async with bench5_followed(address) as (stub, tracker, events):
        started = [await stub.StartProcess(start_request()) for _ in range(processes)]
        async with asyncio.timeout(30):
            for response in started:
                await tracker.completion(response.process.id)
    return tracker, events, [response.process.id for response in started]


@pytest.mark.store_independent(reason="the bench's open loop, on the control plane this process serves")
async def test_the_open_loop_runs_every_process_it_starts_and_counts_the_planes_cpu(server: App) -> None:
    async with bench5_followed(server.address) as (stub, tracker, _):
        # The control plane is served by this process: its CPU is this process's.
        loaded = Loaded(stub, tracker, {"control plane": os.getpid()})
        phase = await open_loop(loaded, 20.0, Load(warmup_s=0.2, duration_s=0.5, repeats=1))

    assert phase.started > 0 and len(phase.process_ms) == phase.started  # each started one completed
    assert phase.elapsed_s > 0
    assert phase.plane_cpu_s is not None and phase.plane_cpu_s > 0
    assert phase.plane_cpu_us_per_step == pytest.approx(phase.plane_cpu_s * 1e6 / (phase.started * STEPS))
    assert phase.plane_cores_busy == pytest.approx(phase.plane_cpu_s / phase.elapsed_s)


@pytest.mark.store_independent(reason="the bench tracker's check of a process's fields")
async def test_bench5_processes_end_with_every_steps_field_as_the_tracker_checks(
    server: App, client: Client
) -> None:
    tracker, _, ids = await run_bench5(server.address)

    process = await client.workflow.wait(ids[0])
    assert process.output == EXPECTED_OUTPUT
    # Three processes, four step-to-step intervals each.
    assert len(tracker.intervals) == 12


@pytest.mark.store_independent(reason="the protocol floor of the bench, beside the control plane's traffic")
async def test_the_protocol_floor_carries_the_control_planes_bench5_traffic(server: App) -> None:
    # The floor stands for the control plane's wire traffic in the bench: the same calls must drive its
    # processes to the same checked output, publishing the same events in the same order.
    _, engine_events, _ = await run_bench5(server.address)
    floor, port = await floor_plane.start("127.0.0.1:0", hold_turns=3)
    try:
        floor_tracker, floor_events, _ = await run_bench5(f"127.0.0.1:{port}")
    finally:
        await floor.stop(0)

    assert len(floor_tracker.intervals) == 12
    assert len(engine_events) == len(floor_events) == 3
    expected = next(iter(engine_events.values()))
    assert expected[0] == "process_started" and expected[-1] == "process_completed"
    assert all(events == expected for events in (*engine_events.values(), *floor_events.values()))


@pytest.mark.store_independent(reason="the bench's engine-alone driver, on the embedded store it always uses")
async def test_the_engine_alone_runs_bench5_to_the_end_and_counts_its_cpu() -> None:
    rates = await engine_loop.measure(Load(warmup_s=0.2, duration_s=0.5, repeats=1), [4])

    (rate,) = (Rate(**fields) for fields in rates["4"])
    assert rate.count > 0  # processes whose last step got every earlier step's field, and completed
    assert rate.cpu_us["engine"] > 0


def test_an_output_without_every_step_is_refused() -> None:
    event = {"details": {"output": {**EXPECTED_OUTPUT, "s5": False}}}
    with pytest.raises(RuntimeError, match="completed with output"):
        check_output("p1", json.dumps(event).encode())
    check_output("p2", json.dumps({"details": {"output": EXPECTED_OUTPUT}}).encode())


def test_bench5_steps_take_the_previous_output() -> None:
    assert 'input: "input"' in FIVE_STEPS
    assert 'input: "steps.s4.output"' in FIVE_STEPS
    assert start_request().definition == workflow_pb2.StartProcessRequest(definition=DEFINITION).definition


def test_the_target_table_says_met_not_met_and_not_measured() -> None:
    figures = {
        "workflow.vs_restate_100": 2.5,
        "workflow.vs_restate_1": 1.2,
        "bus.p99_ms_at_1000": 4.0,
        "baseline.unary_p99_ms_at_1000": 2.0,
        "registry.watch_p99_ms": 6.0,
    }
    lines = {line.split("  ")[0]: line for line in targets.table(figures).splitlines()}
    assert lines["workflow.vs_restate_100"].endswith("met")
    assert "NOT MET" not in lines["workflow.vs_restate_100"]
    assert lines["workflow.vs_restate_1"].endswith("NOT MET")
    ratio = lines["bus.p99_ms_at_1000 / baseline.unary_p99_ms_at_1000"]
    assert " 2.00 " in ratio and ratio.endswith("met") and "NOT" not in ratio
    assert lines["registry.watch_p99_ms"].endswith("NOT MET")
    assert lines["workflow.rss_mb_1m_waiting"].endswith("not measured")
    assert len(lines) == len(targets.TABLE) + 1


def test_a_ratio_whose_divisor_is_missing_or_zero_is_not_measured() -> None:
    row = targets.Row("a.x", Target(1, at_least=True), divisor="a.y")
    assert row.value({"a.x": 3.0}) is None
    assert row.value({"a.x": 3.0, "a.y": 0.0}) is None
    assert row.value({"a.x": 3.0, "a.y": 1.5}) == 2.0


def test_the_waiting_count_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WAITING_ENV, raising=False)
    assert waiting_count() == WAITING == 1_000_000
    monkeypatch.setenv(WAITING_ENV, "1_000")
    assert waiting_count() == 1000
    monkeypatch.setenv(WAITING_ENV, "0")
    assert waiting_count() == 0
    for bad in ("many", "1.5", "-5"):
        monkeypatch.setenv(WAITING_ENV, bad)
        with pytest.raises(ValueError, match=WAITING_ENV):
            waiting_count()
    assert [count_label(n) for n in (1_000_000, 2_000_000, 100_000, 1000, 1500)] == [
        "1m",
        "2m",
        "100k",
        "1k",
        "1500",
    ]


def test_the_median_rate_is_the_middle_one() -> None:
    rates = [Rate(per_s, 1, {}) for per_s in (30.0, 10.0, 20.0)]
    assert median_rate(rates).per_s == 20.0
    assert median_rate(rates[:1]).per_s == 30.0
    with pytest.raises(ValueError):
        median_rate([])


def test_a_pair_compares_the_control_plane_with_restate_run_right_after() -> None:
    assert Pair(Rate(300.0, 1, {}), Rate(200.0, 1, {})).ratio == 1.5
    assert Pair(Rate(300.0, 1, {}), Rate(0.0, 0, {})).ratio == 0.0  # Restate completed nothing: no ratio


@pytest.fixture
async def http_server() -> AsyncIterator[int]:
    """A real HTTP server: JSON echo with Content-Length, a chunked answer, and an error."""

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({**await request.json(), "echoed": True})

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b'{"a": ', b"1, ", b'"b": [2, 3]}'):
            await response.write(part)
        await response.write_eof()
        return response

    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=503, text="not yet")

    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_post("/chunked", chunked)
    app.router.add_post("/refuse", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


async def test_the_http_client_reads_length_and_chunked_answers_on_one_connection(http_server: int) -> None:
    pool = http1.Pool("127.0.0.1", http_server)
    try:
        for n in range(3):
            async with pool.connection() as connection:
                assert await connection.post_json("/echo", {"n": n}) == {"n": n, "echoed": True}
                assert await connection.post_json("/chunked", {}) == {"a": 1, "b": [2, 3]}
        async with pool.connection() as connection:
            with pytest.raises(http1.HttpError, match="HTTP 503: not yet"):
                await connection.post_json("/refuse", {})
    finally:
        await pool.close()


async def test_a_failing_group_costs_only_the_groups_that_need_its_figures() -> None:
    ran: list[str] = []

    def group(name: str, *requires: str, fails: bool = False) -> suite.Group:
        async def run(context: RunContext) -> GroupResult:
            ran.append(name)
            if fails:
                raise RuntimeError(f"{name}: a child would not stop")
            return GroupResult(name, "", [Figure(f"{name}.figure", 1.0, "")])

        return suite.Group(name, run, requires)

    outcome = await suite.run(
        [group("peer", fails=True), group("needs_peer", "peer"), group("own"), group("needs_own", "own")],
        Load(),
    )

    assert ran == ["peer", "own", "needs_own"]
    assert [r.group for r in outcome.results] == ["own", "needs_own"]
    assert outcome.failed == ["peer", "needs_peer"]
