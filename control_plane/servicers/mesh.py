"""Mesh servicer: translates the wire API to `core.mesh.Mesh`."""

from __future__ import annotations

from typing import Any

import grpc

from control_plane.core.mesh import Mesh
from control_plane.servicers.errors import translate_errors
from control_plane.servicers.mesh_convert import route_from_proto, route_to_proto
from hms.mgmt.v1 import mesh_pb2 as pb
from hms.mgmt.v1 import mesh_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class MeshServicer(mesh_pb2_grpc.MeshServicer):
    """Thin: each method converts, calls the mesh core and converts back."""

    def __init__(self, mesh: Mesh) -> None:
        self._mesh = mesh

    @translate_errors
    async def SetRoute(self, request: pb.SetRouteRequest, context: Context) -> pb.SetRouteResponse:
        stored = await self._mesh.set_route(route_from_proto(request.route))
        return pb.SetRouteResponse(route=route_to_proto(stored))

    @translate_errors
    async def GetRoute(self, request: pb.GetRouteRequest, context: Context) -> pb.GetRouteResponse:
        return pb.GetRouteResponse(route=route_to_proto(self._mesh.get_route(request.service)))

    @translate_errors
    async def ListRoutes(self, request: pb.ListRoutesRequest, context: Context) -> pb.ListRoutesResponse:
        return pb.ListRoutesResponse(
            routes=[route_to_proto(r) for r in self._mesh.routes()], revision=self._mesh.revision
        )

    @translate_errors
    async def DeleteRoute(self, request: pb.DeleteRouteRequest, context: Context) -> pb.DeleteRouteResponse:
        return pb.DeleteRouteResponse(revision=await self._mesh.delete_route(request.service))
