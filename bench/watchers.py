"""Watchers child of the registry group: Watch streams on one service, stamping each change on arrival.

`python -m bench.watchers ADDRESS SERVICE --watchers 10 --last-seq 320` opens the watches (one
connection each), logs `watchers ready` to stderr once every one has its `created` frame, then
records `(seq, time.monotonic())` for every change whose instance carries `metadata["seq"]`. Once
every watcher has seen `--last-seq` it writes `{"received": [[[seq, t], ...], ...]}` (one list per
watcher) to stdout and exits 0. On Linux `time.monotonic()` is CLOCK_MONOTONIC, one clock for every
process on the machine, so these stamps compare with the sender's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time

import grpc

from hms.mgmt.v1 import registry_pb2, registry_pb2_grpc

logger = logging.getLogger("bench.watchers")

Stamp = tuple[int, float]


WatchCall = grpc.aio.UnaryStreamCall[registry_pb2.WatchRequest, registry_pb2.WatchResponse]


async def open_watch(channel: grpc.aio.Channel, service: str) -> WatchCall:
    """Start a Watch of `service` and return it once its `created` frame has arrived."""
    call = registry_pb2_grpc.RegistryStub(channel).Watch(registry_pb2.WatchRequest(service=service))
    first = await call.read()
    # read() is typed `object` (EOF or a message), hence isinstance rather than `is grpc.aio.EOF`.
    if not isinstance(first, registry_pb2.WatchResponse) or not first.created:
        raise RuntimeError(f"expected the created frame first, got {first!r}")
    return call


async def record(call: WatchCall, last_seq: int) -> list[Stamp]:
    """Arrival stamps of every sequenced change, until the change carrying `last_seq`."""
    stamps: list[Stamp] = []
    while True:
        response = await call.read()
        arrived = time.monotonic()
        if not isinstance(response, registry_pb2.WatchResponse):
            raise RuntimeError(
                f"watch ended before seq {last_seq}: {await call.code()} {await call.details()}"
            )
        for change in response.changes:
            seq = change.instance.metadata.get("seq")
            if seq is not None:
                stamps.append((int(seq), arrived))
                if int(seq) >= last_seq:
                    call.cancel()
                    return stamps


async def watch_all(address: str, service: str, watchers: int, last_seq: int) -> list[list[Stamp]]:
    """Run `watchers` watches, each on its own connection, until each has seen `last_seq`."""
    # A local subchannel pool per channel: otherwise gRPC shares one connection among them.
    channels = [
        grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(watchers)
    ]
    try:
        calls = await asyncio.gather(*(open_watch(channel, service) for channel in channels))
        logger.info("watchers ready: %d watching %s", watchers, service)
        return list(await asyncio.gather(*(record(call, last_seq) for call in calls)))
    finally:
        for channel in channels:
            await channel.close()


def main() -> None:
    """Entry point of the child process."""
    parser = argparse.ArgumentParser(prog="python -m bench.watchers")
    parser.add_argument("address")
    parser.add_argument("service")
    parser.add_argument("--watchers", type=int, default=10)
    parser.add_argument("--last-seq", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    received = asyncio.run(watch_all(args.address, args.service, args.watchers, args.last_seq))
    json.dump({"received": received}, sys.stdout)


if __name__ == "__main__":
    main()
