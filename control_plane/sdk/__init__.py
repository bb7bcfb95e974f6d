"""Python SDK of the control plane: `Client` for callers (Worker arrives with the workflow engine)."""

from control_plane.sdk._bus import BusClient, BusSubscription
from control_plane.sdk._client import Client, RegistryClient, WatchStream
from control_plane.sdk._errors import from_rpc_error
from control_plane.sdk._wire import duration
from control_plane.sdk._workflow import TaskContext, TaskFailure, Worker, WorkflowClient

__all__ = [
    "BusClient",
    "BusSubscription",
    "Client",
    "RegistryClient",
    "TaskContext",
    "TaskFailure",
    "WatchStream",
    "Worker",
    "WorkflowClient",
    "duration",
    "from_rpc_error",
]
