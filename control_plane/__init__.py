"""hms-mgmt: a gRPC control plane with a service registry, an event bus and durable workflows."""

__version__ = "0.1.0"
