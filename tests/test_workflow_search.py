"""Finding processes: business key prefix, time ranges, current step, incidents, declared search attributes."""

from __future__ import annotations

import asyncio
import time

import pytest
from google.protobuf import timestamp_pb2

from control_plane.errors import InvalidArgument
from control_plane.server import App
from hms.mgmt.v1 import workflow_pb2 as pb
from hms_mgmt import Client
from tests.workflow_support import Services, finish

APPLICATIONS = """
name: application
search_attributes:
  applicant: "input.applicant"
  district: "input.district"
  decision: "steps.decide.output.decision"
steps:
  - id: review
    wait_signal: {name: reviewed}
  - id: decide
    task: {service: Docs, type: decide}
"""
# Enough that a declared attribute's value picks a handful among many pages of processes (ten of them,
# one in 200): the search is what is tested, not the count (10,000 took 36 s on PostgreSQL in CI).
COUNT = 2_000


async def list_all(client: Client, request: pb.ListProcessesRequest) -> list[pb.Process]:
    """Every page of a ListProcesses query."""
    found: list[pb.Process] = []
    while True:
        response = await client.workflow._endpoints.unary(lambda e: e.workflow.ListProcesses(request))
        found.extend(response.processes)
        if not response.next_page_token:
            return found
        request.page_token = response.next_page_token


@pytest.mark.timeout(600)
async def test_search_by_a_declared_attribute_finds_the_right_processes_among_2000(
    server: App, client: Client
) -> None:
    await client.workflow.apply(APPLICATIONS)
    expected: set[str] = set()
    # Started on the engine directly, 500 at a time sharing group commits: the search is what is tested.
    for first in range(0, COUNT, 500):
        started = await asyncio.gather(
            *(
                server.workflows.start(
                    "application", 0, {"applicant": f"a{n % 200}", "district": f"d{n % 7}"}, f"app-{n}"
                )
                for n in range(first, min(first + 500, COUNT))
            )
        )
        expected |= {record.id for record, _ in started if record.input["applicant"] == "a42"}

    by_applicant = await list_all(
        client,
        pb.ListProcessesRequest(
            definition="application", search_attributes={"applicant": "a42"}, page_size=3
        ),
    )
    both = await client.workflow.list(
        definition="application", search_attributes={"applicant": "a42", "district": "d0"}
    )
    nobody = await client.workflow.list(definition="application", search_attributes={"applicant": "zz"})

    assert len(expected) == 10
    assert {p.id for p in by_applicant} == expected
    assert all(dict(p.search_attributes)["applicant"] == "a42" for p in by_applicant)
    # a42 is n = 42, 242, ..., 1842: district n % 7 == 0 for n = 42 and 1442 only.
    assert sorted(p.business_key for p in both) == ["app-1442", "app-42"]
    assert nobody == []


async def test_attributes_from_step_outputs_are_indexed_once_the_step_completed(
    client: Client, services: Services
) -> None:
    await client.workflow.apply(APPLICATIONS)
    await services.start("Docs", "decide")
    services.behaviour["decide"] = lambda t: {"decision": "approved"}
    started = await client.workflow.start("application", {"applicant": "x", "district": "d1"})
    before = await client.workflow.list(definition="application", search_attributes={"decision": "approved"})

    await client.workflow.signal(started.id, "reviewed", {})
    done = await finish(client, started.id)
    after = await client.workflow.list(definition="application", search_attributes={"decision": "approved"})

    assert before == []
    assert dict(done.search_attributes) == {"applicant": "x", "district": "d1", "decision": "approved"}
    assert [p.id for p in after] == [started.id]


async def test_filters_by_key_prefix_time_ranges_and_current_step(client: Client, services: Services) -> None:
    await client.workflow.apply(APPLICATIONS)
    await services.start("Docs", "decide")
    ended = await client.workflow.start("application", {"applicant": "e"}, business_key="site-1/a")
    await client.workflow.signal(ended.id, "reviewed", {})
    await finish(client, ended.id)
    between = time.time()
    waiting = await client.workflow.start("application", {"applicant": "w"}, business_key="site-2/a")

    def stamp(seconds: float) -> timestamp_pb2.Timestamp:
        message = timestamp_pb2.Timestamp()
        message.FromNanoseconds(int(seconds * 1e9))
        return message

    async def ids(**filters: object) -> list[str]:
        request = pb.ListProcessesRequest(definition="application", **filters)  # type: ignore[arg-type]
        return [p.id for p in await list_all(client, request)]

    assert await ids(business_key_prefix="site-1/") == [ended.id]
    assert await ids(business_key_prefix="site-") == [waiting.id, ended.id]
    assert await ids(started_after=stamp(between)) == [waiting.id]
    assert await ids(started_before=stamp(between)) == [ended.id]
    assert await ids(ended_before=stamp(between + 3600)) == [ended.id]
    assert await ids(ended_after=stamp(between + 3600)) == []
    assert await ids(current_step_id="review") == [waiting.id]
    assert await ids(current_step_id="decide") == []
    assert await ids(incidents=pb.INCIDENT_FILTER_WITHOUT) == [waiting.id, ended.id]
    assert await ids(incidents=pb.INCIDENT_FILTER_WITH) == []


async def test_search_attributes_need_the_definition_that_declares_them(client: Client) -> None:
    await client.workflow.apply(APPLICATIONS)

    with pytest.raises(InvalidArgument) as no_definition:
        await client.workflow.list(search_attributes={"applicant": "x"})
    with pytest.raises(InvalidArgument) as undeclared:
        await client.workflow.list(definition="application", search_attributes={"colour": "x"})

    assert "definition" in str(no_definition.value)
    assert "colour" in str(undeclared.value)


async def test_a_value_longer_than_the_index_keeps_is_found_by_the_whole_value(client: Client) -> None:
    await client.workflow.apply(APPLICATIONS)
    long_name = "x" * 300
    started = await client.workflow.start("application", {"applicant": long_name, "district": "d"})

    found = await client.workflow.list(definition="application", search_attributes={"applicant": long_name})
    with pytest.raises(InvalidArgument) as too_many:
        await client.workflow.list(
            definition="application", search_attributes={f"a{n}": "x" for n in range(17)}
        )

    assert [p.id for p in found] == [started.id]
    assert dict(found[0].search_attributes)["applicant"] == long_name[:256]
    assert "at most 16" in str(too_many.value)
