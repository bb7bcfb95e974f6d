"""xDS v3 Aggregated Discovery Service, State of the World: every type on one stream per client.

A client names the resources it wants per type; the stream answers with them at the current version
and again whenever a committed change alters one it holds (go-control-plane's habit: a response only
when something the client holds differs). The snapshot wakes a stream only when a resource it
subscribed to changed, and responses go out as bytes joined from resources serialized once
(encoding.py): a change costs each stream it concerns a nonce and a send, not an encoding. A request
echoing a response's nonce ACKs it, or NACKs it when it carries error_detail; both are kept per node
for CSDS, and a NACK is logged.

A change is pushed only to a type whose last response the client answered (ACK or NACK), as
go-control-plane's snapshot cache does: one response per type in flight, and a change made while it
is unanswered waits for the answer, then goes out as the version current at that moment. A client that
reads slowly thus gets the latest state, not every version in between queued in its buffers (100
clients in one busy process fell half a second behind a change every 20 ms). A request for new names
is answered at once whatever is in flight: it is a request, not a push. A client that half-closed
the stream can answer nothing more: it hears of every change without waiting.
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

from control_plane.servicers.errors import ANSWERS_UNDECODABLE, Undecodable, status_for
from control_plane.servicers.xds import encoding
from control_plane.servicers.xds.encoding import Resource
from control_plane.servicers.xds.nodes import Nodes, NodeState, TypeState
from control_plane.servicers.xds.resources import STATE_OF_THE_WORLD, TYPES
from control_plane.servicers.xds.snapshots import Snapshots

logger = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"


def add_to_server(servicer: AdsServicer, server: grpc.aio.Server) -> None:
    """What ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server does, but State of the World
    responses go out as the bytes the servicer joined (no serializer: grpc sends bytes as they are)."""
    handlers = {
        "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
            servicer.StreamAggregatedResources,
            request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
            response_serializer=None,
        ),
        "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
            servicer.DeltaAggregatedResources,
            request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
            response_serializer=discovery_pb2.DeltaDiscoveryResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


class AdsServicer:
    # Not a subclass of the generated servicer: xds-protos ships no type stubs (it would be Any).
    """Serves the snapshot of this replica's applied registry and mesh revisions."""

    def __init__(self, snapshots: Snapshots, nodes: Nodes, stopping: asyncio.Event) -> None:
        self._snapshots = snapshots
        self._nodes = nodes
        self._stopping = stopping
        self._nonces = itertools.count(1)

    async def StreamAggregatedResources(
        self, request_iterator: AsyncIterator[Any], context: Context
    ) -> AsyncIterator[bytes]:
        """Answer each client's subscriptions, then follow the changes of what it holds."""
        stream = _Stream()

        async def read() -> None:
            # Each request is taken as it comes: an ACK or a NACK needs nothing more, and only one
            # asking for something new wakes the sending side. Read here, not through
            # CleanDecoding's wrapper: two async generators fewer per request.
            async for request in request_iterator:
                if type(request) is Undecodable:
                    await context.abort(*status_for(request.error))
                if stream.node is None:
                    stream.node = self._nodes.connect(request.node)
                    logger.info("xds client %s connected", request.node.id or "(no node id)")
                if self._receive(stream.node, request, stream):
                    stream.changed(request.type_url)
            stream.half_closed()

        # Once the client half-closed, it sends nothing more (no ACK either) but still hears of every
        # change.
        reader = asyncio.ensure_future(read())
        reader.add_done_callback(lambda _: stream.wakeup.set())
        stopping = asyncio.ensure_future(self._stopping.wait())
        stopping.add_done_callback(lambda _: stream.wakeup.set())
        try:
            while True:
                await stream.wakeup.wait()
                stream.wakeup.clear()
                if self._stopping.is_set():
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "the control plane is shutting down")
                if reader.done() and not reader.cancelled() and (error := reader.exception()) is not None:
                    raise error  # the reader refused the stream (or failed): it ends here
                if stream.node is not None and stream.stale:
                    for response in self._responses(stream.node, stream):
                        yield response
        finally:
            self._snapshots.unsubscribe(stream)
            stopping.cancel()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            if stream.node is not None:
                self._nodes.disconnect(stream.node)
                logger.info("xds client %s disconnected", stream.node.node.id or "(no node id)")

    async def DeltaAggregatedResources(
        self, request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest], context: Context
    ) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]:
        """Refused: gRPC's clients (Python, Node, Go, Java, C++) speak State of the World."""
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "incremental xDS is not served; use State of the World"
        )
        yield discovery_pb2.DeltaDiscoveryResponse()  # pragma: no cover (abort raises)

    def _receive(self, node: NodeState, request: discovery_pb2.DiscoveryRequest, stream: _Stream) -> bool:
        """Take a request's subscription, and its ACK or NACK of the response it names.

        True when the client is owed a response: it asked for something new, or it answered the
        response it held while a change of that type waited for the answer.
        """
        state = node.types.setdefault(request.type_url, TypeState())
        names = frozenset(request.resource_names)
        asked = names != state.names or not state.nonce
        if asked:
            state.names = names
            state.asked = True
            self._snapshots.subscribe(stream, request.type_url, names)
        if not request.response_nonce or request.response_nonce != state.nonce:
            return asked  # the first request of a type, or one about a response since replaced
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
        self._nodes.answered()
        return stream.release(request.type_url) or asked

    def _responses(self, node: NodeState, stream: _Stream) -> list[bytes]:
        """Every response the node is owed now, by type in the order clients walk them.

        Made together, before the first is sent: all of them come from one version, even if a
        change is applied while the stream waits to send.
        """
        self._snapshots.refresh()
        # Taken after the refresh: what it applied is answered here.
        stale, stream.stale = stream.stale, set()
        responses = []
        for type_url in TYPES:
            state = node.types.get(type_url) if type_url in stale else None
            if state is None:
                continue
            if not state.asked and not state.answered and stream.answering:
                stream.held.add(type_url)  # pushed when the client answers the response it holds
                continue
            response = self._respond(state, type_url)
            if response is not None:
                responses.append(response)
        return responses

    def _respond(self, state: TypeState, type_url: str) -> bytes | None:
        """The response for one type when the client asked anew or what it holds changed; else None."""
        chosen = self._snapshots.pick(type_url, state.names)
        if not state.asked and _same(chosen, state.sent):
            return None
        if (
            not state.asked
            and type_url not in STATE_OF_THE_WORLD
            and chosen.keys() < state.sent.keys()
            and _same(chosen, state.sent, subset=True)
        ):
            # A route or assignment that went away is not deleted by leaving it out (xDS): the
            # listener or cluster that named it goes first. Nothing else changed: nothing to send.
            state.sent = chosen
            return None
        state.asked = False
        state.sent = chosen
        state.nonce = str(next(self._nonces))
        state.version_sent = self._snapshots.version
        state.sent_at = time.time()
        state.answered = False
        return encoding.response(self._snapshots.body(type_url, chosen), state.nonce)


class _Stream:
    """One ADS stream: its node, and the types it may owe a response (the snapshot wakes it)."""

    __slots__ = ("answering", "held", "node", "stale", "wakeup")

    def __init__(self) -> None:
        self.node: NodeState | None = None
        # Set when the client asked for something new, a resource the stream holds changed, the
        # client half-closed or the control plane stops: one wake-up whatever the cause.
        self.wakeup = asyncio.Event()
        # The types whose resources changed or that the client asked anew since the last look.
        self.stale: set[str] = set()
        # The types that changed while their last response was unanswered: looked at again on the answer.
        self.held: set[str] = set()
        # False once the client half-closed: no answer can come, so no push waits for one.
        self.answering = True

    def changed(self, type_url: str) -> None:
        """A resource of `type_url` this stream subscribed to changed, or the client asked anew."""
        self.stale.add(type_url)
        self.wakeup.set()

    def half_closed(self) -> None:
        """The client sends nothing more: what waited for its answers is owed now."""
        self.answering = False
        self.stale |= self.held
        self.held.clear()
        self.wakeup.set()

    def release(self, type_url: str) -> bool:
        """The client answered its response of `type_url`: whether a change of it was held for that."""
        if type_url in self.held:
            self.held.discard(type_url)
            return True
        return False


# Answers undecodable requests itself (read()): CleanDecoding registers it as it is.
setattr(AdsServicer.StreamAggregatedResources, ANSWERS_UNDECODABLE, True)


def _same(chosen: dict[str, Resource], sent: dict[str, Resource], subset: bool = False) -> bool:
    """Whether the client holds each chosen resource as it is now (and, unless `subset`, no other)."""
    if not subset and chosen.keys() != sent.keys():
        return False
    return all(sent.get(name) is resource for name, resource in chosen.items())
