"""Page tokens: every listing pages through everything once, and refuses a token made anywhere else."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from control_plane.console.views import ProcessFilter
from control_plane.core import paging
from control_plane.errors import InvalidArgument
from control_plane.server import App
from hms.mgmt.v1 import bus_pb2, workflow_pb2
from tests.wire_support import Stubs, violations

DEFINITION = """
name: {name}
description: version {version}
steps:
  - id: work
    task: {{service: Worker, type: work}}
"""


@pytest.fixture
async def stubs(server: App) -> AsyncIterator[Stubs]:
    async with grpc.aio.insecure_channel(server.address) as channel:
        s = Stubs.on(channel)
        yield s
        s.close()


async def _all_pages(call: Callable[[str], Awaitable[Any]], items: str) -> tuple[list[Any], int]:
    """Every item of a listing, read page by page from its tokens, and how many pages it took."""
    found: list[Any] = []
    token, pages = "", 0
    while True:
        response = await call(token)
        found += list(getattr(response, items))
        pages += 1
        token = response.next_page_token
        if not token:
            return found, pages


async def _seeded(stubs: Stubs) -> str:
    """Three definitions of two versions, five processes, five subjects, three durable consumers."""
    for name in ("alpha", "beta", "gamma"):
        for version in (1, 2):
            source = DEFINITION.format(name=name, version=version)
            await stubs.workflow.RegisterDefinition(workflow_pb2.RegisterDefinitionRequest(source=source))
    process_id = ""
    for _ in range(5):
        process_id = await stubs.process()
    for n in range(5):
        message = bus_pb2.BusMessage(subject=f"orders.s{n}", data=b"x")
        await stubs.bus.Publish(bus_pb2.PublishRequest(message=message))
    for n in range(3):
        subscription = stubs.bus.Subscribe(bus_pb2.SubscribeRequest(pattern="orders.>", durable=f"c{n}"))
        await subscription.read()  # the ready frame: the consumer exists
        subscription.cancel()
    return process_id


async def test_every_listing_pages_through_everything_once(stubs: Stubs) -> None:
    process_id = await _seeded(stubs)
    wf, bus = stubs.workflow, stubs.bus

    def definitions(size: int) -> Callable[[str], Awaitable[Any]]:
        return lambda token: wf.ListDefinitions(
            workflow_pb2.ListDefinitionsRequest(all_versions=True, page_size=size, page_token=token)
        )

    def processes(size: int) -> Callable[[str], Awaitable[Any]]:
        return lambda token: wf.ListProcesses(
            workflow_pb2.ListProcessesRequest(page_size=size, page_token=token)
        )

    def history(size: int) -> Callable[[str], Awaitable[Any]]:
        return lambda token: wf.GetHistory(
            workflow_pb2.GetHistoryRequest(process_id=process_id, page_size=size, page_token=token)
        )

    def subjects(size: int) -> Callable[[str], Awaitable[Any]]:
        return lambda token: bus.ListSubjects(bus_pb2.ListSubjectsRequest(page_size=size, page_token=token))

    def consumers(size: int) -> Callable[[str], Awaitable[Any]]:
        return lambda token: bus.ListConsumers(bus_pb2.ListConsumersRequest(page_size=size, page_token=token))

    listings: list[tuple[Callable[[int], Callable[[str], Awaitable[Any]]], str, Callable[[Any], Any]]] = [
        (definitions, "definitions", lambda d: (d.name, d.version)),
        (processes, "processes", lambda p: p.id),
        (history, "events", lambda e: e.sequence),
        (subjects, "subjects", lambda s: s.subject),
        (consumers, "consumers", lambda c: c.name),
    ]
    for listing, items, key in listings:
        whole, _ = await _all_pages(listing(1000), items)
        paged, pages = await _all_pages(listing(1), items)
        assert [key(item) for item in paged] == [key(item) for item in whole], items
        assert pages >= len(whole) >= 3, items


async def test_page_token_of_another_listing_refused(stubs: Stubs) -> None:
    process_id = await _seeded(stubs)
    wf, bus = stubs.workflow, stubs.bus
    tokens = {
        "definitions": (
            await wf.ListDefinitions(workflow_pb2.ListDefinitionsRequest(page_size=1))
        ).next_page_token,
        "processes": (await wf.ListProcesses(workflow_pb2.ListProcessesRequest(page_size=1))).next_page_token,
        "history": (
            await wf.GetHistory(workflow_pb2.GetHistoryRequest(process_id=process_id, page_size=1))
        ).next_page_token,
        "subjects": (await bus.ListSubjects(bus_pb2.ListSubjectsRequest(page_size=1))).next_page_token,
        "consumers": (await bus.ListConsumers(bus_pb2.ListConsumersRequest(page_size=1))).next_page_token,
    }
    assert all(tokens.values())
    # The formats tokens had before they were one: "created|id" and a bare number, base64-encoded.
    older = {
        "processes": base64.urlsafe_b64encode(b"1700000000.0|x").decode(),
        "history": base64.urlsafe_b64encode(b"1").decode(),
    }
    calls: dict[str, Callable[[str], Awaitable[Any]]] = {
        "definitions": lambda t: wf.ListDefinitions(workflow_pb2.ListDefinitionsRequest(page_token=t)),
        "processes": lambda t: wf.ListProcesses(workflow_pb2.ListProcessesRequest(page_token=t)),
        "history": lambda t: wf.GetHistory(
            workflow_pb2.GetHistoryRequest(process_id=process_id, page_token=t)
        ),
        "subjects": lambda t: bus.ListSubjects(bus_pb2.ListSubjectsRequest(page_token=t)),
        "consumers": lambda t: bus.ListConsumers(bus_pb2.ListConsumersRequest(page_token=t)),
    }

    answers = {}
    for listing, call in calls.items():
        foreign = [token for other, token in tokens.items() if other != listing]
        for token in [*foreign, *older.values()]:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call(token)
            answers[(listing, token)] = (refused.value.code(), tuple(violations(refused.value)))
        await call(tokens[listing])  # its own token still serves

    assert set(answers.values()) == {(grpc.StatusCode.INVALID_ARGUMENT, ("page_token",))}


HISTORY: tuple[type[paging.Part], ...] = (int,)
PROCESSES: tuple[type[paging.Part], ...] = (float, str)
SUBJECTS: tuple[type[paging.Part], ...] = (str,)


@pytest.mark.parametrize(
    ("listing", "kinds", "text"),
    [
        ("history", HISTORY, '["history",9223372036854775808]'),  # past a signed 64-bit sequence
        ("history", HISTORY, '["history",-1]'),
        ("history", HISTORY, '["history",true]'),
        ("history", HISTORY, '["history",1.5]'),
        ("history", HISTORY, '["history",1,2]'),
        ("processes", PROCESSES, '["processes",1e999,"x"]'),  # Python reads this JSON number as infinity
        ("processes", PROCESSES, '["processes",NaN,"x"]'),
        ("processes", PROCESSES, '["processes",Infinity,"x"]'),
        ("processes", PROCESSES, '["processes","1700000000","x"]'),
        ("subjects", SUBJECTS, '["subjects",["nested"]]'),
        ("subjects", SUBJECTS, '["subjects"]'),
        ("subjects", SUBJECTS, '["consumers","orders"]'),
        ("subjects", SUBJECTS, "[]"),
        ("subjects", SUBJECTS, '{"listing":"subjects"}'),
        ("subjects", SUBJECTS, "[" * 700 + "]" * 700),  # nested lists, within the length a token may have
        ("subjects", SUBJECTS, "not json"),
    ],
)
def test_forged_page_token_refused(listing: str, kinds: tuple[type[paging.Part], ...], text: str) -> None:
    token = base64.urlsafe_b64encode(text.encode()).decode()

    with pytest.raises(InvalidArgument) as refused:
        paging.decode(token, listing, *kinds)

    assert [v.field for v in refused.value.violations] == ["page_token"]


@pytest.mark.parametrize("token", ["%%%", "é", "A" * 3000, "=", ""])
def test_page_token_that_is_not_base64_json_refused(token: str) -> None:
    with pytest.raises(InvalidArgument):
        paging.decode(token, "subjects", str)


def test_page_token_round_trip() -> None:
    for listing, position, kinds in [
        ("history", (2**63 - 1,), (int,)),
        ("processes", (1700000000.123456, "p-1"), (float, str)),
        ("definitions", ("name\x00999998",), (str,)),
    ]:
        token = paging.encode(listing, *position)
        assert token.isascii() and "=" not in token
        assert paging.decode(token, listing, *kinds) == position


def test_console_pages_processes_with_the_same_tokens() -> None:
    position = (1700000000.5, "p-1")
    token = paging.encode("processes", *position)

    assert ProcessFilter.from_query({"before": token}).before == position
    assert ProcessFilter(before=position).query(before=position)["before"] == token
    with pytest.raises(InvalidArgument) as refused:
        ProcessFilter.from_query({"before": paging.encode("history", 1)})
    assert [v.field for v in refused.value.violations] == ["before"]
