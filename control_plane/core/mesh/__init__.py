"""The mesh: the traffic policy of each service, stored, replicated and versioned by a mesh revision.

`from control_plane.core.mesh import Mesh`. The xDS edge (control_plane.servicers.xds) reads it with the
registry and turns both into Envoy's resources.
"""

from control_plane.core.mesh.policies import Mesh

__all__ = ["Mesh"]
