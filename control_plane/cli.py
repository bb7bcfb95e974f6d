"""The `mgmt` command: `serve`, `demo`, registry, bus and workflow verbs; with cli_workflow, the only printing layer."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import argcomplete
import grpc

from control_plane import __version__, cli_console
from control_plane.cli_mesh import add_mesh_verbs, mesh_command, print_bootstrap
from control_plane.cli_schedule import add_schedule_verbs, schedule_command
from control_plane.cli_workflow import add_workflow_verbs, as_json, workflow_command
from control_plane.core.workflow.durations import format_duration, parse_duration
from control_plane.errors import ControlPlaneError
from control_plane.limits import MIB
from control_plane.logs import configure as configure_logs
from control_plane.observability import tracing
from control_plane.settings import (
    DEFAULT_DATA_DIR,
    DEFAULT_HTTP_LISTEN,
    DEFAULT_LISTEN,
    BusSettings,
    Settings,
)
from hms.mgmt.v1 import bus_pb2, common_pb2, registry_pb2
from hms_mgmt import Client

logger = logging.getLogger("control_plane")

EXIT_USAGE = 2


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; each flag names its environment variable."""
    parser = argparse.ArgumentParser(prog="mgmt", description="hms-mgmt control plane")
    parser.add_argument("--version", action="version", version=f"mgmt {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging of mgmt (libraries stay at warning)"
    )
    verbs = parser.add_subparsers(dest="verb", required=True)

    serve = verbs.add_parser("serve", help="run a control plane")
    serve.add_argument(
        "--listen", default=_env("MGMT_LISTEN", DEFAULT_LISTEN), help="HOST:PORT (MGMT_LISTEN)"
    )
    serve.add_argument(
        "--http-listen",
        default=_env("MGMT_HTTP_LISTEN", DEFAULT_HTTP_LISTEN),
        help="HOST:PORT of /metrics, /healthz, /readyz; off for none (MGMT_HTTP_LISTEN)",
    )
    serve.add_argument(
        "--metrics",
        choices=["on", "off"],
        default=_env("MGMT_METRICS", "on"),
        help="Prometheus metrics of calls and cores (MGMT_METRICS)",
    )
    serve.add_argument(
        "--log-level",
        default=_env("MGMT_LOG_LEVEL", ""),
        help="info (default), debug, ...; LOGGER=LEVEL pairs too, e.g. debug,grpc=info (MGMT_LOG_LEVEL)",
    )
    serve.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=_env("MGMT_LOG_FORMAT", "text"),
        help="json: one JSON object per line with process, step and service fields (MGMT_LOG_FORMAT)",
    )
    serve.add_argument(
        "--data-dir",
        default=_env("MGMT_DATA_DIR", str(DEFAULT_DATA_DIR)),
        help="data directory (MGMT_DATA_DIR)",
    )
    serve.add_argument(
        "--store", default=_env("MGMT_STORE"), help="store URL, default SQLite in the data dir (MGMT_STORE)"
    )
    serve.add_argument(
        "--tls-cert", default=_env("MGMT_TLS_CERT"), help="server certificate PEM (MGMT_TLS_CERT)"
    )
    serve.add_argument(
        "--tls-key", default=_env("MGMT_TLS_KEY"), help="server private key PEM (MGMT_TLS_KEY)"
    )
    serve.add_argument(
        "--tls-client-ca",
        default=_env("MGMT_TLS_CLIENT_CA"),
        help="CA for client certificates: mutual TLS (MGMT_TLS_CLIENT_CA)",
    )
    serve.add_argument(
        "--tokens", default=_env("MGMT_TOKENS"), help="bearer tokens file (YAML) (MGMT_TOKENS)"
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        default=_env("MGMT_INSECURE", "") in ("1", "true", "yes"),
        help="allow a non-loopback address without TLS or tokens (MGMT_INSECURE)",
    )
    serve.add_argument(
        "--bus-tail-size",
        type=_positive_int,
        default=_env("MGMT_BUS_TAIL_SIZE", str(BusSettings().tail_size)),
        help="newest Bus messages kept in memory for live subscribers (MGMT_BUS_TAIL_SIZE)",
    )
    serve.add_argument(
        "--bus-tail-mib",
        type=_positive_int,
        default=_env("MGMT_BUS_TAIL_MIB", str(BusSettings().tail_bytes // MIB)),
        help="MiB of recent Bus messages kept in memory; older ones are read from the store "
        "(MGMT_BUS_TAIL_MIB, default %(default)s)",
    )

    serve.add_argument(
        "--workflow-retention",
        type=_duration,
        default=_env("MGMT_WORKFLOW_RETENTION", "30d"),
        help="delete ended processes and their history this long after they ended, e.g. 30d, 12h; "
        "0 keeps them forever (MGMT_WORKFLOW_RETENTION, default %(default)s)",
    )

    verbs.add_parser("demo", help="start a control plane, register two instances, watch one lapse")
    cli_console.add_parser(verbs, DEFAULT_LISTEN)

    registry = verbs.add_parser("registry", help="service registry").add_subparsers(
        dest="action", required=True
    )
    ls = registry.add_parser("ls", help="list services")
    lookup = registry.add_parser("lookup", help="healthy instances of a service")
    lookup.add_argument("service")
    lookup.add_argument("--tag", action="append", default=[], help="required tag (repeatable)")
    lookup.add_argument("--version-filter", default="", help="exact version or range such as '>=2.0,<3'")
    lookup.add_argument("--all", action="store_true", help="include critical instances")
    watch = registry.add_parser("watch", help="stream registry changes")
    watch.add_argument("service", nargs="?", default="")
    watch.add_argument("--after", type=int, default=None, help="resume after this revision (no snapshot)")
    for sub in (ls, lookup, watch):
        _client_flags(sub)
        _output_flag(sub)

    bus = verbs.add_parser("bus", help="event bus").add_subparsers(dest="action", required=True)
    pub = bus.add_parser("pub", help="publish one message")
    pub.add_argument("subject")
    pub.add_argument("data", help="payload (UTF-8 text)")
    pub.add_argument("--header", action="append", default=[], metavar="K=V", help="header (repeatable)")
    pub.add_argument("--content-type", default="", help="e.g. application/json")
    pub.add_argument("--id", default="", help="message id for deduplication")
    sub = bus.add_parser("sub", help="subscribe and print deliveries as they come")
    sub.add_argument("pattern", help="subject pattern with * and > wildcards")
    sub.add_argument("--durable", default="", help="durable consumer name")
    sub.add_argument("--queue", default="", help="queue group to share messages with")
    sub.add_argument(
        "--from",
        dest="start",
        default="new",
        help="new (default), all, a sequence number, or an ISO-8601 time",
    )
    sub.add_argument(
        "--ack", action="store_true", help="explicit acks: acknowledge each delivery once printed"
    )
    sub.add_argument("--count", type=int, default=0, help="stop after this many deliveries")
    subjects = bus.add_parser("subjects", help="stored subjects with counts")
    subjects.add_argument("pattern", nargs="?", default="")
    consumers = bus.add_parser(
        "consumers", help="consumers with their positions; `consumers rm NAME` deletes one"
    )
    consumers.add_argument("remove", nargs="?", choices=["rm"], help="delete the durable consumer NAME")
    consumers.add_argument("name", nargs="?", default="", help="consumer to delete (with rm)")
    consumers.add_argument("--all", action="store_true", help="include ephemeral consumers")
    retention = bus.add_parser("retention", help="retention policies: `retention ls`, `retention set PREFIX`")
    retention.add_argument("retention_action", choices=["ls", "set", "rm"])
    retention.add_argument(
        "prefix", nargs="?", default=None, help='subject prefix ("" is the default policy)'
    )
    retention.add_argument("--max-age", default="", help="e.g. 7d, 12h, 30m, 90s; 0 for no age limit")
    retention.add_argument(
        "--max-messages", type=int, default=0, help="newest messages kept per subject; 0 for no limit"
    )
    for verb in (pub, sub, subjects, consumers, retention):
        _client_flags(verb)
    for verb in (sub, subjects, consumers, retention):
        _output_flag(verb)

    for action, reads in [*add_workflow_verbs(verbs), *add_schedule_verbs(verbs), *add_mesh_verbs(verbs)]:
        _client_flags(action)
        if reads:
            _output_flag(action)
    return parser


def _output_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=["text", "json"],
        default="text",
        help="json: the answer as JSON (proto field names; one JSON line per event on streams)",
    )


def _client_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server", default=_env("MGMT_SERVER", DEFAULT_LISTEN), help="HOST:PORT (MGMT_SERVER)"
    )
    parser.add_argument("--tls-ca", default=_env("MGMT_TLS_CA"), help="CA to verify the server (MGMT_TLS_CA)")
    parser.add_argument("--tls-cert", default=_env("MGMT_TLS_CERT"), help="client certificate for mutual TLS")
    parser.add_argument("--tls-key", default=_env("MGMT_TLS_KEY"), help="client key for mutual TLS")
    parser.add_argument("--token", default=_env("MGMT_TOKEN"), help="bearer token (MGMT_TOKEN)")


def _duration(text: str) -> float:
    """A duration flag ("30d", "12h", "0"): argparse reports a bad one with the flag's name."""
    try:
        return parse_duration(text, allow_zero=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The serve settings from parsed flags."""
    return Settings(
        listen=args.listen,
        data_dir=Path(args.data_dir),
        store_url=args.store or None,
        tls_cert=_path(args.tls_cert),
        tls_key=_path(args.tls_key),
        tls_client_ca=_path(args.tls_client_ca),
        tokens_file=_path(args.tokens),
        insecure=args.insecure,
        http_listen=None if args.http_listen in ("", "off") else args.http_listen,
        metrics=args.metrics != "off",
        bus=BusSettings(tail_size=args.bus_tail_size, tail_bytes=args.bus_tail_mib * MIB),
        workflow_retention_s=args.workflow_retention,
    )


async def serve_until_signalled(settings: Settings) -> None:
    """Run a control plane until SIGINT or SIGTERM."""
    from control_plane.server import running

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with running(settings) as app:
        settle_collector()
        logger.info("mgmt listening on %s (store %s)", app.address, settings.resolved_store_url)
        if app.http_url:
            logger.info("mgmt http on %s (the console at /; /metrics, /healthz, /readyz)", app.http_url)
        await stop.wait()
        logger.info("stopping")
    logger.info("stopped")


# The GIL switch interval of a serving control plane. The store's writer thread hands every commit back
# to the event loop; with the default 5 ms that hand-off alone could add milliseconds to a publish under load.
SWITCH_INTERVAL_S = 0.0005

# Allocations between young collections (CPython's default is 700). A transition allocates thousands
# of short-lived objects, so the default runs several young collections per workflow step and, every
# hundred of those, a full one over the whole heap: together 8-13% of the control plane's CPU in a
# profile of 100 workflows in flight. Fewer, larger young collections free the same garbage.
_YOUNG_COLLECTION_ALLOCATIONS = 20_000


def settle_collector() -> None:
    """Once the control plane is up: set what start-up created aside for good, and collect less often.

    Modules, protobuf descriptors, gRPC's and the compiled definitions' objects live as long as the
    process; frozen (`gc.freeze`), full collections no longer walk them. Cycles among them are never
    collected then, which costs nothing: they were never going to be garbage.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(_YOUNG_COLLECTION_ALLOCATIONS, middle, old)


def _client(args: argparse.Namespace) -> Client:
    for address in args.server.split(","):
        host, sep, port = address.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"--server expects HOST:PORT (comma-separated for several), got {address!r}")
    return Client(
        args.server,
        token=args.token,
        tls_ca=_path(args.tls_ca),
        tls_cert=_path(args.tls_cert),
        tls_key=_path(args.tls_key),
    )


def _change_line(change: registry_pb2.RegistryChange) -> str:
    """One registry change, in the same columns as a snapshot line."""
    kind = registry_pb2.ChangeType.Name(change.type).removeprefix("CHANGE_TYPE_")
    reason = f" ({change.reason})" if change.reason else ""
    return f"{change.revision:>6} {kind:8} {_instance_line(change.instance)}{reason}"


def _instance_line(i: registry_pb2.ServiceInstance) -> str:
    health = common_pb2.HealthStatus.Name(i.health).removeprefix("HEALTH_STATUS_") if i.health else "-"
    return f"{i.service}/{i.instance_id} {i.address} {i.version or '-'} {health}"


async def registry_command(args: argparse.Namespace) -> None:
    """`mgmt registry ls | lookup | watch`."""
    json_out = args.output == "json"
    async with _client(args) as client:
        if args.action == "ls":
            services = await client.registry.list_services()
            if json_out:
                print(as_json([s.proto for s in services]))
                return
            print(f"{'SERVICE':32} {'INSTANCES':>9} {'PASSING':>7}  VERSIONS")
            for s in services:
                print(f"{s.name:32} {s.instances:>9} {s.passing:>7}  {','.join(s.versions)}")
        elif args.action == "lookup":
            instances = await client.registry.lookup(
                args.service, tags=args.tag, version=args.version_filter, include_unhealthy=args.all
            )
            if json_out:
                print(as_json([i.proto for i in instances]))
                return
            for i in instances:
                print(f"{i.instance_id:38} {i.address:24} {i.version:10} {','.join(i.tags)}")
        elif args.action == "watch":
            async with client.registry.watch(args.service, after_revision=args.after) as stream:
                if not json_out:
                    print(f"# watching from revision {stream.revision}", flush=True)
                for instance in stream.snapshot:
                    if json_out:
                        print(as_json(instance.proto), flush=True)
                    else:
                        print(
                            f"{stream.revision:>6} {'SNAPSHOT':8} {_instance_line(instance.proto)}",
                            flush=True,
                        )
                async for response in stream:
                    for change in response.changes:
                        print(as_json(change.proto) if json_out else _change_line(change.proto), flush=True)


def _start(text: str) -> dict[str, Any]:
    """`--from` as subscribe keyword arguments."""
    if text in ("", "new"):
        return {}
    if text == "all":
        return {"start": bus_pb2.START_POSITION_ALL}
    if text.isdigit():
        return {"start": bus_pb2.START_POSITION_FROM_SEQUENCE, "start_sequence": int(text)}
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--from expects new, all, a sequence or an ISO-8601 time, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return {"start": bus_pb2.START_POSITION_FROM_TIME, "start_time": moment}


async def bus_command(args: argparse.Namespace) -> None:
    """`mgmt bus pub | sub | subjects | consumers`."""
    async with _client(args) as client:
        if args.action == "pub":
            headers = dict(h.split("=", 1) for h in args.header if "=" in h)
            reply = await client.bus.publish(
                args.subject,
                args.data.encode(),
                headers=headers,
                content_type=args.content_type,
                message_id=args.id,
            )
            note = " (duplicate)" if reply.duplicate else ""
            print(f"published {args.subject} sequence {reply.sequence}{note}")
        elif args.action == "sub":
            await _subscribe(client, args)
        elif args.action == "subjects":
            found = await client.bus.subjects(args.pattern)
            if args.output == "json":
                print(as_json(found))
                return
            print(f"{'SUBJECT':40} {'MESSAGES':>9} {'BYTES':>10} {'FIRST':>8} {'LAST':>8}")
            for s in found:
                print(
                    f"{s.subject:40} {s.messages:>9} {s.bytes:>10} {s.first_sequence:>8} {s.last_sequence:>8}"
                )
        elif args.action == "consumers" and args.remove:
            if not args.name:
                raise ValueError("mgmt bus consumers rm: which consumer? give its NAME")
            await client.bus.delete_consumer(args.name)
            print(f"deleted consumer {args.name}")
        elif args.action == "retention":
            await _retention(client, args)
        elif args.action == "consumers":
            listed = await client.bus.consumers(include_ephemeral=args.all)
            if args.output == "json":
                print(as_json(listed))
                return
            print(
                f"{'CONSUMER':28} {'PATTERN':24} {'MODE':8} {'DELIVERED':>9} {'PENDING':>8} {'UNACKED':>8} {'SUBS':>4}"
            )
            for c in listed:
                mode = "explicit" if c.ack_mode == bus_pb2.ACK_MODE_EXPLICIT else "none"
                print(
                    f"{c.name:28} {c.pattern:24} {mode:8} {c.delivered_sequence:>9} {c.num_pending:>8} "
                    f"{c.num_ack_pending:>8} {c.active_subscribers:>4}"
                )


async def _retention(client: Client, args: argparse.Namespace) -> None:
    if args.retention_action == "ls":
        policies = await client.bus.retention()
        if args.output == "json":
            print(as_json(policies))
            return
        print(f"{'PREFIX':32} {'MAX AGE':>10} {'MAX MESSAGES':>13}")
        for p in policies:
            age = format_duration(p.max_age.ToTimedelta().total_seconds()) if p.HasField("max_age") else "-"
            print(f"{p.subject_prefix or '(default)':32} {age:>10} {p.max_messages or '-':>13}")
        return
    if args.prefix is None:
        raise ValueError(
            f'mgmt bus retention {args.retention_action}: give the subject PREFIX ("" for the default)'
        )
    if args.retention_action == "rm":
        policy = await client.bus.set_retention(args.prefix, remove=True)
    else:
        if not args.max_age and not args.max_messages:
            raise ValueError("mgmt bus retention set: give --max-age, --max-messages or both")
        policy = await client.bus.set_retention(
            args.prefix,
            max_age_s=parse_duration(args.max_age) if args.max_age else 0.0,
            max_messages=args.max_messages,
        )
    print(
        as_json(policy)
        if args.output == "json"
        else f"retention of {policy.subject_prefix or '(default)'} set"
    )


async def workflow_main(args: argparse.Namespace) -> int:
    """`mgmt workflow apply | start | status | watch | ls | signal | cancel | history | graph`."""
    async with _client(args) as client:
        return await workflow_command(args, client)


async def schedule_main(args: argparse.Namespace) -> int:
    """`mgmt schedule create | ls | show | pause | unpause | trigger | rm`."""
    async with _client(args) as client:
        return await schedule_command(args, client)


async def _subscribe(client: Client, args: argparse.Namespace) -> None:
    async with client.bus.subscribe(
        args.pattern,
        durable=args.durable,
        queue_group=args.queue,
        explicit_ack=args.ack,
        **_start(args.start),
    ) as subscription:
        ready = subscription.ready
        json_out = args.output == "json"
        if not json_out:
            print(f"# subscribed as {ready.consumer.name} from sequence {ready.start_sequence}", flush=True)
        seen = 0
        while not args.count or seen < args.count:
            frame = await subscription.next_frame()
            if frame.HasField("gap"):
                print(
                    as_json(frame.gap) if json_out else f"# gap: skipped {frame.gap.skipped} messages",
                    flush=True,
                )
            for delivery in frame.deliveries:
                if json_out:
                    print(as_json(delivery), flush=True)
                    seen += 1
                    continue
                m = delivery.message
                retry = f" attempt {delivery.attempt}" if delivery.attempt > 1 else ""
                print(f"[{m.sequence}] {m.subject}{retry}: {m.data.decode(errors='replace')}", flush=True)
                seen += 1
            if args.ack and frame.deliveries:
                await client.bus.ack(*(d.delivery_id for d in frame.deliveries))


async def _mesh(args: argparse.Namespace) -> None:
    async with _client(args) as client:
        await mesh_command(args, client)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and run one verb."""
    parser = build_parser()
    # Shell completion: `eval "$(register-python-argcomplete mgmt)"` (bash/zsh) makes the shell call
    # back here with _ARGCOMPLETE set; this answers and exits before anything else runs.
    argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    try:
        levels = getattr(args, "log_level", "") or ("debug" if args.verbose else "info")
        configure_logs(levels, getattr(args, "log_format", "text"))
    except ValueError as exc:
        print(f"mgmt: error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    try:
        if args.verb == "serve":
            sys.setswitchinterval(SWITCH_INTERVAL_S)
            settings = settings_from_args(args)
            # Off unless the OTEL_* variables ask for traces (docs/observability.md).
            if tracing.configure("mgmt"):
                logger.info("tracing on: spans exported as the OTEL_* variables say")
            try:
                asyncio.run(serve_until_signalled(settings))
            finally:
                tracing.shutdown()
        elif args.verb == "demo":
            from control_plane.demo import run_demo

            asyncio.run(run_demo(print))
        elif args.verb == "console":
            status = cli_console.run(args)
            if status:
                sys.exit(status)
        elif args.verb == "registry":
            asyncio.run(registry_command(args))
        elif args.verb == "bus":
            asyncio.run(bus_command(args))
        elif args.verb == "schedule":
            status = asyncio.run(schedule_main(args))
            if status:
                sys.exit(status)
        elif args.verb == "mesh":
            if args.action == "bootstrap":
                print_bootstrap(args)
            else:
                asyncio.run(_mesh(args))
        elif args.verb == "workflow":
            try:
                status = asyncio.run(workflow_main(args))
            except BrokenPipeError:
                # The reader left (`mgmt workflow start ... | head -1`): stop quietly, as Unix tools do.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                status = 1
            if status:
                sys.exit(status)
    except KeyboardInterrupt:
        sys.exit(130)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNAVAILABLE and getattr(args, "server", None):
            print(
                f"mgmt: error: cannot reach the control plane at {args.server}: is `mgmt serve` running? "
                f"set --server or MGMT_SERVER ({exc.details()})",
                file=sys.stderr,
            )
        else:
            print(f"mgmt: error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        sys.exit(1)
    except (ControlPlaneError, ValueError, OSError) as exc:
        print(f"mgmt: error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE if isinstance(exc, ValueError) else 1)
