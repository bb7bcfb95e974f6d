"""Client Status Discovery Service: which resources and versions each connected node holds, ACKed or not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.admin.v3 import config_dump_shared_pb2 as dump
from envoy.service.status.v3 import csds_pb2
from google.protobuf import timestamp_pb2

from control_plane.servicers.xds.nodes import Nodes, NodeState, TypeState
from control_plane.servicers.xds.resources import TYPES

Context = grpc.aio.ServicerContext[Any, Any]


def _stamp(value_s: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(round(value_s * 1e9))
    return stamp


def _config(
    type_url: str, name: str, state: TypeState, include_contents: bool
) -> csds_pb2.ClientConfig.GenericXdsConfig:
    """One resource as this replica last sent it to the node, and the node's answer."""
    config = csds_pb2.ClientConfig.GenericXdsConfig(type_url=type_url, name=name)
    resource = state.sent.get(name)
    if resource is None:
        # Asked for and not (yet) sent: the control plane has no such resource.
        config.client_status = dump.REQUESTED
        config.config_status = csds_pb2.NOT_SENT
        return config
    config.version_info = state.version_sent
    config.last_updated.CopyFrom(_stamp(state.sent_at))
    if include_contents:
        config.xds_config.CopyFrom(resource.packed)
    if state.nack_error:
        config.client_status = dump.NACKED
        config.config_status = csds_pb2.ERROR
        config.error_state.CopyFrom(
            dump.UpdateFailureState(
                details=state.nack_error,
                version_info=state.nack_version,
                last_update_attempt=_stamp(state.nacked_at),
            )
        )
    elif state.answered:
        config.client_status = dump.ACKED
        config.config_status = csds_pb2.SYNCED
    else:
        config.client_status = dump.REQUESTED
        config.config_status = csds_pb2.STALE
    return config


def client_config(node: NodeState, include_contents: bool = True) -> csds_pb2.ClientConfig:
    """The CSDS view of one node: every resource it asked for, by type then name."""
    configs = []
    for type_url in TYPES:
        state = node.types.get(type_url)
        if state is None:
            continue
        for name in sorted(state.names or state.sent):
            configs.append(_config(type_url, name, state, include_contents))
    return csds_pb2.ClientConfig(node=node.node, generic_xds_configs=configs)


class CsdsServicer:
    # Not a subclass of the generated servicer: xds-protos ships no type stubs (it would be Any).
    """Answers for the nodes connected to this replica (each replica knows its own clients)."""

    def __init__(self, nodes: Nodes, stopping: asyncio.Event) -> None:
        self._nodes = nodes
        self._stopping = stopping

    def _status(self, request: csds_pb2.ClientStatusRequest) -> csds_pb2.ClientStatusResponse:
        wanted = request.node.id if request.HasField("node") and request.node.id else None
        return csds_pb2.ClientStatusResponse(
            config=[
                client_config(node, not request.exclude_resource_contents)
                for node in self._nodes.all()
                if wanted is None or node.node.id == wanted
            ]
        )

    async def FetchClientStatus(
        self, request: csds_pb2.ClientStatusRequest, context: Context
    ) -> csds_pb2.ClientStatusResponse:
        return self._status(request)

    async def StreamClientStatus(
        self, request_iterator: AsyncIterator[csds_pb2.ClientStatusRequest], context: Context
    ) -> AsyncIterator[csds_pb2.ClientStatusResponse]:
        async for request in request_iterator:
            if self._stopping.is_set():
                return
            yield self._status(request)
