"""What the xDS resources say of the registry: health, locality, weights, splits, left-out addresses."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import health_check_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_pb2

from control_plane.models import Health, Instance, RetryPolicy, RoutePolicy, VersionSplit
from control_plane.servicers.xds.resources import CLUSTER, ENDPOINT, ROUTE, for_service


def _instance(instance_id: str, address: str, **fields: object) -> Instance:
    return Instance(
        service="Pay", instance_id=instance_id, address=address, lease_id=instance_id, ttl_s=10, registered_at=0,
        **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def test_an_assignment_groups_by_zone_weighs_by_metadata_and_marks_critical_unhealthy() -> None:
    built = for_service(
        "Pay",
        [
            _instance("a", "10.0.0.1:80", tags=("zone=east",), metadata={"weight": "3"}),
            _instance("b", "10.0.0.2:80", metadata={"zone": "west"}, health=Health.CRITICAL),
            _instance("c", "10.0.0.3:80", tags=("zone=east",)),
            _instance("d", "pay.internal:80"),  # a name: gRPC resolves none from EDS
        ],
        None,
    )
    assignment = built[ENDPOINT, "Pay"]
    assert isinstance(assignment, endpoint_pb2.ClusterLoadAssignment)
    by_zone = {
        group.locality.zone: (
            group.load_balancing_weight.value,
            [
                (e.endpoint.address.socket_address.address, e.load_balancing_weight.value, e.health_status)
                for e in group.lb_endpoints
            ],
        )
        for group in assignment.endpoints
    }
    assert by_zone == {
        "east": (4, [("10.0.0.1", 3, health_check_pb2.HEALTHY), ("10.0.0.3", 1, health_check_pb2.HEALTHY)]),
        "west": (1, [("10.0.0.2", 1, health_check_pb2.UNHEALTHY)]),
    }


def test_a_policy_becomes_weighted_clusters_a_retry_policy_and_a_request_cap() -> None:
    policy = RoutePolicy(
        service="Pay",
        splits=(VersionSplit(">=1,<2", 90), VersionSplit(">=2", 10)),
        timeout_s=2.0,
        retry=RetryPolicy(("unavailable", "cancelled"), 2, 0.025, 0.25),
        max_concurrent_requests=5,
    )
    built = for_service(
        "Pay",
        [_instance("old", "10.0.0.1:80", version="1.3"), _instance("new", "10.0.0.2:80", version="2.0")],
        policy,
    )
    route = built[ROUTE, "Pay"]
    assert isinstance(route, route_pb2.RouteConfiguration)
    action = route.virtual_hosts[0].routes[0].route
    assert [(c.name, c.weight.value) for c in action.weighted_clusters.clusters] == [
        ("Pay|>=1,<2", 90),
        ("Pay|>=2", 10),
    ]
    assert action.max_stream_duration.max_stream_duration.ToMilliseconds() == 2000
    assert (
        action.retry_policy.retry_on == "unavailable,cancelled" and action.retry_policy.num_retries.value == 2
    )
    canary = built[ENDPOINT, "Pay|>=2"]
    assert isinstance(canary, endpoint_pb2.ClusterLoadAssignment)
    assert [e.endpoint.address.socket_address.address for e in canary.endpoints[0].lb_endpoints] == [
        "10.0.0.2"
    ]
    cluster = built[CLUSTER, "Pay|>=2"]
    assert isinstance(cluster, cluster_pb2.Cluster)
    assert cluster.circuit_breakers.thresholds[0].max_requests.value == 5
    assert sorted(name for kind, name in built if kind == CLUSTER) == ["Pay", "Pay|>=1,<2", "Pay|>=2"]
