"""Workflow servicer: translates the wire API to `core.workflow.Workflows`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from control_plane.core.limits import DEFAULT_PAGE, MAX_PAGE
from control_plane.core.paging import decode, encode, page
from control_plane.core.signal import wait_any
from control_plane.core.workflow.workflows import ReportOutcome, Workflows
from control_plane.errors import InvalidArgument, Unavailable
from control_plane.models import ProcessRecord, ProcessSearch
from control_plane.observability.tracing import current_traceparent
from control_plane.servicers import bus_convert
from control_plane.servicers import workflow_convert as convert
from control_plane.servicers.convert import enum_value, time_seconds, timestamp
from control_plane.servicers.errors import translate_errors
from control_plane.servicers.reports import EventBatch, ReportStream, Tally
from control_plane.servicers.scopes import OPEN, Scopes
from control_plane.servicers.streams import until_stopped
from control_plane.servicers.structs import to_dict
from hms.mgmt.v1 import workflow_pb2 as pb
from hms.mgmt.v1 import workflow_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]
_HISTORY_FRAME = 500


class WorkflowServicer(workflow_pb2_grpc.WorkflowServicer):
    """Thin: each method converts, calls the engine and converts back."""

    def __init__(self, workflows: Workflows, stopping: asyncio.Event, scopes: Scopes = OPEN) -> None:
        self._workflows = workflows
        self._stopping = stopping
        self._scopes = scopes

    async def _process(self, record: ProcessRecord, *, details: bool = True) -> pb.Process:
        # latest_definition: on a replica, the definition may have been registered on another a moment ago.
        _, parsed = await self._workflows.latest_definition(record.definition, record.version)
        return convert.process(record, parsed, details=details)

    # -- definitions ----------------------------------------------------------------------------

    @translate_errors
    async def RegisterDefinition(
        self, request: pb.RegisterDefinitionRequest, context: Context
    ) -> pb.RegisterDefinitionResponse:
        stored, created = await self._workflows.register_definition(
            request.source, validate_only=request.validate_only
        )
        parsed = None if request.validate_only else self._workflows.definition(stored.name, stored.version)[1]
        response = pb.RegisterDefinitionResponse(name=stored.name, version=stored.version, created=created)
        # A large spec takes 100 ms and more to become a Struct: on a worker thread, in short steps, and
        # right into the response (built apart and copied in, it held the GIL for ~37 ms at once).
        await asyncio.to_thread(convert.fill_definition, response.definition, stored, parsed, full=True)
        return response

    @translate_errors
    async def GetDefinition(
        self, request: pb.GetDefinitionRequest, context: Context
    ) -> pb.GetDefinitionResponse:
        stored, parsed = await self._workflows.latest_definition(request.name, request.version)
        response = pb.GetDefinitionResponse()
        await asyncio.to_thread(convert.fill_definition, response.definition, stored, parsed, full=True)
        return response

    @translate_errors
    async def ListDefinitions(
        self, request: pb.ListDefinitionsRequest, context: Context
    ) -> pb.ListDefinitionsResponse:
        versions = self._workflows.definitions(request.name, request.all_versions)
        chunk, token = page(
            versions,
            lambda v: f"{v.name}\x00{1_000_000 - v.version:07d}",
            request.page_size,
            request.page_token,
            "definitions",
        )
        return pb.ListDefinitionsResponse(
            definitions=[convert.definition(v, None, full=False) for v in chunk], next_page_token=token
        )

    # -- processes ------------------------------------------------------------------------------

    @translate_errors
    async def StartProcess(
        self, request: pb.StartProcessRequest, context: Context
    ) -> pb.StartProcessResponse:
        record, existed = await self._workflows.start(
            request.definition,
            request.version,
            to_dict(request.input),
            request.business_key,
            # The RPC's server span (tracing on): the caller's trace, or a new root.
            current_traceparent(),
        )
        return pb.StartProcessResponse(process=await self._process(record), already_existed=existed)

    @translate_errors
    async def GetProcess(self, request: pb.GetProcessRequest, context: Context) -> pb.GetProcessResponse:
        return pb.GetProcessResponse(
            process=await self._process(await self._workflows.process(request.process_id))
        )

    @translate_errors
    async def ListProcesses(
        self, request: pb.ListProcessesRequest, context: Context
    ) -> pb.ListProcessesResponse:
        size = request.page_size or 50
        if size > MAX_PAGE:
            raise InvalidArgument.field("page_size", f"must be between 1 and {MAX_PAGE}")
        records = await self._workflows.list_processes(
            definition=request.definition,
            version=request.definition_version,
            states=[
                enum_value(f"states[{n}]", convert.STATE_FROM_WIRE, s) for n, s in enumerate(request.states)
            ],
            business_key=request.business_key,
            before=_position(request.page_token) if request.page_token else None,
            limit=size + 1,
            parent_id=request.parent_process_id,
            business_key_prefix=request.business_key_prefix,
            started=(
                _time_or_none(request, "started_after"),
                _time_or_none(request, "started_before"),
            ),
            search=ProcessSearch(
                ended=(_time_or_none(request, "ended_after"), _time_or_none(request, "ended_before")),
                current_step=request.current_step_id,
                has_incident=_incident_filter(request.incidents),
                attributes=dict(request.search_attributes),
            ),
        )
        token = ""
        if len(records) > size:
            records = records[:size]
            last = records[-1]
            token = encode("processes", last.created_at, last.id)
        return pb.ListProcessesResponse(
            processes=[await self._process(r, details=request.include_details) for r in records],
            next_page_token=token,
        )

    # -- incidents and operator actions ---------------------------------------------------------

    @translate_errors
    async def ListIncidents(
        self, request: pb.ListIncidentsRequest, context: Context
    ) -> pb.ListIncidentsResponse:
        size = request.page_size or 50
        if size > MAX_PAGE:
            raise InvalidArgument.field("page_size", f"must be between 1 and {MAX_PAGE}")
        before = None
        if request.page_token:
            opened, process_id, sequence = decode(request.page_token, "incidents", float, str, int)
            before = (float(opened), str(process_id), int(sequence))
        items = await self._workflows.incidents(
            definition=request.definition,
            process_id=request.process_id,
            resolved=request.include_resolved,
            before=before,
            limit=size + 1,
        )
        token = ""
        if len(items) > size:
            items = items[:size]
            last = items[-1]
            token = encode("incidents", last.opened_at, last.process_id, last.sequence)
        return pb.ListIncidentsResponse(incidents=[convert.incident(i) for i in items], next_page_token=token)

    @translate_errors
    async def RetryStep(self, request: pb.RetryStepRequest, context: Context) -> pb.RetryStepResponse:
        record = await self._workflows.retry_step(
            request.process_id,
            request.step_id,
            to_dict(request.input) if request.HasField("input") else None,
            actor=self._scopes.actor(context),
            reason=request.reason,
        )
        return pb.RetryStepResponse(process=await self._process(record))

    @translate_errors
    async def SkipStep(self, request: pb.SkipStepRequest, context: Context) -> pb.SkipStepResponse:
        record = await self._workflows.skip_step(
            request.process_id,
            request.step_id,
            to_dict(request.output),
            actor=self._scopes.actor(context),
            reason=request.reason,
        )
        return pb.SkipStepResponse(process=await self._process(record))

    @translate_errors
    async def FailProcess(self, request: pb.FailProcessRequest, context: Context) -> pb.FailProcessResponse:
        record = await self._workflows.fail_process(
            request.process_id, actor=self._scopes.actor(context), reason=request.reason
        )
        return pb.FailProcessResponse(process=await self._process(record))

    @translate_errors
    async def RetryProcess(
        self, request: pb.RetryProcessRequest, context: Context
    ) -> pb.RetryProcessResponse:
        record = await self._workflows.retry_process(
            request.process_id, actor=self._scopes.actor(context), reason=request.reason
        )
        return pb.RetryProcessResponse(process=await self._process(record))

    @translate_errors
    async def WatchProcess(
        self, request: pb.WatchProcessRequest, context: Context
    ) -> AsyncIterator[pb.WatchProcessResponse]:
        async with self._workflows.watch(request.process_id) as changed:
            record = await self._workflows.process(request.process_id)
            seen = request.after_sequence
            first = True
            while True:
                waiter = changed.waiter()
                events = await self._workflows.history(request.process_id, seen, _HISTORY_FRAME)
                if events or first:
                    frame = pb.WatchProcessResponse(events=[convert.event(e) for e in events])
                    if first:
                        frame.process.CopyFrom(await self._process(record))
                        first = False
                    seen = events[-1].sequence if events else seen
                    yield frame
                if len(events) == _HISTORY_FRAME:
                    continue
                record = await self._workflows.process(request.process_id)
                if record.state.final and seen >= record.last_event_sequence:
                    yield pb.WatchProcessResponse(process=await self._process(record))
                    return
                if self._stopping.is_set():
                    # Not OK: to the watcher the process has not ended; it should follow it elsewhere.
                    raise Unavailable("the control plane is shutting down; watch again on another replica")
                stopping = asyncio.ensure_future(self._stopping.wait())
                try:
                    await wait_any([waiter, stopping], None)
                finally:
                    stopping.cancel()

    @translate_errors
    async def SignalProcess(
        self, request: pb.SignalProcessRequest, context: Context
    ) -> pb.SignalProcessResponse:
        buffered, duplicate = await self._workflows.signal(
            request.process_id, request.name, to_dict(request.payload), request.signal_id
        )
        return pb.SignalProcessResponse(buffered=buffered, duplicate=duplicate)

    @translate_errors
    async def CancelProcess(
        self, request: pb.CancelProcessRequest, context: Context
    ) -> pb.CancelProcessResponse:
        record = await self._workflows.cancel(request.process_id, request.reason, request.compensate)
        return pb.CancelProcessResponse(process=await self._process(record))

    @translate_errors
    async def GetHistory(self, request: pb.GetHistoryRequest, context: Context) -> pb.GetHistoryResponse:
        size = request.page_size or DEFAULT_PAGE
        if size > MAX_PAGE:
            raise InvalidArgument.field("page_size", f"must be between 1 and {MAX_PAGE}")
        after = request.after_sequence
        if request.page_token:
            (after,) = decode(request.page_token, "history", int)
        events = await self._workflows.history(request.process_id, after, size + 1)
        token = ""
        if len(events) > size:  # one more read than asked: no token when no more events exist yet
            events = events[:size]
            token = encode("history", events[-1].sequence)
        return pb.GetHistoryResponse(events=[convert.event(e) for e in events], next_page_token=token)

    # -- workers --------------------------------------------------------------------------------

    @translate_errors
    async def SubscribeTasks(
        self, request: pb.SubscribeTasksRequest, context: Context
    ) -> AsyncIterator[pb.SubscribeTasksResponse]:
        self._scopes.check(context, request.service, "take tasks")
        async with self._workflows.worker(
            request.service, request.instance_id, list(request.task_types), request.max_in_flight
        ) as session:
            yield pb.SubscribeTasksResponse(ready=True)
            wire = self._workflows.wire_token
            while True:
                tasks, cancellations = await session.next_frame()
                now = time.time()
                yield pb.SubscribeTasksResponse(
                    tasks=[
                        convert.task(t, session.deadline_of(t, now), wire(t.token, session.service))
                        for t in tasks
                    ],
                    cancellations=[
                        convert.cancellation(wire(key, session.service), reason)
                        for key, reason in cancellations
                    ],
                )

    @translate_errors
    async def ReportTaskEventBatches(
        self, request_iterator: AsyncIterator[pb.ReportTaskEventBatchesRequest], context: Context
    ) -> AsyncIterator[pb.ReportTaskEventBatchesResponse]:
        async def batches() -> AsyncIterator[EventBatch]:
            async for request in until_stopped(request_iterator, self._stopping):
                yield EventBatch(request.batch_id, request.events)

        stream = ReportStream(lambda event: self._report(event, context))
        async for answer in stream.answers(batches()):
            yield pb.ReportTaskEventBatchesResponse(
                batch_id=answer.batch_id, results=answer.results, violations=answer.wire_violations()
            )

    @translate_errors
    async def ReportTaskEvents(
        self, request_iterator: AsyncIterator[pb.ReportTaskEventsRequest], context: Context
    ) -> pb.ReportTaskEventsResponse:
        # Each frame is a batch whose id is the position of its first event in the stream; the one
        # answer sums theirs. A failure that is not an event's own ends the stream without an answer.
        async def batches() -> AsyncIterator[EventBatch]:
            position = 0
            async for request in until_stopped(request_iterator, self._stopping):
                yield EventBatch(position, request.events)
                position += len(request.events)

        tally = Tally()
        async for answer in ReportStream(lambda event: self._report(event, context)).answers(batches()):
            tally.add(answer, answer.batch_id)
        return tally.response()

    def _check_token(self, context: Context, token: str) -> None:
        """A task may be reported on only by a token allowed to serve the service it was handed to."""
        self._scopes.check(context, self._workflows.token_service(token), "report on tasks")

    async def _report(self, event: pb.TaskEvent, context: Context) -> ReportOutcome:
        self._check_token(context, event.task_token)
        kind = event.WhichOneof("event")
        match kind:
            case "completed":
                outbox = [bus_convert.outgoing(m) for m in event.completed.outbox]
                return await self._workflows.complete(
                    event.task_token, to_dict(event.completed.output), outbox
                )
            case "failed":
                failed = event.failed
                report = await self._workflows.fail(
                    event.task_token,
                    failed.error_code,
                    failed.message,
                    non_retryable=failed.non_retryable,
                    details=to_dict(failed.details) if failed.HasField("details") else None,
                )
                return report.outcome
            case "heartbeat":
                details = to_dict(event.heartbeat.details) if event.heartbeat.HasField("details") else None
                return await self._workflows.heartbeat(event.task_token, details)
            case "started":
                return await self._workflows.started(event.task_token)
            case _:
                raise InvalidArgument.field(
                    "event", "exactly one of started, heartbeat, completed, failed is required"
                )

    @translate_errors
    async def CompleteTask(
        self, request: pb.CompleteTaskRequest, context: Context
    ) -> pb.CompleteTaskResponse:
        self._check_token(context, request.task_token)
        outcome = await self._workflows.complete(
            request.task_token,
            to_dict(request.output),
            [bus_convert.outgoing(m) for m in request.outbox],
        )
        return pb.CompleteTaskResponse(
            result=convert.result(outcome), message=convert.result_message(outcome)
        )

    @translate_errors
    async def FailTask(self, request: pb.FailTaskRequest, context: Context) -> pb.FailTaskResponse:
        self._check_token(context, request.task_token)
        report = await self._workflows.fail(
            request.task_token,
            request.error_code,
            request.message,
            non_retryable=request.non_retryable,
            details=to_dict(request.details) if request.HasField("details") else None,
        )
        response = pb.FailTaskResponse(
            result=convert.result(report.outcome),
            message=convert.result_message(report.outcome),
            will_retry=report.retry_at is not None,
        )
        if report.retry_at is not None:
            response.retry_at.CopyFrom(timestamp(report.retry_at))
        return response


_INCIDENT_FILTER: dict[int, bool | None] = {
    pb.INCIDENT_FILTER_UNSPECIFIED: None,
    pb.INCIDENT_FILTER_WITH: True,
    pb.INCIDENT_FILTER_WITHOUT: False,
}


def _incident_filter(value: int) -> bool | None:
    if value not in _INCIDENT_FILTER:
        raise InvalidArgument.field("incidents", f"{value} is not a known value (expected 0, 1 or 2)")
    return _INCIDENT_FILTER[value]


def _time_or_none(request: pb.ListProcessesRequest, name: str) -> float | None:
    if not request.HasField(name):  # type: ignore[arg-type]
        return None
    return time_seconds(getattr(request, name), name)


def _position(token: str) -> tuple[float, str]:
    """Where a ListProcesses token resumes: after the process created at that time with that id."""
    created, process_id = decode(token, "processes", float, str)
    return float(created), process_id
