"""Operator actions and search across replicas on one PostgreSQL database (the PostgreSQL pass only)."""

from __future__ import annotations

import asyncio

import pytest

from hms_mgmt import ProcessState, TaskContext, TaskFailure, Worker
from tests.test_replicas import Replicas, Start, clients
from tests.test_workflow_operations import until_incident

# Replicas share one PostgreSQL database: in the PostgreSQL pass only (see tests/conftest.py).
pytestmark = pytest.mark.postgres_pass

FLAKY = """
name: flaky_far
on_failure: incident
search_attributes: {site: "input.site"}
steps:
  - {id: first, task: {service: Far, type: work}}
  - {id: second, task: {service: Far, type: flaky}}
"""


@pytest.fixture
async def replicas(server_process: Start, postgres_url: str) -> Replicas:
    return Replicas(server_process, postgres_url)


@pytest.mark.timeout(60)
async def test_an_incident_opened_on_one_replica_is_found_and_retried_on_another(replicas: Replicas) -> None:
    await replicas.add(2)
    fixed = False

    async def flaky(task: TaskContext) -> dict[str, str]:
        if not fixed:
            raise TaskFailure("DOWN", "down", non_retryable=True)
        return {"ok": "yes"}

    async def work(task: TaskContext) -> dict[str, str]:
        return {"step": task.step_id}

    async with clients(replicas.addresses) as (a, b):
        await a.workflow.apply(FLAKY)
        worker = Worker(a, "Far", max_in_flight=4)
        worker.task("work")(work)
        worker.task("flaky")(flaky)
        run = asyncio.create_task(worker.run())
        try:
            process = await a.workflow.start("flaky_far", {"site": "north"})
            await until_incident(a, process.id, "second")
            seen_on_b = await b.workflow.incidents(definition="flaky_far")
            found_on_b = await b.workflow.list(definition="flaky_far", search_attributes={"site": "north"})
            fixed = True
            await b.workflow.retry_step(process.id, "second", "fixed")
            async with asyncio.timeout(20):
                final = await a.workflow.wait(process.id)
        finally:
            worker.stop()
            await run

    assert [i.process_id for i in seen_on_b] == [process.id]
    assert [p.id for p in found_on_b] == [process.id]
    assert final.state == ProcessState.COMPLETED
