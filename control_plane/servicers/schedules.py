"""Schedule servicer: translates the wire API to `core.schedules.Schedules`."""

from __future__ import annotations

from typing import Any

import grpc

from control_plane.core.limits import MAX_PAGE
from control_plane.core.paging import decode, encode
from control_plane.core.schedules.schedules import NewSchedule, Schedules
from control_plane.errors import InvalidArgument
from control_plane.models.schedule import OverlapPolicy, ScheduleRecord, ScheduleSpec, TriggerOutcome
from control_plane.servicers.convert import duration, enum_value, seconds, time_seconds, timestamp
from control_plane.servicers.errors import translate_errors
from control_plane.servicers.structs import to_dict, to_struct
from hms.mgmt.v1 import schedule_pb2 as pb
from hms.mgmt.v1 import schedule_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]
_DEFAULT_PAGE = 50
_LISTING = "schedules"

OVERLAP_FROM_WIRE = {
    pb.OVERLAP_POLICY_UNSPECIFIED: OverlapPolicy.SKIP,
    pb.OVERLAP_POLICY_SKIP: OverlapPolicy.SKIP,
    pb.OVERLAP_POLICY_BUFFER_ONE: OverlapPolicy.BUFFER_ONE,
    pb.OVERLAP_POLICY_ALLOW_ALL: OverlapPolicy.ALLOW_ALL,
}
OVERLAP_TO_WIRE = {policy: wire for wire, policy in OVERLAP_FROM_WIRE.items() if wire}
_OUTCOME_TO_WIRE = {
    TriggerOutcome.STARTED: pb.TRIGGER_OUTCOME_STARTED,
    TriggerOutcome.SKIPPED: pb.TRIGGER_OUTCOME_SKIPPED,
    TriggerOutcome.BUFFERED: pb.TRIGGER_OUTCOME_BUFFERED,
}


def spec_from_proto(spec: pb.ScheduleSpec) -> ScheduleSpec:
    """The domain spec of a request (unset durations are 0, unset times None)."""
    return ScheduleSpec(
        cron=spec.cron.strip(),
        time_zone=spec.time_zone,
        interval_s=seconds(spec.interval, "spec.interval"),
        phase_s=seconds(spec.phase, "spec.phase"),
        jitter_s=seconds(spec.jitter, "spec.jitter"),
        start_time=time_seconds(spec.start_time, "spec.start_time") if spec.HasField("start_time") else None,
        end_time=time_seconds(spec.end_time, "spec.end_time") if spec.HasField("end_time") else None,
    )


def schedule_to_proto(record: ScheduleRecord) -> pb.ScheduleInfo:
    """A stored schedule on the wire."""
    spec = record.spec
    info = pb.ScheduleInfo(
        id=record.id,
        spec=pb.ScheduleSpec(cron=spec.cron, time_zone=spec.time_zone),
        action=pb.ScheduleAction(
            definition=record.definition, version=record.version, input=to_struct(record.input)
        ),
        overlap=OVERLAP_TO_WIRE[record.overlap],
        catchup_window=duration(record.catchup_window_s),
        paused=record.paused,
        note=record.note,
        last_process_id=record.last_process_id,
        started=record.started,
        skipped_overlaps=record.skipped_overlaps,
        missed_catchup=record.missed_catchup,
        created_at=timestamp(record.created_at),
        last_error=record.last_error,
    )
    if spec.interval_s:
        info.spec.interval.CopyFrom(duration(spec.interval_s))
    if spec.phase_s:
        info.spec.phase.CopyFrom(duration(spec.phase_s))
    if spec.jitter_s:
        info.spec.jitter.CopyFrom(duration(spec.jitter_s))
    for field, value in (("start_time", spec.start_time), ("end_time", spec.end_time)):
        if value is not None:
            getattr(info.spec, field).CopyFrom(timestamp(value))
    for field, value in (
        ("next_nominal_time", record.next_nominal),
        ("buffered_nominal_time", record.buffered_nominal),
        ("last_nominal_time", record.last_nominal),
    ):
        if value is not None:
            getattr(info, field).CopyFrom(timestamp(value))
    return info


class ScheduleServicer(schedule_pb2_grpc.ScheduleServicer):
    """Thin: each method converts, calls the scheduler and converts back."""

    def __init__(self, schedules: Schedules) -> None:
        self._schedules = schedules

    @translate_errors
    async def CreateSchedule(
        self, request: pb.CreateScheduleRequest, context: Context
    ) -> pb.CreateScheduleResponse:
        window = (
            seconds(request.catchup_window, "catchup_window") if request.HasField("catchup_window") else None
        )
        record = await self._schedules.create(
            NewSchedule(
                id=request.id,
                spec=spec_from_proto(request.spec),
                definition=request.action.definition,
                version=request.action.version,
                input=to_dict(request.action.input),
                overlap=enum_value("overlap", OVERLAP_FROM_WIRE, request.overlap),
                catchup_window_s=window,
                paused=request.paused,
                note=request.note,
            )
        )
        return pb.CreateScheduleResponse(schedule=schedule_to_proto(record))

    @translate_errors
    async def GetSchedule(self, request: pb.GetScheduleRequest, context: Context) -> pb.GetScheduleResponse:
        return pb.GetScheduleResponse(schedule=schedule_to_proto(await self._schedules.get(request.id)))

    @translate_errors
    async def ListSchedules(
        self, request: pb.ListSchedulesRequest, context: Context
    ) -> pb.ListSchedulesResponse:
        size = request.page_size or _DEFAULT_PAGE
        if size > MAX_PAGE:
            raise InvalidArgument.field("page_size", f"must be between 1 and {MAX_PAGE}")
        (after,) = decode(request.page_token, _LISTING, str) if request.page_token else ("",)
        records = await self._schedules.page(after, size + 1)
        token = encode(_LISTING, records[size - 1].id) if len(records) > size else ""
        return pb.ListSchedulesResponse(
            schedules=[schedule_to_proto(r) for r in records[:size]], next_page_token=token
        )

    @translate_errors
    async def PauseSchedule(
        self, request: pb.PauseScheduleRequest, context: Context
    ) -> pb.PauseScheduleResponse:
        record = await self._schedules.pause(request.id, request.note)
        return pb.PauseScheduleResponse(schedule=schedule_to_proto(record))

    @translate_errors
    async def UnpauseSchedule(
        self, request: pb.UnpauseScheduleRequest, context: Context
    ) -> pb.UnpauseScheduleResponse:
        record = await self._schedules.unpause(request.id, request.note)
        return pb.UnpauseScheduleResponse(schedule=schedule_to_proto(record))

    @translate_errors
    async def TriggerSchedule(
        self, request: pb.TriggerScheduleRequest, context: Context
    ) -> pb.TriggerScheduleResponse:
        triggered = await self._schedules.trigger(request.id, request.request_id)
        return pb.TriggerScheduleResponse(
            outcome=_OUTCOME_TO_WIRE[triggered.outcome],
            process_id=triggered.process_id,
            schedule=schedule_to_proto(triggered.schedule),
        )

    @translate_errors
    async def DeleteSchedule(
        self, request: pb.DeleteScheduleRequest, context: Context
    ) -> pb.DeleteScheduleResponse:
        await self._schedules.delete(request.id)
        return pb.DeleteScheduleResponse()
