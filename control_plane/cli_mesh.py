"""`mgmt mesh ...`: route policies, xDS client status (CSDS) and gRPC bootstrap files (prints; part of the CLI)."""

from __future__ import annotations

import argparse
import ipaddress
import json
from pathlib import Path
from typing import Any

from envoy.admin.v3 import config_dump_shared_pb2 as dump
from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc

from control_plane.cli_workflow import as_json
from control_plane.core.workflow.durations import format_duration, parse_duration
from hms.mgmt.v1 import mesh_pb2 as pb
from hms.mgmt.v1 import mesh_pb2_grpc
from hms_mgmt import Client

# The SDK's conversion, not the servicers': importing those pulls the cores and the stores (psycopg) into
# every `mgmt` command, about 0.4 s of CPU each.
from hms_mgmt._wire import duration

_BALANCING = {
    "round_robin": pb.LOAD_BALANCING_ROUND_ROBIN,
    "least_request": pb.LOAD_BALANCING_LEAST_REQUEST,
    "ring_hash": pb.LOAD_BALANCING_RING_HASH,
}
_SHORT_TYPE = {
    "type.googleapis.com/envoy.config.listener.v3.Listener": "LDS",
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration": "RDS",
    "type.googleapis.com/envoy.config.cluster.v3.Cluster": "CDS",
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment": "EDS",
}


def add_mesh_verbs(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser],
) -> list[tuple[argparse.ArgumentParser, bool]]:
    """Add `mesh` and its actions; returns (action parser, whether it reads: takes `-o json`)."""
    mesh = verbs.add_parser(
        "mesh", help="service mesh: route policies, xDS client status, bootstrap"
    ).add_subparsers(dest="action", required=True)
    route = mesh.add_parser("route", help="route policies: set, get, ls, rm").add_subparsers(
        dest="route_action", required=True
    )
    set_ = route.add_parser("set", help="set (replace) the route policy of a service")
    set_.add_argument("service")
    set_.add_argument(
        "--split",
        action="append",
        default=[],
        metavar="RANGE=WEIGHT",
        help="a version-weighted split, e.g. '>=1,<2=90' and '>=2=10' (repeat)",
    )
    set_.add_argument("--timeout", default="", help="deadline per call, e.g. 2s")
    set_.add_argument(
        "--retry-on",
        default="",
        help="comma-separated codes to retry: unavailable,cancelled,deadline-exceeded,...",
    )
    set_.add_argument("--retries", type=int, default=0, help="retries after the first attempt (1..4)")
    set_.add_argument("--backoff", default="", help="first backoff (default 25ms)")
    set_.add_argument("--max-backoff", default="", help="longest backoff (default 10 times --backoff)")
    set_.add_argument("--max-requests", type=int, default=0, help="most concurrent requests per client")
    set_.add_argument("--lb", choices=sorted(_BALANCING), default="round_robin", help="load balancing")
    get = route.add_parser("get", help="the route policy of a service")
    get.add_argument("service")
    ls = route.add_parser("ls", help="every route policy")
    rm = route.add_parser("rm", help="remove the route policy of a service")
    rm.add_argument("service")

    status = mesh.add_parser("status", help="connected xDS clients and what they ACKed or NACKed (CSDS)")
    status.add_argument("--node-id", default="", help="only this node")

    bootstrap = mesh.add_parser("bootstrap", help="print a gRPC xDS bootstrap file for a client")
    bootstrap.add_argument("--node-id", required=True, help="the client's node id (shown by `mesh status`)")
    bootstrap.add_argument("--zone", default="", help="the client's locality zone")
    bootstrap.add_argument(
        "--token-file",
        default="",
        help="a file holding the bearer token (a JWT), sent as call credentials (gRFC A97)",
    )
    return [(set_, False), (get, True), (ls, True), (rm, False), (status, True), (bootstrap, False)]


def _split(text: str) -> pb.VersionSplit:
    version_range, sep, weight = text.rpartition("=")
    if not sep or not version_range or not weight.isdigit():
        raise ValueError(f"--split expects RANGE=WEIGHT, e.g. '>=2=10', got {text!r}")
    return pb.VersionSplit(version_range=version_range, weight=int(weight))


def route_from_args(args: argparse.Namespace) -> pb.RoutePolicy:
    """The policy `mesh route set` asks for."""
    route = pb.RoutePolicy(
        service=args.service,
        splits=[_split(s) for s in args.split],
        max_concurrent_requests=args.max_requests,
        load_balancing=_BALANCING[args.lb],
    )
    if args.timeout:
        route.timeout.CopyFrom(duration(parse_duration(args.timeout)))
    if args.retry_on or args.retries:
        route.retry.retry_on.extend(c.strip() for c in args.retry_on.split(",") if c.strip())
        route.retry.num_retries = args.retries
        if args.backoff:
            route.retry.base_interval.CopyFrom(duration(parse_duration(args.backoff)))
        if args.max_backoff:
            route.retry.max_interval.CopyFrom(duration(parse_duration(args.max_backoff)))
    return route


def _route_line(route: pb.RoutePolicy) -> str:
    parts = []
    if route.splits:
        parts.append("split " + " ".join(f"{s.version_range}={s.weight}" for s in route.splits))
    if route.HasField("timeout"):
        parts.append(f"timeout {format_duration(route.timeout.ToTimedelta().total_seconds())}")
    if route.HasField("retry"):
        parts.append(f"retry {','.join(route.retry.retry_on)} x{route.retry.num_retries}")
    if route.max_concurrent_requests:
        parts.append(f"max-requests {route.max_concurrent_requests}")
    parts.append(pb.LoadBalancing.Name(route.load_balancing).removeprefix("LOAD_BALANCING_").lower())
    return f"{route.service:32} {route.revision:>6}  {'; '.join(parts)}"


def status_rows(response: csds_pb2.ClientStatusResponse) -> list[tuple[str, str, str, str, str, str]]:
    """(node, type, resource, version, status, error) per resource each node asked for."""
    rows = []
    for config in response.config:
        for item in config.generic_xds_configs:
            rows.append(
                (
                    config.node.id,
                    _SHORT_TYPE.get(item.type_url, item.type_url),
                    item.name,
                    item.version_info or "-",
                    dump.ClientResourceStatus.Name(item.client_status),
                    item.error_state.details if item.HasField("error_state") else "",
                )
            )
    return rows


def _xds_target(servers: list[str]) -> list[str]:
    """One target per server; IP literals are joined into one `ipv4:`/`ipv6:` target (see docs/mesh.md)."""
    hosts = []
    for server in servers:
        host = server.rpartition(":")[0].strip("[]")
        try:
            hosts.append(ipaddress.ip_address(host).version)
        except ValueError:
            return servers
    if len(servers) > 1 and len(set(hosts)) == 1:
        # One channel that moves to the next replica when its server goes away, keeping every update.
        return [f"ipv{hosts[0]}:" + ",".join(servers)]
    return servers


def bootstrap(args: argparse.Namespace) -> dict[str, Any]:
    """A gRPC xDS bootstrap (gRFC A27) for the control plane(s) in --server."""
    servers = [s.strip() for s in args.server.split(",") if s.strip()]
    if args.tls_ca:
        config = {"ca_certificate_file": str(Path(args.tls_ca).resolve())}
        if args.tls_cert and args.tls_key:
            config["certificate_file"] = str(Path(args.tls_cert).resolve())
            config["private_key_file"] = str(Path(args.tls_key).resolve())
        channel_creds: list[dict[str, Any]] = [{"type": "tls", "config": config}]
    else:
        channel_creds = [{"type": "insecure"}]
    xds_server: dict[str, Any] = {"channel_creds": channel_creds, "server_features": ["xds_v3"]}
    if args.token_file:
        xds_server["call_creds"] = [
            {"type": "jwt_token_file", "config": {"jwt_token_file": str(Path(args.token_file).resolve())}}
        ]
    # grpc-js-xds refuses a bootstrap whose node has no locality, even an empty one.
    node: dict[str, Any] = {"id": args.node_id, "locality": {"zone": args.zone} if args.zone else {}}
    return {
        "xds_servers": [{"server_uri": target, **xds_server} for target in _xds_target(servers)],
        "node": node,
    }


async def mesh_command(args: argparse.Namespace, client: Client) -> None:
    """`mgmt mesh route ... | status` (bootstrap needs no connection: see `main`)."""
    json_out = getattr(args, "output", "text") == "json"
    metadata = (("authorization", f"Bearer {args.token}"),) if args.token else ()
    if args.action == "status":
        csds: Any = csds_pb2_grpc.ClientStatusDiscoveryServiceStub(client.channel)
        request = csds_pb2.ClientStatusRequest(exclude_resource_contents=True)
        if args.node_id:
            request.node.id = args.node_id
        response = await csds.FetchClientStatus(request, metadata=metadata, timeout=10)
        if json_out:
            print(as_json(response))
            return
        rows = status_rows(response)
        print(f"{'NODE':24} {'TYPE':4} {'RESOURCE':32} {'VERSION':10} {'STATUS':10} ERROR")
        for node, kind, name, version, state, error in rows:
            print(f"{node:24} {kind:4} {name:32} {version:10} {state:10} {error}")
        if not rows:
            print("# no xDS client is connected to this control plane")
        return
    stub = mesh_pb2_grpc.MeshStub(client.channel)
    if args.route_action == "set":
        answer = await stub.SetRoute(pb.SetRouteRequest(route=route_from_args(args)), metadata=metadata)
        print(_route_line(answer.route))
    elif args.route_action == "get":
        got = await stub.GetRoute(pb.GetRouteRequest(service=args.service), metadata=metadata)
        print(as_json(got.route) if json_out else _route_line(got.route))
    elif args.route_action == "ls":
        listed = await stub.ListRoutes(pb.ListRoutesRequest(), metadata=metadata)
        if json_out:
            print(as_json(list(listed.routes)))
            return
        print(f"{'SERVICE':32} {'REV':>6}  POLICY")
        for route in listed.routes:
            print(_route_line(route))
    elif args.route_action == "rm":
        removed = await stub.DeleteRoute(pb.DeleteRouteRequest(service=args.service), metadata=metadata)
        print(f"removed the route of {args.service} at revision {removed.revision}")


def print_bootstrap(args: argparse.Namespace) -> None:
    """`mgmt mesh bootstrap`: the file's JSON on stdout."""
    print(json.dumps(bootstrap(args), indent=2))
