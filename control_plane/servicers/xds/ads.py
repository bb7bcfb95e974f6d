"""xDS v3 Aggregated Discovery Service, State of the World: every type on one stream per client.

A client names the resources it wants per type; the stream answers with them at the current version
and again whenever a committed change alters any of them (go-control-plane's habit: a response only
when something the client holds differs). A request echoing a response's nonce ACKs it, or NACKs it
when it carries error_detail; both are kept per node for CSDS, and a NACK is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2

from control_plane.servicers.xds.nodes import Nodes, NodeState, TypeState
from control_plane.servicers.xds.resources import STATE_OF_THE_WORLD, TYPES, Snapshot
from control_plane.servicers.xds.snapshots import Snapshots

logger = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
# Requests a stream buffers before it reads no more (a client sends one per type and per answer).
_QUEUE = 64


class AdsServicer:
    # Not a subclass of the generated servicer: xds-protos ships no type stubs (it would be Any).
    """Serves the snapshot of this replica's applied registry and mesh revisions."""

    def __init__(self, snapshots: Snapshots, nodes: Nodes, stopping: asyncio.Event) -> None:
        self._snapshots = snapshots
        self._nodes = nodes
        self._stopping = stopping
        self._nonces = itertools.count(1)

    async def StreamAggregatedResources(
        self, request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest], context: Context
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        requests: asyncio.Queue[discovery_pb2.DiscoveryRequest | None] = asyncio.Queue(_QUEUE)

        async def read() -> None:
            try:
                async for request in request_iterator:
                    await requests.put(request)
            finally:
                await requests.put(None)

        reader = asyncio.ensure_future(read())
        stopping = asyncio.ensure_future(self._stopping.wait())
        node: NodeState | None = None
        changed = self._snapshots.changed.waiter()
        # Set once the client half-closed: it sends nothing more, but still hears of every change.
        half_closed = False
        try:
            while True:
                got = asyncio.ensure_future(requests.get()) if not half_closed else asyncio.Future[None]()
                await asyncio.wait((got, changed, stopping), return_when=asyncio.FIRST_COMPLETED)
                # Taken before the snapshot is read: a change committed from here on wakes the next wait.
                changed = self._snapshots.changed.waiter()
                if stopping.done():
                    got.cancel()
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "the control plane is shutting down")
                pending = []
                if got.done():
                    pending.append(got.result())
                else:
                    got.cancel()
                while not requests.empty():
                    pending.append(requests.get_nowait())
                for request in pending:
                    if request is None:
                        half_closed = True
                        break
                    if node is None:
                        node = self._nodes.connect(request.node)
                        logger.info("xds client %s connected", request.node.id or "(no node id)")
                    self._receive(node, request)
                if node is None:
                    continue
                snapshot = self._snapshots.current()
                for type_url in TYPES:
                    state = node.types.get(type_url)
                    if state is not None:
                        response = self._respond(state, type_url, snapshot)
                        if response is not None:
                            yield response
        finally:
            stopping.cancel()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            if node is not None:
                self._nodes.disconnect(node)
                logger.info("xds client %s disconnected", node.node.id or "(no node id)")

    async def DeltaAggregatedResources(
        self, request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest], context: Context
    ) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]:
        # gRPC's clients (Python, Node, Go, Java, C++) speak State of the World; Incremental is not served.
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "incremental xDS is not served; use State of the World"
        )
        yield discovery_pb2.DeltaDiscoveryResponse()  # pragma: no cover (abort raises)

    def _receive(self, node: NodeState, request: discovery_pb2.DiscoveryRequest) -> None:
        """Take a request's subscription, and its ACK or NACK of the response it names."""
        state = node.types.setdefault(request.type_url, TypeState())
        names = frozenset(request.resource_names)
        if names != state.names or not state.nonce:
            state.names = names
            state.asked = True
        if not request.response_nonce or request.response_nonce != state.nonce:
            return  # the first request of a type, or one about a response since replaced
        state.answered = True
        if request.HasField("error_detail"):
            state.nack_error = request.error_detail.message
            state.nack_version = state.version_sent
            state.nacked_at = time.time()
            logger.warning(
                "xds client %s NACKed %s version %s: %s",
                node.node.id,
                request.type_url.rpartition(".")[2],
                state.version_sent,
                request.error_detail.message,
            )
        else:
            state.acked_version = request.version_info
            state.nack_error = state.nack_version = ""

    def _respond(
        self, state: TypeState, type_url: str, snapshot: Snapshot
    ) -> discovery_pb2.DiscoveryResponse | None:
        """The response for one type when the client asked anew or what it holds changed; else None."""
        chosen = snapshot.pick(type_url, state.names)
        if not state.asked and chosen == state.sent:
            return None
        if (
            not state.asked
            and type_url not in STATE_OF_THE_WORLD
            and chosen.keys() < state.sent.keys()
            and all(state.sent[name] == resource for name, resource in chosen.items())
        ):
            # A route or assignment that went away is not deleted by leaving it out (xDS): the
            # listener or cluster that named it goes first. Nothing else changed: nothing to send.
            state.sent = chosen
            return None
        state.asked = False
        state.sent = chosen
        state.nonce = str(next(self._nonces))
        state.version_sent = snapshot.version
        state.sent_at = time.time()
        state.answered = False
        return discovery_pb2.DiscoveryResponse(
            version_info=snapshot.version,
            type_url=type_url,
            nonce=state.nonce,
            resources=[chosen[name] for name in sorted(chosen)],
        )
