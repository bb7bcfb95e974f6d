"""Requests that used to freeze the control plane: each is refused or cut off while others are served."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from control_plane.core.limits import MAX_SOURCE
from control_plane.core.workflow.bus_waits import BusWaits
from control_plane.core.workflow.parser import parse_definition
from control_plane.errors import InvalidArgument
from control_plane.models import StoredMessage
from control_plane.server import App
from hms.mgmt.v1 import bus_pb2
from hms_mgmt import Client
from hms_mgmt.types import ProcessState, StepState
from tests.conftest import ServerProcess
from tests.latency import STALL_BOUND_S, Probe, keep_alive_stream, least_stalled, lookups
from tests.workflow_support import finish


def big_definition(size: int = MAX_SOURCE, name: str = "big") -> str:
    """A valid definition of just under `size` bytes: many task steps, each with CEL in its input."""

    def step(n: int) -> str:
        return (
            f"  - id: s{n}\n"
            f"    task: {{service: Svc, type: t{n % 7}}}\n"
            f'    input: {{a: "input.a + \'{n}\'", b: "size(input.a) > {n} ? 1 : 2"}}\n'
            f"    retry: {{max_attempts: 3, initial_interval: 1s}}\n"
        )

    head = f"name: {name}\ninput_schema: {{type: object, properties: {{a: {{type: string}}}}}}\nsteps:\n"
    parts, total, n = [head], len(head), 0
    while total + len(step(n)) <= size:
        parts.append(step(n))
        total += len(parts[-1])
        n += 1
    return "".join(parts)


@pytest.mark.timeout(180)  # a control plane's start and up to two 1 MiB checks, on a loaded machine
async def test_registering_a_1mib_definition_does_not_stall_streams(
    server_process: Callable[..., Awaitable[ServerProcess]], tmp_path: Path
) -> None:
    # A served control plane (`mgmt serve`, its own process and heap, set aside once up): in this
    # process its full collections would also walk pytest's, hypothesis's and every test module's
    # objects, 150-350 ms on a slow machine, a stall of the harness's making.
    server = await server_process()
    server.follow()
    async with Client(server.address) as client:
        assert server.process is not None
        register = functools.partial(_register_big, client, server.address, server.process.pid, tmp_path)
        probe = await least_stalled(register)
    assert probe.worst < STALL_BOUND_S, probe.summary()


async def _register_big(client: Client, address: str, pid: int, tmp_path: Path, attempt: int) -> Probe:
    """Register a 1 MiB definition with `mgmt workflow apply` while a stream's round trips are timed
    (`pid`: the control plane's process, whose waits for a CPU are the machine's, not its own)."""
    source = big_definition(name=f"big{attempt}")
    assert len(source.encode()) > MAX_SOURCE - 1024
    path = tmp_path / f"big{attempt}.yaml"
    path.write_text(source)
    # Sent by `mgmt workflow apply` from another process, as a client elsewhere would: the 2 MiB
    # the test would otherwise encode and decode on this event loop are not the server's doing.
    async with keep_alive_stream(client, pid) as probe:
        apply = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "control_plane",
            "workflow",
            "apply",
            str(path),
            "--server",
            address,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(50):
            out, err = await apply.communicate()
    assert (apply.returncode, out.decode()) == (0, f"big{attempt}: version 1 (created)\n"), err.decode()
    assert len(probe.samples) >= 20, probe.summary()  # the stream ran all along
    stored = await client.workflow.definition(f"big{attempt}")
    steps = stored.spec["steps"]
    assert isinstance(steps, list) and len(steps) == source.count("  - id: ")
    assert stored.digest == parse_definition(source).digest
    return probe


CHOICE = """
name: {name}
steps:
  - id: pick
    choice:
      - when: "{condition}"
        steps: [{{id: yes, sleep: 1ms}}]
    default: [{{id: no, sleep: 1ms}}]
"""


async def test_hostile_cel_comprehension_refused_or_cut_off_while_lookup_answers(client: Client) -> None:
    # Nested over the input, 250 items cost 250^3 evaluations of the body: refused at registration.
    nested = "input.items.all(x, input.items.all(y, input.items.all(z, x + y + z >= 0)))"
    # One comprehension, but `in` walks the whole list for each item: allowed, and cut off on a big list.
    quadratic = "input.items.all(x, x in input.items)"

    async def hostile(attempt: int) -> Probe:
        name = f"quadratic{attempt}"
        async with lookups(client) as probe:
            with pytest.raises(InvalidArgument) as refused:
                await client.workflow.apply(CHOICE.format(name=f"nested{attempt}", condition=nested))
            await client.workflow.apply(CHOICE.format(name=name, condition=quadratic))
            small = await client.workflow.start(name, {"items": list(range(50))})
            big = await client.workflow.start(name, {"items": list(range(3_000))})
            small_done, big_done = await finish(client, small.id), await finish(client, big.id)
        violation = refused.value.violations[0]
        assert violation.field == "steps[0].choice[0].when"
        assert "nested" in violation.description, violation
        assert small_done.state == ProcessState.COMPLETED
        assert [s.step_id for s in small_done.steps if s.state == StepState.COMPLETED] == ["pick", "yes"]
        assert big_done.state == ProcessState.FAILED
        assert big_done.error.code == "CONDITION"
        assert "too costly" in big_done.error.message, big_done.error
        return probe

    probe = await least_stalled(hostile)
    assert probe.worst < STALL_BOUND_S, probe.summary()


REGEX = """
name: {name}
input_schema:
  type: object
  properties: {{code: {{type: string, pattern: '{pattern}'}}}}
steps: [{{id: a, sleep: 1ms}}]
"""


async def test_catastrophic_regex_in_input_schema_refused_while_lookup_answers(client: Client) -> None:
    # `(a+)+$` backtracks 2^n ways on "aaa...ab" in Python's re: seconds at n = 25, twice that per extra a.
    async def hostile(attempt: int) -> Probe:
        name = f"nested_plus{attempt}"
        await client.workflow.apply(REGEX.format(name=name, pattern="^(a+)+$"))
        async with lookups(client) as probe:
            with pytest.raises(InvalidArgument) as refused:
                await client.workflow.start(name, {"code": "a" * 25 + "b"})
            with pytest.raises(InvalidArgument) as backreference:
                await client.workflow.apply(REGEX.format(name=f"backreference{attempt}", pattern="^(a+)\\1$"))
            accepted = await client.workflow.start(name, {"code": "a" * 40})
        assert refused.value.violations[0].field == "input.code"
        assert "does not match" in refused.value.violations[0].description
        # A pattern only a backtracking engine runs is refused when the definition is registered.
        assert backreference.value.violations[0].field == "input_schema.properties.code.pattern"
        assert accepted.state in (ProcessState.STARTED, ProcessState.RUNNING)
        return probe

    probe = await least_stalled(hostile)
    assert probe.worst < STALL_BOUND_S, probe.summary()


async def test_bus_waits_indexed_by_subject(server: App, client: Client) -> None:
    # 20,000 processes each wait for the payment of their own order, two for any order's shipping.
    paid = range(0, 20_000, 10)
    shipped = range(0, 20_000, 200)
    expected = len(paid) + 2 * len(shipped) + len(paid)

    async def route(attempt: int) -> Probe:
        orders = f"orders{attempt}"
        delivered: set[tuple[str, str, int]] = set()
        everything_in = asyncio.Event()

        async def deliver(process_id: str, step_id: str, message: StoredMessage) -> None:
            delivered.add((process_id, step_id, message.sequence))
            if len(delivered) == expected:
                everything_in.set()

        waits = BusWaits(server.bus.log, deliver)
        waits.load([])
        for n in range(20_000):
            waits.add(f"p{n}", "paid", f"{orders}.{n}.paid", 0)
        waits.add("shipping", "any", f"{orders}.*.shipped", 0)
        waits.add("audit", "all", f"{orders}.>", 0)
        waits.add("audit", "later", f"{orders}.>", 10**9)  # only messages after that sequence
        stop = asyncio.Event()
        follower = asyncio.create_task(waits.run(stop))
        try:
            async with lookups(client) as probe:
                messages = [bus_pb2.BusMessage(subject=f"{orders}.{n}.paid") for n in paid]
                messages += [bus_pb2.BusMessage(subject=f"{orders}.{n}.shipped") for n in shipped]
                sequences = await client.bus.publish_many(messages)
                async with asyncio.timeout(20):
                    await everything_in.wait()
        finally:
            stop.set()
            await follower
        by_subject = dict(zip((m.subject for m in messages), sequences, strict=True))
        for n in paid:
            assert (f"p{n}", "paid", by_subject[f"{orders}.{n}.paid"]) in delivered
        assert {(p, s) for p, s, _ in delivered if p in ("shipping", "audit")} == {
            ("shipping", "any"),
            ("audit", "all"),
        }
        assert len(delivered) == expected
        return probe

    probe = await least_stalled(route)
    assert probe.worst < STALL_BOUND_S, probe.summary()
