"""Service registry: instances hold a lease and disappear the moment it lapses; probes judge their health.

The package's public names are re-exported here: `from control_plane.core.registry import Registry`.
"""

from control_plane.core.registry.leases import Lease
from control_plane.core.registry.probing import HealthChecker, Prober
from control_plane.core.registry.registry import Registration, Registry, ServiceSummary
from control_plane.core.registry.watch import ChangeFeed, Watcher

__all__ = [
    "ChangeFeed",
    "HealthChecker",
    "Lease",
    "Prober",
    "Registration",
    "Registry",
    "ServiceSummary",
    "Watcher",
]
