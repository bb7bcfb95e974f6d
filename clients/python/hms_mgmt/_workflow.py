"""The SDK's Workflow side: `client.workflow.start / status / watch / ...` (the Worker is in `_worker`)."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import grpc
from google.protobuf import struct_pb2

from hms.mgmt.v1 import bus_pb2
from hms.mgmt.v1 import workflow_pb2 as pb
from hms_mgmt._endpoints import Endpoint, Endpoints, ResumableCall, read
from hms_mgmt.types import Applied, Definition, HistoryEvent, Incident, Process, WatchFrame

# The control plane checks a large definition for up to 60 s in a child process before it answers.
APPLY_TIMEOUT_S = 120.0

WatchProcessCall = grpc.aio.UnaryStreamCall[pb.WatchProcessRequest, pb.WatchProcessResponse]

FINAL_STATES = frozenset(
    {
        pb.PROCESS_STATE_COMPLETED,
        pb.PROCESS_STATE_FAILED,
        pb.PROCESS_STATE_COMPENSATED,
        pb.PROCESS_STATE_CANCELLED,
    }
)


def struct(value: Mapping[str, Any] | None) -> struct_pb2.Struct:
    """A dict as a Struct."""
    message = struct_pb2.Struct()
    if value:
        message.update(value)
    return message


def _ended_early() -> grpc.aio.AioRpcError:
    # A stream that ends cleanly before the process did (older control planes did so when they
    # stopped): to the watcher that is a replica gone, never a process to return.
    return grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, None, None, "watch ended before the process")


class WorkflowClient:
    """Workflow calls, answering the values of `hms_mgmt.types` (`Process`, `HistoryEvent`, `WatchFrame`,
    `Definition`, `Applied`, `Incident`), each with its message in `.proto`; the answers of `signal`,
    `complete` and `fail`, and the task streams, are the wire messages of `hms.mgmt.v1`.
    """

    def __init__(self, endpoints: Endpoints, metadata: Sequence[tuple[str, str]]) -> None:
        self._endpoints = endpoints
        self._metadata = tuple(metadata)

    async def apply(self, source: str, *, validate_only: bool = False) -> Applied:
        """Register a definition (YAML or JSON); a changed one becomes a new version."""
        request = pb.RegisterDefinitionRequest(source=source, validate_only=validate_only)
        # The same content is the same version, so registering it again is harmless.
        response = await self._endpoints.unary(
            lambda e: e.workflow.RegisterDefinition(
                request, metadata=self._metadata, timeout=APPLY_TIMEOUT_S
            ),
            retry=True,
        )
        return Applied.from_proto(response)

    async def definition(self, name: str, version: int = 0) -> Definition:
        """A stored definition version (the latest when `version` is 0), with its source and spec."""
        request = pb.GetDefinitionRequest(name=name, version=version)
        response = await self._endpoints.unary(
            lambda e: e.workflow.GetDefinition(request, metadata=self._metadata), retry=True
        )
        return Definition.from_proto(response.definition)

    async def definitions(self, name: str = "", *, all_versions: bool = False) -> builtins.list[Definition]:
        """Stored definitions (the latest version of each, or every version), without source, following pages."""
        found: builtins.list[Definition] = []
        token = ""
        while True:
            request = pb.ListDefinitionsRequest(
                name=name, all_versions=all_versions, page_size=1000, page_token=token
            )
            response = await self._definitions_page(request)
            found.extend(Definition.from_proto(d) for d in response.definitions)
            token = response.next_page_token
            if not token:
                return found

    async def _definitions_page(self, request: pb.ListDefinitionsRequest) -> pb.ListDefinitionsResponse:
        return await self._endpoints.unary(
            lambda e: e.workflow.ListDefinitions(request, metadata=self._metadata), retry=True
        )

    async def start(
        self,
        definition: str,
        payload: Mapping[str, Any] | None = None,
        *,
        business_key: str = "",
        version: int = 0,
    ) -> Process:
        """Start a process (or get the one already started with `business_key`).

        Retried on the next replica only with a `business_key`: without one each try would start a process.
        """
        request = pb.StartProcessRequest(
            definition=definition, version=version, input=struct(payload), business_key=business_key
        )
        response = await self._endpoints.unary(
            lambda e: e.workflow.StartProcess(request, metadata=self._metadata), retry=bool(business_key)
        )
        return Process.from_proto(response.process)

    async def status(self, process_id: str) -> Process:
        """A process with its steps."""
        request = pb.GetProcessRequest(process_id=process_id)
        response = await self._endpoints.unary(
            lambda e: e.workflow.GetProcess(request, metadata=self._metadata), retry=True
        )
        return Process.from_proto(response.process)

    async def list(
        self,
        *,
        definition: str = "",
        states: Sequence[pb.ProcessState.ValueType] = (),
        page_size: int = 50,
        parent_process_id: str = "",
        business_key_prefix: str = "",
        current_step_id: str = "",
        incidents: pb.IncidentFilter.ValueType = pb.INCIDENT_FILTER_UNSPECIFIED,
        search_attributes: Mapping[str, str] | None = None,
    ) -> builtins.list[Process]:
        """The newest processes matching the filters (one page); see ListProcessesRequest
        (`parent_process_id`: the processes its call steps started)."""
        request = pb.ListProcessesRequest(
            definition=definition,
            states=states,
            page_size=page_size,
            parent_process_id=parent_process_id,
            business_key_prefix=business_key_prefix,
            current_step_id=current_step_id,
            incidents=incidents,
            search_attributes=search_attributes or {},
        )
        response = await self._endpoints.unary(
            lambda e: e.workflow.ListProcesses(request, metadata=self._metadata), retry=True
        )
        return [Process.from_proto(p) for p in response.processes]

    async def incidents(
        self,
        *,
        definition: str = "",
        process_id: str = "",
        include_resolved: bool = False,
        page_size: int = 50,
    ) -> builtins.list[Incident]:
        """The newest incidents (one page): open ones, unless `include_resolved`."""
        request = pb.ListIncidentsRequest(
            definition=definition,
            process_id=process_id,
            include_resolved=include_resolved,
            page_size=page_size,
        )
        response = await self._endpoints.unary(
            lambda e: e.workflow.ListIncidents(request, metadata=self._metadata), retry=True
        )
        return [Incident.from_proto(i) for i in response.incidents]

    async def retry_step(
        self, process_id: str, step_id: str, reason: str, *, input: Mapping[str, Any] | None = None
    ) -> Process:
        """A fresh set of attempts for a step in INCIDENT (with `input` instead of its mapping, if given)."""
        request = pb.RetryStepRequest(process_id=process_id, step_id=step_id, reason=reason)
        if input is not None:
            request.input.CopyFrom(struct(input))
        response = await self._endpoints.unary(
            lambda e: e.workflow.RetryStep(request, metadata=self._metadata)
        )
        return Process.from_proto(response.process)

    async def skip_step(
        self, process_id: str, step_id: str, reason: str, *, output: Mapping[str, Any] | None = None
    ) -> Process:
        """A step in INCIDENT counts as completed with `output`."""
        request = pb.SkipStepRequest(
            process_id=process_id, step_id=step_id, reason=reason, output=struct(output)
        )
        response = await self._endpoints.unary(
            lambda e: e.workflow.SkipStep(request, metadata=self._metadata)
        )
        return Process.from_proto(response.process)

    async def fail_process(self, process_id: str, reason: str) -> Process:
        """Give up on a process's incidents: compensate, or fail."""
        request = pb.FailProcessRequest(process_id=process_id, reason=reason)
        response = await self._endpoints.unary(
            lambda e: e.workflow.FailProcess(request, metadata=self._metadata)
        )
        return Process.from_proto(response.process)

    async def retry_process(self, process_id: str, reason: str) -> Process:
        """Resume a FAILED process from its failed step(s)."""
        request = pb.RetryProcessRequest(process_id=process_id, reason=reason)
        response = await self._endpoints.unary(
            lambda e: e.workflow.RetryProcess(request, metadata=self._metadata)
        )
        return Process.from_proto(response.process)

    async def history(self, process_id: str) -> builtins.list[HistoryEvent]:
        """The whole history of a process."""
        events: builtins.list[HistoryEvent] = []
        token = ""
        while True:
            request = pb.GetHistoryRequest(process_id=process_id, page_size=1000, page_token=token)
            response = await self._history_page(request)
            events.extend(HistoryEvent.from_proto(e) for e in response.events)
            token = response.next_page_token
            if not token:
                return events

    async def _history_page(self, request: pb.GetHistoryRequest) -> pb.GetHistoryResponse:
        return await self._endpoints.unary(
            lambda e: e.workflow.GetHistory(request, metadata=self._metadata), retry=True
        )

    async def watch(self, process_id: str, after_sequence: int = 0) -> AsyncIterator[WatchFrame]:
        """History so far, then live events until the process ends (the last frame carries it).

        With several addresses, a watch whose replica goes away resumes on the next one after the last
        history event seen; its first frame there carries the process again.
        """
        seen = after_sequence
        ended = False

        def open_(endpoint: Endpoint) -> WatchProcessCall:
            request = pb.WatchProcessRequest(process_id=process_id, after_sequence=seen)
            return endpoint.workflow.WatchProcess(request, metadata=self._metadata)

        stream: ResumableCall[WatchProcessCall] = ResumableCall(self._endpoints, open_)
        try:
            while True:
                frame = await stream.step(read)
                if not isinstance(frame, pb.WatchProcessResponse):
                    if ended:
                        return
                    await stream.reopen(_ended_early())  # with one address: raises Unavailable
                    continue
                if frame.events:
                    seen = frame.events[-1].sequence
                ended = ended or (frame.HasField("process") and frame.process.state in FINAL_STATES)
                yield WatchFrame.from_proto(frame)
        finally:
            stream.cancel()

    async def wait(self, process_id: str) -> Process:
        """Wait until the process ends; returns it."""
        final: Process | None = None
        async for frame in self.watch(process_id):
            if frame.process is not None:
                final = frame.process
        if final is None or int(final.state) not in FINAL_STATES:
            return await self.status(process_id)
        return final

    async def signal(
        self, process_id: str, name: str, payload: Mapping[str, Any] | None = None, *, signal_id: str = ""
    ) -> pb.SignalProcessResponse:
        """Send a signal to a process (buffered if no step waits for it yet).

        Retried on the next replica only with a `signal_id`, which the control plane deduplicates.
        """
        request = pb.SignalProcessRequest(
            process_id=process_id, name=name, payload=struct(payload), signal_id=signal_id
        )
        return await self._endpoints.unary(
            lambda e: e.workflow.SignalProcess(request, metadata=self._metadata), retry=bool(signal_id)
        )

    async def cancel(self, process_id: str, reason: str = "", *, compensate: bool = False) -> Process:
        """Cancel a process, compensating its completed steps first when asked."""
        request = pb.CancelProcessRequest(process_id=process_id, reason=reason, compensate=compensate)
        response = await self._endpoints.unary(
            lambda e: e.workflow.CancelProcess(request, metadata=self._metadata)
        )
        return Process.from_proto(response.process)

    async def complete(
        self, token: str, output: Mapping[str, Any] | None = None, outbox: Sequence[bus_pb2.BusMessage] = ()
    ) -> pb.CompleteTaskResponse:
        """Report a task attempt completed (retried: a repeat answers ALREADY_REPORTED and changes nothing)."""
        request = pb.CompleteTaskRequest(task_token=token, output=struct(output), outbox=outbox)
        return await self._endpoints.unary(
            lambda e: e.workflow.CompleteTask(request, metadata=self._metadata), retry=True
        )

    async def fail(
        self, token: str, code: str, message: str = "", *, non_retryable: bool = False
    ) -> pb.FailTaskResponse:
        """Report a task attempt failed (retried: a repeat answers ALREADY_REPORTED and changes nothing)."""
        request = pb.FailTaskRequest(
            task_token=token, error_code=code, message=message, non_retryable=non_retryable
        )
        return await self._endpoints.unary(
            lambda e: e.workflow.FailTask(request, metadata=self._metadata), retry=True
        )

    def report_stream(
        self,
    ) -> grpc.aio.StreamUnaryCall[pb.ReportTaskEventsRequest, pb.ReportTaskEventsResponse]:
        """A ReportTaskEvents stream: write events; its one answer, with counts, comes when it is closed."""
        return self._endpoints.current.workflow.ReportTaskEvents(metadata=self._metadata)

    def report_batches(
        self,
    ) -> grpc.aio.StreamStreamCall[pb.ReportTaskEventBatchesRequest, pb.ReportTaskEventBatchesResponse]:
        """A ReportTaskEventBatches stream: write batches of events; each is answered (same batch_id) once
        applied. What the Worker uses.
        """
        return self._endpoints.current.workflow.ReportTaskEventBatches(metadata=self._metadata)

    def subscribe_tasks(
        self, service: str, instance_id: str, task_types: Sequence[str], max_in_flight: int
    ) -> grpc.aio.UnaryStreamCall[pb.SubscribeTasksRequest, pb.SubscribeTasksResponse]:
        """The raw task stream (the Worker wraps it)."""
        request = pb.SubscribeTasksRequest(
            service=service, instance_id=instance_id, task_types=task_types, max_in_flight=max_in_flight
        )
        return self._endpoints.current.workflow.SubscribeTasks(request, metadata=self._metadata)
