"""The mesh's part of the store contract, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import dataclasses

from control_plane.models import LoadBalancing, RetryPolicy, RoutePolicy, VersionSplit
from control_plane.storage import Store


async def test_route_policies_are_stored_replaced_and_removed_at_rising_revisions(store: Store) -> None:
    canary = RoutePolicy(
        service="Payments",
        splits=(VersionSplit(">=1,<2", 90), VersionSplit(">=2", 10)),
        timeout_s=1.5,
        retry=RetryPolicy(("unavailable", "cancelled"), 2, 0.025, 0.25),
        max_concurrent_requests=10,
        load_balancing=LoadBalancing.RING_HASH,
    )
    first = await store.mesh_put(canary, now=100.0)
    other = await store.mesh_put(RoutePolicy(service="Orders"), now=101.0)
    replaced = await store.mesh_put(RoutePolicy(service="Orders", timeout_s=2.0), now=102.0)
    removed = await store.mesh_delete("Payments")
    missing = await store.mesh_delete("Payments")
    snapshot = await store.mesh_load()

    assert (first.revision, other.revision, replaced.revision, removed, missing) == (1, 2, 3, 4, None)
    assert first == dataclasses.replace(canary, revision=1, updated_at=100.0)
    assert snapshot.revision == 4 and snapshot.routes == (replaced,)


async def test_a_stored_policy_reads_back_whole(store: Store) -> None:
    canary = RoutePolicy(
        service="Payments",
        splits=(VersionSplit("2.0.1", 1),),
        retry=RetryPolicy(("internal",), 4, 0.5, 5.0),
        load_balancing=LoadBalancing.LEAST_REQUEST,
    )
    stored = await store.mesh_put(canary, now=5.0)
    assert (await store.mesh_load()).routes == (stored,)
