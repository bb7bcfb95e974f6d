"""What each connected xDS client (node) asked for, was sent, and ACKed or NACKed: the source of CSDS."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from envoy.config.core.v3 import base_pb2

from control_plane.servicers.xds.encoding import Resource


@dataclass(slots=True)
class TypeState:
    """One resource type on one stream: the names asked for and the last response's fate."""

    names: frozenset[str] = frozenset()
    # Set when the client asked for a new set of names: it gets an answer even if nothing changed.
    asked: bool = False
    nonce: str = ""
    version_sent: str = ""
    # What the last response sent, by name (the snapshot's objects: `is` tells whether still current).
    sent: dict[str, Resource] = field(default_factory=dict)
    sent_at: float = 0.0
    acked_version: str = ""
    # The client's error for the last version it refused, and that version; cleared by the next ACK.
    nack_error: str = ""
    nack_version: str = ""
    nacked_at: float = 0.0
    # Whether the last response sent was answered yet (ACK or NACK).
    answered: bool = True


@dataclass(slots=True)
class NodeState:
    """One connected client: its node identity and the state of each type on its stream."""

    node: base_pb2.Node
    connected_at: float
    types: dict[str, TypeState] = field(default_factory=dict)
    # Which stream of this replica it is (a reconnecting node gets a new one).
    stream_id: int = 0


class Nodes:
    """Every node connected to this replica's ADS (a node holds one stream per xDS server it uses)."""

    def __init__(self) -> None:
        self._nodes: dict[str, NodeState] = {}
        self._streams = 0
        # Set, then replaced, at each ACK or NACK: what `wait` sleeps on between looks.
        self._answer = asyncio.Event()

    def connect(self, node: base_pb2.Node) -> NodeState:
        """A new stream of `node`: it replaces what an earlier stream of the same node id held."""
        self._streams += 1
        state = NodeState(node=node, connected_at=time.time(), stream_id=self._streams)
        self._nodes[node.id] = state
        return state

    def disconnect(self, state: NodeState) -> None:
        """The stream ended; forget the node unless a newer stream of it took over."""
        current = self._nodes.get(state.node.id)
        if current is state:
            del self._nodes[state.node.id]

    def answered(self) -> None:
        """A node ACKed or NACKed a response (its TypeState says which): wake every `wait`."""
        self._answer.set()
        self._answer = asyncio.Event()

    async def wait(self, done: Callable[[], bool]) -> None:
        """Return once `done()` holds, looked at now and after each ACK or NACK (e.g. "node n ACKed
        version v"); the caller bounds the wait."""
        while not done():
            await self._answer.wait()

    def all(self) -> list[NodeState]:
        """Every connected node, by node id."""
        return [self._nodes[node_id] for node_id in sorted(self._nodes)]

    def __len__(self) -> int:
        return len(self._nodes)
