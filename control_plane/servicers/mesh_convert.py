"""Route policies between the wire (hms.mgmt.v1 Mesh) and the domain."""

from __future__ import annotations

from types import MappingProxyType

from control_plane.models import LoadBalancing, RetryPolicy, RoutePolicy, VersionSplit
from control_plane.servicers.convert import duration, enum_value, seconds, timestamp
from hms.mgmt.v1 import mesh_pb2 as pb

_BALANCING = MappingProxyType(
    {
        pb.LOAD_BALANCING_UNSPECIFIED: LoadBalancing.ROUND_ROBIN,
        pb.LOAD_BALANCING_ROUND_ROBIN: LoadBalancing.ROUND_ROBIN,
        pb.LOAD_BALANCING_LEAST_REQUEST: LoadBalancing.LEAST_REQUEST,
        pb.LOAD_BALANCING_RING_HASH: LoadBalancing.RING_HASH,
    }
)
_BALANCING_WIRE = {
    LoadBalancing.ROUND_ROBIN: pb.LOAD_BALANCING_ROUND_ROBIN,
    LoadBalancing.LEAST_REQUEST: pb.LOAD_BALANCING_LEAST_REQUEST,
    LoadBalancing.RING_HASH: pb.LOAD_BALANCING_RING_HASH,
}
# Envoy's default first backoff; the longest is ten times it unless set (as Envoy does).
_DEFAULT_BASE_S = 0.025


def route_from_proto(message: pb.RoutePolicy) -> RoutePolicy:
    """A SetRoute policy as a domain value (range checks are the core's)."""
    retry = None
    if message.HasField("retry"):
        r = message.retry
        base = seconds(r.base_interval, "route.retry.base_interval") if r.HasField("base_interval") else 0.0
        base = base or _DEFAULT_BASE_S
        most = seconds(r.max_interval, "route.retry.max_interval") if r.HasField("max_interval") else 0.0
        retry = RetryPolicy(
            retry_on=tuple(r.retry_on),
            num_retries=r.num_retries,
            base_interval_s=base,
            max_interval_s=most or 10 * base,
        )
    return RoutePolicy(
        service=message.service,
        splits=tuple(VersionSplit(s.version_range.strip(), s.weight) for s in message.splits),
        timeout_s=seconds(message.timeout, "route.timeout") if message.HasField("timeout") else 0.0,
        retry=retry,
        max_concurrent_requests=message.max_concurrent_requests,
        load_balancing=enum_value("route.load_balancing", _BALANCING, message.load_balancing),
    )


def route_to_proto(route: RoutePolicy) -> pb.RoutePolicy:
    """A stored policy on the wire."""
    message = pb.RoutePolicy(
        service=route.service,
        splits=[pb.VersionSplit(version_range=s.version_range, weight=s.weight) for s in route.splits],
        max_concurrent_requests=route.max_concurrent_requests,
        load_balancing=_BALANCING_WIRE[route.load_balancing],
        revision=route.revision,
        updated_at=timestamp(route.updated_at),
    )
    if route.timeout_s:
        message.timeout.CopyFrom(duration(route.timeout_s))
    if route.retry is not None:
        message.retry.CopyFrom(
            pb.RetryPolicy(
                retry_on=route.retry.retry_on,
                num_retries=route.retry.num_retries,
                base_interval=duration(route.retry.base_interval_s),
                max_interval=duration(route.retry.max_interval_s),
            )
        )
    return message
