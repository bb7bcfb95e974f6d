"""Python SDK of the control plane: `Client` for callers, `Worker` for services that run tasks."""

from hms_mgmt._bus import BusClient, BusSubscription
from hms_mgmt._client import Client, RegistryClient, WatchStream
from hms_mgmt._errors import Unavailable, from_rpc_error
from hms_mgmt._wire import duration
from hms_mgmt._worker import TaskContext, TaskFailure, Worker
from hms_mgmt._workflow import WorkflowClient

__all__ = [
    "BusClient",
    "BusSubscription",
    "Client",
    "RegistryClient",
    "TaskContext",
    "TaskFailure",
    "Unavailable",
    "WatchStream",
    "Worker",
    "WorkflowClient",
    "duration",
    "from_rpc_error",
]
