"""Mesh values: the traffic policy of a service, as the xDS edge turns it into routes and clusters."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class LoadBalancing(StrEnum):
    """How a client picks among the healthy instances of a cluster."""

    ROUND_ROBIN = "round_robin"
    LEAST_REQUEST = "least_request"
    RING_HASH = "ring_hash"


@dataclass(frozen=True, slots=True)
class VersionSplit:
    """A share (weight) of a service's traffic for the instances whose version is in a range."""

    version_range: str
    weight: int


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Client-side retries: which gRPC codes, how many times, with what backoff."""

    retry_on: tuple[str, ...]
    num_retries: int
    base_interval_s: float = 0.025
    max_interval_s: float = 0.25


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """The traffic policy of one service; `revision` and `updated_at` are set when stored."""

    service: str
    splits: tuple[VersionSplit, ...] = ()
    timeout_s: float = 0.0
    retry: RetryPolicy | None = None
    max_concurrent_requests: int = 0
    load_balancing: LoadBalancing = LoadBalancing.ROUND_ROBIN
    revision: int = 0
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class MeshSnapshot:
    """Every stored policy and the mesh revision they reflect."""

    revision: int
    routes: tuple[RoutePolicy, ...]
