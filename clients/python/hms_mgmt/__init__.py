"""Python SDK of the control plane: `Client` for callers, `Worker` for services that run tasks.

The distribution `hms-mgmt-client` (clients/python) needs only grpcio, protobuf and grpcio-status;
it also carries the generated `hms.mgmt.v1` code, which the server uses too.
"""

from hms_mgmt._bus import BusClient, BusSubscription
from hms_mgmt._client import Client, RegistryClient, WatchStream
from hms_mgmt._errors import Unavailable, from_rpc_error
from hms_mgmt._schedule import ScheduleClient
from hms_mgmt._wire import duration
from hms_mgmt._worker import TaskContext, TaskFailure, Worker
from hms_mgmt._workflow import WorkflowClient
from hms_mgmt.types import (
    Applied,
    ChangeType,
    Definition,
    Delivery,
    Failure,
    HealthStatus,
    HistoryEvent,
    HistoryEventType,
    Incident,
    Instance,
    Lease,
    Process,
    ProcessState,
    Published,
    Registration,
    RegistryChange,
    RegistryChanges,
    ServiceSummary,
    Step,
    StepKind,
    StepState,
    StoredMessage,
    WatchFrame,
)

__all__ = [
    "Applied",
    "BusClient",
    "BusSubscription",
    "ChangeType",
    "Client",
    "Definition",
    "Delivery",
    "Failure",
    "HealthStatus",
    "HistoryEvent",
    "HistoryEventType",
    "Incident",
    "Instance",
    "Lease",
    "Process",
    "ProcessState",
    "Published",
    "Registration",
    "RegistryChange",
    "RegistryChanges",
    "RegistryClient",
    "ScheduleClient",
    "ServiceSummary",
    "Step",
    "StepKind",
    "StepState",
    "StoredMessage",
    "TaskContext",
    "TaskFailure",
    "Unavailable",
    "WatchFrame",
    "WatchStream",
    "Worker",
    "WorkflowClient",
    "duration",
    "from_rpc_error",
]
