"""What every permit service shares: a health endpoint, registration with a probe, a Worker, fault injection."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from hms.mgmt.v1 import registry_pb2
from hms_mgmt import Client, HealthStatus, Instance, TaskContext, TaskFailure, Worker, duration

logger = logging.getLogger(__name__)

FAILURE_RATE_ENV = "HMS_FAILURE_RATE"
PROBE_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 0.5
SHUTDOWN_GRACE_S = 1.0
READY_TIMEOUT_S = 10.0  # to register and subscribe, once started
DEFAULT_SERVER = "127.0.0.1:50051"

Handler = Callable[[TaskContext], Awaitable[Mapping[str, Any]]]


def failure_rate_from_env(environ: Mapping[str, str]) -> float:
    """The transient failure rate asked for in `HMS_FAILURE_RATE` (0 when unset); raises ValueError if not in [0, 1)."""
    text = environ.get(FAILURE_RATE_ENV, "").strip()
    rate = float(text) if text else 0.0
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{FAILURE_RATE_ENV} must be in [0, 1), got {text!r}")
    return rate


@dataclass(slots=True)
class Faults:
    """Fails a share of task attempts with a retryable TRANSIENT error, to show retries.

    `first_attempts` fails every first attempt instead: each task is retried exactly once, which a
    test can count on (a random share may retry nothing, or exhaust a step's attempts).
    """

    rate: float = 0.0
    rng: random.Random = field(default_factory=random.Random)
    first_attempts: bool = False

    def check(self, task: TaskContext) -> None:
        """Raise a retryable TaskFailure for `rate` of the attempts (or every first one)."""
        if (self.first_attempts and task.attempt == 1) or (self.rate and self.rng.random() < self.rate):
            logger.info("injecting a transient failure into %s attempt %d", task.task_type, task.attempt)
            raise TaskFailure("TRANSIENT", f"injected failure in {task.task_type} (attempt {task.attempt})")


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """How a service presents itself to the registry, and the handlers it runs."""

    name: str
    version: str
    tags: Sequence[str]
    handlers: Mapping[str, Handler]


@dataclass(frozen=True, slots=True)
class RunningService:
    """A service instance that is serving: its health address and its worker."""

    name: str
    address: str
    worker: Worker

    @property
    def instance_id(self) -> str:
        """The registry instance id."""
        return self.worker.instance_id


def _with_faults(handler: Handler, faults: Faults) -> Handler:
    async def run(task: TaskContext) -> Mapping[str, Any]:
        faults.check(task)
        return await handler(task)

    return run


@contextlib.asynccontextmanager
async def serving(
    client: Client, spec: ServiceSpec, faults: Faults | None = None
) -> AsyncIterator[RunningService]:
    """Serve grpc.health.v1 on 127.0.0.1:0, register with a probe and run a Worker until the block exits."""
    server = grpc.aio.server()
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        for name in ("", spec.name):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        address = f"127.0.0.1:{port}"
        probe = registry_pb2.HealthProbe(
            service_name=spec.name,
            interval=duration(PROBE_INTERVAL_S),
            timeout=duration(PROBE_TIMEOUT_S),
            threshold=1,
        )
        worker = Worker(
            client,
            spec.name,
            address=address,
            version=spec.version,
            tags=spec.tags,
            probe=probe,
            drain_timeout_s=SHUTDOWN_GRACE_S,
        )
        for task_type, handler in spec.handlers.items():
            worker.task(task_type)(_with_faults(handler, faults or Faults()))
        run = asyncio.create_task(worker.run(), name=f"worker {worker.instance_id}")
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                await worker.ready.wait()
            logger.info("%s %s serving health on %s", spec.name, worker.instance_id, address)
            yield RunningService(spec.name, address, worker)
        finally:
            worker.stop()
            await run
    finally:
        await health_servicer.enter_graceful_shutdown()
        await server.stop(SHUTDOWN_GRACE_S)


async def wait_passing(client: Client, service: str, instance_id: str, timeout_s: float = 10.0) -> None:
    """Wait until the registry lists `instance_id` of `service` as PASSING (its first probe answered)."""

    def passing(instances: Sequence[Instance]) -> bool:
        return any(i.instance_id == instance_id and i.health == HealthStatus.PASSING for i in instances)

    async with asyncio.timeout(timeout_s), client.registry.watch(service) as changes:
        if passing(changes.snapshot):
            return
        async for response in changes:
            if passing([change.instance for change in response.changes]):
                return


def _arguments(name: str, argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m services.permit.{name}",
        description="Serve one permit service against a running control plane until SIGINT or SIGTERM.",
    )
    parser.add_argument(
        "--server",
        default=os.environ.get("MGMT_SERVER", DEFAULT_SERVER),
        help="control plane HOST:PORT, or several comma-separated (MGMT_SERVER; default %(default)s)",
    )
    parser.add_argument("--token", default=os.environ.get("MGMT_TOKEN"), help="bearer token (MGMT_TOKEN)")
    parser.add_argument("--tls-ca", type=Path, help="CA certificate (PEM) of a control plane with TLS")
    parser.add_argument(
        "--failure-rate",
        type=float,
        help=f"share of attempts failing with a retryable TRANSIENT error ({FAILURE_RATE_ENV}; default 0)",
    )
    parser.add_argument("--log-level", default="info", help="debug, info, warning (default %(default)s)")
    return parser.parse_args(argv)


async def serve_until_stopped(spec: ServiceSpec, arguments: argparse.Namespace) -> None:
    """Serve `spec` against `--server` until SIGINT or SIGTERM; then drain, deregister and return."""
    rate = arguments.failure_rate
    faults = Faults(failure_rate_from_env(os.environ) if rate is None else rate)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with (
        Client(arguments.server, token=arguments.token, tls_ca=arguments.tls_ca) as client,
        serving(client, spec, faults) as service,
    ):
        # One line on stdout once registered and subscribed, for people and for scripts that wait.
        print(f"{spec.name} {service.instance_id} ready on {client.address}", flush=True)
        await stop.wait()
        logger.info("%s %s stopping", spec.name, service.instance_id)


def main(name: str, make_spec: Callable[[], ServiceSpec], argv: Sequence[str] | None = None) -> int:
    """`python -m services.permit.<name> --server HOST:PORT`: one service started by hand."""
    arguments = _arguments(name, argv)
    logging.basicConfig(
        level=arguments.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(serve_until_stopped(make_spec(), arguments))
    except TimeoutError:
        print(
            f"{name}: not registered within {READY_TIMEOUT_S:.0f} s: cannot reach the control plane at "
            f"{arguments.server}? (is `mgmt serve` running? set --server or MGMT_SERVER)",
            file=sys.stderr,
        )
        return 1
    except ValueError as exc:  # a bad failure rate
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    return 0
