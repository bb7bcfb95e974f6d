"""Typed answers: plain Python values (dataclasses, enums, dicts, datetimes) made from the wire messages.

Each keeps the message it was made from in `proto`, for those who want the generated type (to print
it as protobuf JSON, to pass it on). The enums are IntEnums with the wire numbers, so a state still
compares equal to the generated constant (`process.state == workflow_pb2.PROCESS_STATE_COMPLETED`)
and reads as a name (`process.state.name == "COMPLETED"`). Field names are the .proto's; a number an
enum does not know yet (a newer control plane) stays a plain int. Timestamps become aware UTC datetimes
(None when unset), Structs dicts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from hms.mgmt.v1 import bus_pb2, common_pb2, registry_pb2
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
    INCIDENT = pb.STEP_STATE_INCIDENT


class StepKind(enum.IntEnum):
    """What a step does (`hms.mgmt.v1.StepKind` without its prefix)."""

    UNSPECIFIED = pb.STEP_KIND_UNSPECIFIED
    TASK = pb.STEP_KIND_TASK
    PARALLEL = pb.STEP_KIND_PARALLEL
    CHOICE = pb.STEP_KIND_CHOICE
    WAIT_SIGNAL = pb.STEP_KIND_WAIT_SIGNAL
    SLEEP = pb.STEP_KIND_SLEEP
    CALL = pb.STEP_KIND_CALL
    MAP = pb.STEP_KIND_MAP


class HealthStatus(enum.IntEnum):
    """An instance's health (`hms.mgmt.v1.HealthStatus` without its prefix)."""

    UNSPECIFIED = common_pb2.HEALTH_STATUS_UNSPECIFIED
    PASSING = common_pb2.HEALTH_STATUS_PASSING
    CRITICAL = common_pb2.HEALTH_STATUS_CRITICAL


class HistoryEventType(enum.IntEnum):
    """What a history event records (`hms.mgmt.v1.HistoryEventType` without its prefix)."""

    UNSPECIFIED = pb.HISTORY_EVENT_TYPE_UNSPECIFIED
    PROCESS_STARTED = pb.HISTORY_EVENT_TYPE_PROCESS_STARTED
    PROCESS_RUNNING = pb.HISTORY_EVENT_TYPE_PROCESS_RUNNING
    PROCESS_COMPLETED = pb.HISTORY_EVENT_TYPE_PROCESS_COMPLETED
    PROCESS_FAILED = pb.HISTORY_EVENT_TYPE_PROCESS_FAILED
    PROCESS_COMPENSATING = pb.HISTORY_EVENT_TYPE_PROCESS_COMPENSATING
    PROCESS_COMPENSATED = pb.HISTORY_EVENT_TYPE_PROCESS_COMPENSATED
    PROCESS_CANCEL_REQUESTED = pb.HISTORY_EVENT_TYPE_PROCESS_CANCEL_REQUESTED
    PROCESS_CANCELLED = pb.HISTORY_EVENT_TYPE_PROCESS_CANCELLED
    STEP_STARTED = pb.HISTORY_EVENT_TYPE_STEP_STARTED
    STEP_COMPLETED = pb.HISTORY_EVENT_TYPE_STEP_COMPLETED
    STEP_FAILED = pb.HISTORY_EVENT_TYPE_STEP_FAILED
    STEP_SKIPPED = pb.HISTORY_EVENT_TYPE_STEP_SKIPPED
    TASK_SCHEDULED = pb.HISTORY_EVENT_TYPE_TASK_SCHEDULED
    TASK_STARTED = pb.HISTORY_EVENT_TYPE_TASK_STARTED
    TASK_FAILED = pb.HISTORY_EVENT_TYPE_TASK_FAILED
    TASK_TIMED_OUT = pb.HISTORY_EVENT_TYPE_TASK_TIMED_OUT
    SIGNAL_RECEIVED = pb.HISTORY_EVENT_TYPE_SIGNAL_RECEIVED
    COMPENSATION_STARTED = pb.HISTORY_EVENT_TYPE_COMPENSATION_STARTED
    COMPENSATION_COMPLETED = pb.HISTORY_EVENT_TYPE_COMPENSATION_COMPLETED
    COMPENSATION_FAILED = pb.HISTORY_EVENT_TYPE_COMPENSATION_FAILED
    STEP_INCIDENT = pb.HISTORY_EVENT_TYPE_STEP_INCIDENT
    STEP_RETRY_REQUESTED = pb.HISTORY_EVENT_TYPE_STEP_RETRY_REQUESTED
    STEP_SKIP_REQUESTED = pb.HISTORY_EVENT_TYPE_STEP_SKIP_REQUESTED
    PROCESS_FAIL_REQUESTED = pb.HISTORY_EVENT_TYPE_PROCESS_FAIL_REQUESTED
    PROCESS_RETRY_REQUESTED = pb.HISTORY_EVENT_TYPE_PROCESS_RETRY_REQUESTED


class ChangeType(enum.IntEnum):
    """What happened to an instance (`hms.mgmt.v1.ChangeType` without its prefix)."""

    UNSPECIFIED = registry_pb2.CHANGE_TYPE_UNSPECIFIED
    UP = registry_pb2.CHANGE_TYPE_UP
    UPDATED = registry_pb2.CHANGE_TYPE_UPDATED
    HEALTH = registry_pb2.CHANGE_TYPE_HEALTH
    DOWN = registry_pb2.CHANGE_TYPE_DOWN


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
    child_process_id: str  # a call step's child process
    items_total: int  # a map step's items: all, started, completed, failed
    items_started: int
    items_completed: int
    items_failed: int
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
            message.child_process_id,
            message.items_total,
            message.items_started,
            message.items_completed,
            message.items_failed,
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
    parent_process_id: str  # the process whose call step started this one
    parent_step_id: str
    child_process_ids: list[str]  # processes its call steps started
    search_attributes: dict[str, str]  # values of its definition's declared search attributes
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
            message.parent_process_id,
            message.parent_step_id,
            list(message.child_process_ids),
            dict(message.search_attributes),
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


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One committed transition of a process, in sequence order.

    `details` is the event's data as a dict: times in it are Unix seconds and durations seconds, as the
    .proto documents, because they are kept as recorded rather than guessed into datetimes.
    """

    sequence: int
    process_id: str
    time: datetime | None
    type: HistoryEventType
    step_id: str  # empty for process-level events
    attempt: int  # task attempt (1-based), 0 when none
    process_state: ProcessState  # the process's state after this event
    details: dict[str, Any]
    proto: pb.HistoryEvent = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: pb.HistoryEvent) -> HistoryEvent:
        return cls(
            message.sequence,
            message.process_id,
            _time(message.time),
            _enum(HistoryEventType, message.type),
            message.step_id,
            message.attempt,
            _enum(ProcessState, message.process_state),
            plain(message.details),
            message,
        )


@dataclass(frozen=True, slots=True)
class WatchFrame:
    """One frame of a process watch: history events, and the process on the first and last frames."""

    process: Process | None  # None on the frames in between
    events: list[HistoryEvent]
    proto: pb.WatchProcessResponse = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: pb.WatchProcessResponse) -> WatchFrame:
        return cls(
            Process.from_proto(message.process) if message.HasField("process") else None,
            [HistoryEvent.from_proto(e) for e in message.events],
            message,
        )


@dataclass(frozen=True, slots=True)
class Published:
    """Where a published message was stored (or already was: `duplicate`)."""

    sequence: int  # in the whole log
    subject_sequence: int  # among its subject's messages
    duplicate: bool  # its message_id was seen within the deduplication window: stored once
    published_at: datetime | None
    proto: bus_pb2.PublishResponse = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: bus_pb2.PublishResponse) -> Published:
        return cls(
            message.sequence,
            message.subject_sequence,
            message.duplicate,
            _time(message.published_at),
            message,
        )


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A stored Bus message; the same field names as `hms.mgmt.v1.BusMessage`."""

    subject: str
    data: bytes
    headers: dict[str, str]
    content_type: str
    message_id: str
    sequence: int
    subject_sequence: int
    published_at: datetime | None
    proto: bus_pb2.BusMessage = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: bus_pb2.BusMessage) -> StoredMessage:
        return cls(
            message.subject,
            message.data,
            dict(message.headers),
            message.content_type,
            message.message_id,
            message.sequence,
            message.subject_sequence,
            _time(message.published_at),
            message,
        )


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivery of a message to a consumer; settle it with `client.bus.ack(delivery.delivery_id)`."""

    message: StoredMessage
    delivery_id: str
    attempt: int  # 1 on the first delivery
    consumer: str
    proto: bus_pb2.Delivery = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: bus_pb2.Delivery) -> Delivery:
        return cls(
            StoredMessage.from_proto(message.message),
            message.delivery_id,
            message.attempt,
            message.consumer,
            message,
        )


@dataclass(frozen=True, slots=True)
class Lease:
    """The lease that keeps an instance registered while it is renewed."""

    lease_id: str
    ttl: timedelta
    expires_at: datetime | None
    proto: registry_pb2.Lease = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: registry_pb2.Lease) -> Lease:
        return cls(message.lease_id, message.ttl.ToTimedelta(), _time(message.expires_at), message)


@dataclass(frozen=True, slots=True)
class Registration:
    """The answer to register: the instance as stored, its lease, the registry revision of the change."""

    instance: Instance
    lease: Lease
    revision: int
    proto: registry_pb2.RegisterResponse = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: registry_pb2.RegisterResponse) -> Registration:
        return cls(
            Instance.from_proto(message.instance), Lease.from_proto(message.lease), message.revision, message
        )


@dataclass(frozen=True, slots=True)
class RegistryChange:
    """One change of the registry seen by a watch."""

    revision: int
    type: ChangeType
    instance: Instance  # as it is after the change (as it was, for DOWN)
    reason: str
    time: datetime | None
    proto: registry_pb2.RegistryChange = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: registry_pb2.RegistryChange) -> RegistryChange:
        return cls(
            message.revision,
            _enum(ChangeType, message.type),
            Instance.from_proto(message.instance),
            message.reason,
            _time(message.time),
            message,
        )


@dataclass(frozen=True, slots=True)
class RegistryChanges:
    """One frame of a registry watch after the first: changes up to `revision`."""

    revision: int
    changes: list[RegistryChange]
    proto: registry_pb2.WatchResponse = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: registry_pb2.WatchResponse) -> RegistryChanges:
        return cls(message.revision, [RegistryChange.from_proto(c) for c in message.changes], message)


@dataclass(frozen=True, slots=True)
class ServiceSummary:
    """A registered service with its instance counts (`registry.list_services`)."""

    name: str
    instances: int
    passing: int
    versions: list[str]
    proto: registry_pb2.ServiceSummary = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: registry_pb2.ServiceSummary) -> ServiceSummary:
        return cls(message.name, message.instances, message.passing, list(message.versions), message)


@dataclass(frozen=True, slots=True)
class Incident:
    """A step that exhausted its retries and waits for an operator (resolved once retried or skipped)."""

    process_id: str
    definition: str
    step_id: str
    sequence: int  # the history event that opened it
    error: Failure
    opened_at: datetime | None
    resolved_at: datetime | None  # None while open
    resolution: str
    proto: pb.Incident = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: pb.Incident) -> Incident:
        return cls(
            message.process_id,
            message.definition,
            message.step_id,
            message.sequence,
            Failure.from_proto(message.error),
            _time(message.opened_at),
            _time(message.resolved_at),
            message.resolution,
            message,
        )


@dataclass(frozen=True, slots=True)
class Definition:
    """A stored definition version; `source` is empty in listings."""

    name: str
    version: int
    description: str
    source: str  # as applied (YAML or JSON)
    spec: dict[str, Any]  # the parsed, normalised definition
    digest: str
    created_at: datetime | None
    proto: pb.Definition = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: pb.Definition) -> Definition:
        return cls(
            message.name,
            message.version,
            message.description,
            message.source,
            plain(message.spec),
            message.digest,
            _time(message.created_at),
            message,
        )


@dataclass(frozen=True, slots=True)
class Applied:
    """The answer to applying a definition: its name, the version it is, whether that version is new."""

    name: str
    version: int
    created: bool  # False: the same content was already that version (or, validate_only, would be)
    definition: Definition
    proto: pb.RegisterDefinitionResponse = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: pb.RegisterDefinitionResponse) -> Applied:
        return cls(
            message.name, message.version, message.created, Definition.from_proto(message.definition), message
        )
