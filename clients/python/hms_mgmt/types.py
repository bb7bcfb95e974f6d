"""Typed answers: plain Python values (dataclasses, enums, dicts, datetimes) made from the wire messages.

Each keeps the message it was made from in `proto`, for those who want the generated type (to print
it as protobuf JSON, to pass it on). The enums are IntEnums with the wire numbers, so a state still
compares equal to the generated constant (`process.state == workflow_pb2.PROCESS_STATE_COMPLETED`)
and reads as a name (`process.state.name == "COMPLETED"`). Field names are the .proto's.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from hms.mgmt.v1 import common_pb2, registry_pb2
from hms.mgmt.v1 import workflow_pb2 as pb


def plain(message: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as a dict."""
    return json_format.MessageToDict(message)


def _time(stamp: timestamp_pb2.Timestamp) -> datetime | None:
    """An aware UTC datetime, or None for an unset Timestamp."""
    if not stamp.seconds and not stamp.nanos:
        return None
    return stamp.ToDatetime(tzinfo=UTC)


class ProcessState(enum.IntEnum):
    """Where a process is (`hms.mgmt.v1.ProcessState` without its prefix)."""

    UNSPECIFIED = pb.PROCESS_STATE_UNSPECIFIED
    STARTED = pb.PROCESS_STATE_STARTED
    RUNNING = pb.PROCESS_STATE_RUNNING
    COMPLETED = pb.PROCESS_STATE_COMPLETED
    FAILED = pb.PROCESS_STATE_FAILED
    COMPENSATING = pb.PROCESS_STATE_COMPENSATING
    COMPENSATED = pb.PROCESS_STATE_COMPENSATED
    CANCELLED = pb.PROCESS_STATE_CANCELLED

    @property
    def final(self) -> bool:
        """Whether the process has ended (nothing more will happen to it)."""
        return self in (
            ProcessState.COMPLETED,
            ProcessState.FAILED,
            ProcessState.COMPENSATED,
            ProcessState.CANCELLED,
        )


class StepState(enum.IntEnum):
    """Where a step is (`hms.mgmt.v1.StepState` without its prefix)."""

    UNSPECIFIED = pb.STEP_STATE_UNSPECIFIED
    PENDING = pb.STEP_STATE_PENDING
    SCHEDULED = pb.STEP_STATE_SCHEDULED
    RUNNING = pb.STEP_STATE_RUNNING
    RETRYING = pb.STEP_STATE_RETRYING
    WAITING = pb.STEP_STATE_WAITING
    COMPLETED = pb.STEP_STATE_COMPLETED
    FAILED = pb.STEP_STATE_FAILED
    SKIPPED = pb.STEP_STATE_SKIPPED
    CANCELLED = pb.STEP_STATE_CANCELLED
    COMPENSATING = pb.STEP_STATE_COMPENSATING
    COMPENSATED = pb.STEP_STATE_COMPENSATED
    COMPENSATION_FAILED = pb.STEP_STATE_COMPENSATION_FAILED


class StepKind(enum.IntEnum):
    """What a step does (`hms.mgmt.v1.StepKind` without its prefix)."""

    UNSPECIFIED = pb.STEP_KIND_UNSPECIFIED
    TASK = pb.STEP_KIND_TASK
    PARALLEL = pb.STEP_KIND_PARALLEL
    CHOICE = pb.STEP_KIND_CHOICE
    WAIT_SIGNAL = pb.STEP_KIND_WAIT_SIGNAL
    SLEEP = pb.STEP_KIND_SLEEP


class HealthStatus(enum.IntEnum):
    """An instance's health (`hms.mgmt.v1.HealthStatus` without its prefix)."""

    UNSPECIFIED = common_pb2.HEALTH_STATUS_UNSPECIFIED
    PASSING = common_pb2.HEALTH_STATUS_PASSING
    CRITICAL = common_pb2.HEALTH_STATUS_CRITICAL


def _enum(kind: type[enum.IntEnum], value: int) -> Any:
    """`value` as a member of `kind`; a number a newer control plane added stays a plain int."""
    try:
        return kind(value)
    except ValueError:
        return value


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a step or a process failed; all fields empty when it did not (as on the wire)."""

    code: str
    message: str
    details: dict[str, Any]
    step_id: str
    attempt: int
    time: datetime | None
    proto: pb.Failure = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: pb.Failure) -> Failure:
        return cls(
            message.code,
            message.message,
            plain(message.details),
            message.step_id,
            message.attempt,
            _time(message.time),
            message,
        )


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a process as it stands."""

    step_id: str
    kind: StepKind
    state: StepState
    attempts: int
    output: dict[str, Any]
    last_error: Failure  # empty (code "") when the step has not failed
    started_at: datetime | None
    ended_at: datetime | None
    timer_at: datetime | None
    parent_step_id: str
    worker_instance_id: str
    heartbeat_details: dict[str, Any]
    waiting_for: str
    proto: pb.StepStatus = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: pb.StepStatus) -> Step:
        return cls(
            message.step_id,
            _enum(StepKind, message.kind),
            _enum(StepState, message.state),
            message.attempts,
            plain(message.output),
            Failure.from_proto(message.last_error),
            _time(message.started_at),
            _time(message.ended_at),
            _time(message.timer_at),
            message.parent_step_id,
            message.worker_instance_id,
            plain(message.heartbeat_details),
            message.waiting_for,
            message,
        )


@dataclass(frozen=True, slots=True)
class Process:
    """A process: its state, input, output, steps and, when it failed, why."""

    id: str
    definition: str
    definition_version: int
    business_key: str
    state: ProcessState
    input: dict[str, Any]
    output: dict[str, Any]
    current_step_ids: list[str]
    steps: list[Step]
    error: Failure  # empty (code "") unless the process failed
    cancel_reason: str
    created_at: datetime | None
    updated_at: datetime | None
    ended_at: datetime | None
    last_event_sequence: int
    proto: pb.Process = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: pb.Process) -> Process:
        return cls(
            message.id,
            message.definition,
            message.definition_version,
            message.business_key,
            _enum(ProcessState, message.state),
            plain(message.input),
            plain(message.output),
            list(message.current_step_ids),
            [Step.from_proto(s) for s in message.steps],
            Failure.from_proto(message.error),
            message.cancel_reason,
            _time(message.created_at),
            _time(message.updated_at),
            _time(message.ended_at),
            message.last_event_sequence,
            message,
        )

    def step(self, step_id: str) -> Step:
        """The step named `step_id` (KeyError if the process has none)."""
        for step in self.steps:
            if step.step_id == step_id:
                return step
        raise KeyError(step_id)


@dataclass(frozen=True, slots=True)
class Instance:
    """A registered instance of a service."""

    service: str
    instance_id: str
    address: str
    version: str
    tags: list[str]
    metadata: dict[str, str]
    health: HealthStatus
    probe: registry_pb2.HealthProbe | None  # how the control plane checks it, if it does
    lease_id: str
    registered_at: datetime | None
    revision: int
    proto: registry_pb2.ServiceInstance = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: registry_pb2.ServiceInstance) -> Instance:
        return cls(
            message.service,
            message.instance_id,
            message.address,
            message.version,
            list(message.tags),
            dict(message.metadata),
            _enum(HealthStatus, message.health),
            message.probe if message.HasField("probe") else None,
            message.lease_id,
            _time(message.registered_at),
            message.revision,
            message,
        )
