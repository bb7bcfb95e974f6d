"""Schedules on three replicas sharing PostgreSQL: only the leader fires, and a killed leader loses nothing.

Needs PostgreSQL: runs in the PostgreSQL pass (`make test-postgres`), as tests/test_replicas.py.
"""

from __future__ import annotations

import signal

import pytest

from tests.test_replicas import Replicas, Start, clients
from tests.test_schedules import WAITING, assert_every_second_once, started_keys, until_counted, until_started

# Replicas share one PostgreSQL database: in the PostgreSQL pass only (see tests/conftest.py).
pytestmark = pytest.mark.postgres_pass


@pytest.mark.timeout(120)
async def test_three_replicas_fire_each_nominal_time_once_when_the_leader_is_killed(
    server_process: Start, postgres_url: str
) -> None:
    replicas = Replicas(server_process, postgres_url)
    await replicas.add(1)  # the first replica takes the leader lock
    await replicas.add(2)
    async with clients(replicas.addresses) as (_a, b, c):
        await b.workflow.apply(WAITING)
        # Created on a follower: the leader finds it in the store.
        await c.schedules.create("beat", "waits", every_s=1.0, overlap="allow_all", catchup_window_s=3600)
        before = await until_started(b, "waits", 3)
        await replicas.processes[0].stop(signal.SIGKILL)
        keys = await until_started(b, "waits", len(before) + 5, timeout_s=60)
        counted = await until_counted(c, "beat", "waits", len(keys))
        total = len(await started_keys(b, "waits"))
        shown = await c.schedules.get("beat")

    assert any("took leadership" in line for line in replicas.processes[0].log)
    # One of the others took over, and no nominal time was started twice or skipped meanwhile.
    assert_every_second_once(keys, "beat")
    assert set(before) <= set(keys)
    assert shown.missed_catchup == 0
    assert counted <= total  # every start counted once, none counted that did not happen
