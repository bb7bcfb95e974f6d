"""The xDS resources of a service, from its instances and its route policy, as gRPC clients read them.

For each registered service S (and each service with a route policy): a Listener S whose api_listener
is an HttpConnectionManager reading RouteConfiguration S over ADS; a Cluster S (EDS over ADS) and a
ClusterLoadAssignment S of its live instances; with version splits, one Cluster and assignment per
split, named `S|<version range>`, that the route weighs. The snapshot (snapshots.py) keeps them per
service and rebuilds only the services a change touched; streams send each client only what it asked for.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import defaultdict

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import api_listener_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2

from control_plane.core.versions import parse_version_filter
from control_plane.models import Health, Instance, LoadBalancing, RoutePolicy

logger = logging.getLogger(__name__)

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
# In the order a client walks them; a client asks for each type on the one ADS stream.
TYPES = (LISTENER, ROUTE, CLUSTER, ENDPOINT)
# Types whose every response must list every resource the client asked for: one left out is deleted.
STATE_OF_THE_WORLD = frozenset({LISTENER, CLUSTER})

ZONE = "zone"
WEIGHT = "weight"
_MAX_WEIGHT = 1_000_000
_ADS = config_source_pb2.ConfigSource(
    ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=config_source_pb2.V3
)
_LB = {
    LoadBalancing.ROUND_ROBIN: cluster_pb2.Cluster.ROUND_ROBIN,
    LoadBalancing.LEAST_REQUEST: cluster_pb2.Cluster.LEAST_REQUEST,
    LoadBalancing.RING_HASH: cluster_pb2.Cluster.RING_HASH,
}


def version_info(registry_revision: int, mesh_revision: int) -> str:
    """The version of a snapshot: `<registry revision>.<mesh revision>`, both only ever growing."""
    return f"{registry_revision}.{mesh_revision}"


def split_cluster(service: str, version_range: str) -> str:
    """The cluster (and assignment) name of one version split of a service."""
    return f"{service}|{version_range}"


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def _duration(value_s: float) -> duration_pb2.Duration:
    message = duration_pb2.Duration()
    message.FromNanoseconds(round(value_s * 1e9))
    return message


def _clusters(service: str, members: list[Instance], route: RoutePolicy) -> dict[str, list[Instance]]:
    """Each cluster of a service (itself, and one per version split) and the instances it holds."""
    clusters = {service: members}
    for split in route.splits:
        wanted = parse_version_filter(split.version_range)
        clusters[split_cluster(service, split.version_range)] = [
            i for i in members if wanted.matches(i.version)
        ]
    return clusters


def for_service(
    service: str, members: list[Instance], route: RoutePolicy | None
) -> dict[tuple[str, str], object]:
    """Every resource of one service, by (type, name): none when it has no instance and no policy.

    A service's resources depend on its instances and its policy only: a change to one service
    rebuilds that service's alone.
    """
    if not members and route is None:
        return {}
    route = route or RoutePolicy(service=service)
    built: dict[tuple[str, str], object] = {
        (LISTENER, service): _listener(service),
        (ROUTE, service): _route_configuration(service, route),
    }
    for name, chosen in _clusters(service, members, route).items():
        built[CLUSTER, name] = _cluster(name, route)
        built[ENDPOINT, name] = _assignment(name, chosen)
    return built


def assignments(
    service: str, members: list[Instance], route: RoutePolicy | None
) -> dict[tuple[str, str], object]:
    """The ClusterLoadAssignments of a service alone: all that its instances change, while it exists."""
    chosen = _clusters(service, members, route or RoutePolicy(service=service))
    return {(ENDPOINT, name): _assignment(name, instances) for name, instances in chosen.items()}


def _listener(service: str) -> listener_pb2.Listener:
    manager = hcm.HttpConnectionManager(
        rds=hcm.Rds(config_source=_ADS, route_config_name=service),
        http_filters=[
            hcm.HttpFilter(name="envoy.filters.http.router", typed_config=_pack(router_pb2.Router()))
        ],
    )
    return listener_pb2.Listener(
        name=service, api_listener=api_listener_pb2.ApiListener(api_listener=_pack(manager))
    )


def _route_configuration(service: str, policy: RoutePolicy) -> route_pb2.RouteConfiguration:
    action = route_components_pb2.RouteAction()
    if policy.splits:
        action.weighted_clusters.CopyFrom(
            route_components_pb2.WeightedCluster(
                clusters=[
                    route_components_pb2.WeightedCluster.ClusterWeight(
                        name=split_cluster(service, s.version_range),
                        weight=wrappers_pb2.UInt32Value(value=s.weight),
                    )
                    for s in policy.splits
                ]
            )
        )
    else:
        action.cluster = service
    if policy.timeout_s:
        action.max_stream_duration.max_stream_duration.CopyFrom(_duration(policy.timeout_s))
    if policy.retry is not None:
        retry = policy.retry
        action.retry_policy.CopyFrom(
            route_components_pb2.RetryPolicy(
                retry_on=",".join(retry.retry_on),
                num_retries=wrappers_pb2.UInt32Value(value=retry.num_retries),
                retry_back_off=route_components_pb2.RetryPolicy.RetryBackOff(
                    base_interval=_duration(retry.base_interval_s),
                    max_interval=_duration(retry.max_interval_s),
                ),
            )
        )
    return route_pb2.RouteConfiguration(
        name=service,
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name=service,
                domains=["*"],
                routes=[
                    route_components_pb2.Route(match=route_components_pb2.RouteMatch(prefix=""), route=action)
                ],
            )
        ],
    )


def _cluster(name: str, policy: RoutePolicy) -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=_ADS, service_name=name),
        lb_policy=_LB[policy.load_balancing],
    )
    if policy.max_concurrent_requests:
        cluster.circuit_breakers.CopyFrom(
            circuit_breaker_pb2.CircuitBreakers(
                thresholds=[
                    circuit_breaker_pb2.CircuitBreakers.Thresholds(
                        priority=base_pb2.DEFAULT,
                        max_requests=wrappers_pb2.UInt32Value(value=policy.max_concurrent_requests),
                    )
                ]
            )
        )
    return cluster


def _weight(instance: Instance) -> int:
    text = instance.metadata.get(WEIGHT, "")
    if text.isdigit() and 1 <= int(text) <= _MAX_WEIGHT:
        return int(text)
    return 1


def _zone(instance: Instance) -> str:
    for tag in instance.tags:
        key, sep, value = tag.partition("=")
        if sep and key == ZONE:
            return value
    return instance.metadata.get(ZONE, "")


def _socket(address: str) -> address_pb2.Address | None:
    """An instance's address as xDS wants it: an IP literal and a port (gRPC resolves no names here)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(address=host, port_value=int(port)))


def _assignment(name: str, members: list[Instance]) -> endpoint_pb2.ClusterLoadAssignment:
    """PASSING instances as HEALTHY, CRITICAL ones as UNHEALTHY, grouped by zone; DOWN ones are gone."""
    localities: dict[str, list[endpoint_components_pb2.LbEndpoint]] = defaultdict(list)
    healthy_weight: dict[str, int] = defaultdict(int)
    for instance in members:
        address = _socket(instance.address)
        if address is None:
            logger.debug("%s/%s: %s is not an IP address; left out of xDS", *instance.key, instance.address)
            continue
        zone = _zone(instance)
        weight = _weight(instance)
        healthy = instance.health is Health.PASSING
        localities[zone].append(
            endpoint_components_pb2.LbEndpoint(
                endpoint=endpoint_components_pb2.Endpoint(address=address),
                health_status=health_check_pb2.HEALTHY if healthy else health_check_pb2.UNHEALTHY,
                load_balancing_weight=wrappers_pb2.UInt32Value(value=weight),
            )
        )
        healthy_weight[zone] += weight if healthy else 0
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name,
        endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(
                locality=base_pb2.Locality(zone=zone),
                lb_endpoints=endpoints,
                # gRPC ignores a locality without a weight: its share is its healthy instances' weight.
                load_balancing_weight=wrappers_pb2.UInt32Value(value=max(1, healthy_weight[zone])),
            )
            for zone, endpoints in sorted(localities.items())
        ],
    )
