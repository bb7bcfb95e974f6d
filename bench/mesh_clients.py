"""100 xDS clients in one child process: `python -m bench.mesh_clients ADDRESS SERVICE --clients N --last-port P`.

Each client is one ADS stream (a node of its own) that asks for the service's Listener, Route,
Cluster and ClusterLoadAssignment and ACKs every response, as gRPC's clients do. For every
assignment received it records (the marker endpoint's port in it, time.monotonic()): the bench moves
a marker instance to port 20000 + n for its n-th change. Once every client has seen port P it prints
{"received": [[[port, t], ...] per client]} and exits. Logs `clients ready` once every client holds
an assignment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import AsyncIterator

import grpc
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from control_plane.servicers.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE

logger = logging.getLogger("bench.mesh_clients")
# The marker instance's host: its port tells which change an assignment carries.
MARKER_HOST = "127.0.0.2"


async def client(
    address: str, service: str, index: int, last_port: int, stamps: list[list[float]], ready: asyncio.Event
) -> None:
    """One ADS stream: subscribe to the four types, ACK each response, stamp each assignment."""
    queue: asyncio.Queue[discovery_pb2.DiscoveryRequest] = asyncio.Queue()
    for type_url in (LISTENER, ROUTE, CLUSTER, ENDPOINT):
        request = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=[service])
        request.node.id = f"bench-{index}"
        queue.put_nowait(request)

    async def requests() -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        while True:
            yield await queue.get()

    async with grpc.aio.insecure_channel(address) as channel:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        async for response in stub.StreamAggregatedResources(requests()):
            arrived = time.monotonic()
            ack = discovery_pb2.DiscoveryRequest(
                type_url=response.type_url,
                resource_names=[service],
                version_info=response.version_info,
                response_nonce=response.nonce,
            )
            queue.put_nowait(ack)
            if response.type_url != ENDPOINT:
                continue
            for resource in response.resources:
                assignment = endpoint_pb2.ClusterLoadAssignment()
                resource.Unpack(assignment)
                ports = [
                    e.endpoint.address.socket_address.port_value
                    for locality in assignment.endpoints
                    for e in locality.lb_endpoints
                    if e.endpoint.address.socket_address.address == MARKER_HOST
                ]
                stamps.append([float(max(ports, default=0)), arrived])
            ready.set()
            if stamps and stamps[-1][0] >= last_port:
                return


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("address")
    parser.add_argument("service")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--last-port", type=int, required=True)
    args = parser.parse_args()
    stamps: list[list[list[float]]] = [[] for _ in range(args.clients)]
    readiness = [asyncio.Event() for _ in range(args.clients)]
    tasks = [
        asyncio.create_task(client(args.address, args.service, n, args.last_port, stamps[n], readiness[n]))
        for n in range(args.clients)
    ]
    await asyncio.gather(*(event.wait() for event in readiness))
    logger.info("clients ready")
    await asyncio.gather(*tasks)
    sys.stdout.write(json.dumps({"received": stamps}) + "\n")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    asyncio.run(main())
