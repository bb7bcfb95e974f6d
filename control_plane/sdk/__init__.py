"""Python SDK of the control plane: `Client` for callers, `Worker` for services that run tasks."""

from control_plane.sdk._bus import BusClient, BusSubscription
from control_plane.sdk._client import Client, RegistryClient, WatchStream
from control_plane.sdk._errors import Unavailable, from_rpc_error
from control_plane.sdk._schedule import ScheduleClient
from control_plane.sdk._wire import duration
from control_plane.sdk._worker import TaskContext, TaskFailure, Worker
from control_plane.sdk._workflow import WorkflowClient

__all__ = [
    "BusClient",
    "BusSubscription",
    "Client",
    "RegistryClient",
    "ScheduleClient",
    "TaskContext",
    "TaskFailure",
    "Unavailable",
    "WatchStream",
    "Worker",
    "WorkflowClient",
    "duration",
    "from_rpc_error",
]
