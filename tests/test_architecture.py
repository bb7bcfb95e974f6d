"""Structural promises: every RPC of an implemented service is overridden by its servicer."""

from __future__ import annotations

import pytest

from control_plane.servicers.bus import BusServicer
from control_plane.servicers.registry import RegistryServicer
from control_plane.servicers.schedules import ScheduleServicer
from control_plane.servicers.workflow import WorkflowServicer
from hms.mgmt.v1 import (
    bus_pb2,
    bus_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    schedule_pb2,
    schedule_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)

IMPLEMENTED = [
    (
        registry_pb2.DESCRIPTOR.services_by_name["Registry"],
        RegistryServicer,
        registry_pb2_grpc.RegistryServicer,
    ),
    (bus_pb2.DESCRIPTOR.services_by_name["Bus"], BusServicer, bus_pb2_grpc.BusServicer),
    (
        workflow_pb2.DESCRIPTOR.services_by_name["Workflow"],
        WorkflowServicer,
        workflow_pb2_grpc.WorkflowServicer,
    ),
    (
        schedule_pb2.DESCRIPTOR.services_by_name["Schedule"],
        ScheduleServicer,
        schedule_pb2_grpc.ScheduleServicer,
    ),
]


@pytest.mark.parametrize(("service", "servicer", "base"), IMPLEMENTED, ids=lambda v: getattr(v, "name", ""))
def test_every_rpc_is_implemented(service: object, servicer: type, base: type) -> None:
    methods = [m.name for m in service.methods]  # type: ignore[attr-defined]
    missing = [m for m in methods if getattr(servicer, m) is getattr(base, m)]

    assert methods
    assert not missing, f"{servicer.__name__} would answer UNIMPLEMENTED for {missing}"
