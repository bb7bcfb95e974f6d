"""The SDK's Schedule side: `client.schedules.create / get / list / pause / unpause / trigger / delete`."""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2

from hms.mgmt.v1 import schedule_pb2 as pb
from hms_mgmt._endpoints import Endpoints
from hms_mgmt._workflow import struct

OVERLAP = {
    "skip": pb.OVERLAP_POLICY_SKIP,
    "buffer_one": pb.OVERLAP_POLICY_BUFFER_ONE,
    "allow_all": pb.OVERLAP_POLICY_ALLOW_ALL,
}


def _duration(seconds: float) -> duration_pb2.Duration:
    message = duration_pb2.Duration()
    message.FromNanoseconds(round(seconds * 1e9))
    return message


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromNanoseconds(round(seconds * 1e9))
    return message


class ScheduleClient:
    """Schedule calls; answers are the wire messages of `hms.mgmt.v1`."""

    def __init__(self, endpoints: Endpoints, metadata: Sequence[tuple[str, str]]) -> None:
        self._endpoints = endpoints
        self._metadata = tuple(metadata)

    async def create(
        self,
        schedule_id: str,
        definition: str,
        payload: Mapping[str, Any] | None = None,
        *,
        cron: str = "",
        time_zone: str = "",
        every_s: float = 0.0,
        phase_s: float = 0.0,
        jitter_s: float = 0.0,
        start_time: float | None = None,
        end_time: float | None = None,
        version: int = 0,
        overlap: str = "skip",
        catchup_window_s: float | None = None,
        paused: bool = False,
        note: str = "",
    ) -> pb.ScheduleInfo:
        """Create a schedule starting `definition` with `payload`: on `cron` (in `time_zone`) or `every_s`.

        `overlap` is "skip", "buffer_one" or "allow_all"; times are Unix seconds. Not retried on another
        replica: a retry after a lost answer would say ALREADY_EXISTS.
        """
        spec = pb.ScheduleSpec(cron=cron, time_zone=time_zone)
        for field, seconds in (("interval", every_s), ("phase", phase_s), ("jitter", jitter_s)):
            if seconds:
                getattr(spec, field).CopyFrom(_duration(seconds))
        for field, at in (("start_time", start_time), ("end_time", end_time)):
            if at is not None:
                getattr(spec, field).CopyFrom(_timestamp(at))
        if overlap not in OVERLAP:
            raise ValueError(f"overlap must be one of {', '.join(OVERLAP)}, got {overlap!r}")
        request = pb.CreateScheduleRequest(
            id=schedule_id,
            spec=spec,
            action=pb.ScheduleAction(definition=definition, version=version, input=struct(payload)),
            overlap=OVERLAP[overlap],
            paused=paused,
            note=note,
        )
        if catchup_window_s is not None:
            request.catchup_window.CopyFrom(_duration(catchup_window_s))
        response = await self._endpoints.unary(
            lambda e: e.schedule.CreateSchedule(request, metadata=self._metadata)
        )
        return response.schedule

    async def get(self, schedule_id: str) -> pb.ScheduleInfo:
        """One schedule with its state."""
        request = pb.GetScheduleRequest(id=schedule_id)
        response = await self._endpoints.unary(
            lambda e: e.schedule.GetSchedule(request, metadata=self._metadata), retry=True
        )
        return response.schedule

    async def list(self) -> builtins.list[pb.ScheduleInfo]:
        """Every schedule, by id, following pages."""
        found: builtins.list[pb.ScheduleInfo] = []
        token = ""
        while True:
            request = pb.ListSchedulesRequest(page_size=1000, page_token=token)
            response = await self._page(request)
            found.extend(response.schedules)
            token = response.next_page_token
            if not token:
                return found

    async def _page(self, request: pb.ListSchedulesRequest) -> pb.ListSchedulesResponse:
        return await self._endpoints.unary(
            lambda e: e.schedule.ListSchedules(request, metadata=self._metadata), retry=True
        )

    async def pause(self, schedule_id: str, note: str = "") -> pb.ScheduleInfo:
        """Stop firing (nominal times passing meanwhile are skipped)."""
        request = pb.PauseScheduleRequest(id=schedule_id, note=note)
        response = await self._endpoints.unary(
            lambda e: e.schedule.PauseSchedule(request, metadata=self._metadata), retry=True
        )
        return response.schedule

    async def unpause(self, schedule_id: str, note: str = "") -> pb.ScheduleInfo:
        """Fire again from the next nominal time."""
        request = pb.UnpauseScheduleRequest(id=schedule_id, note=note)
        response = await self._endpoints.unary(
            lambda e: e.schedule.UnpauseSchedule(request, metadata=self._metadata), retry=True
        )
        return response.schedule

    async def trigger(self, schedule_id: str, request_id: str = "") -> pb.TriggerScheduleResponse:
        """Start a process now under the overlap policy; retried elsewhere only with a `request_id`."""
        request = pb.TriggerScheduleRequest(id=schedule_id, request_id=request_id)
        return await self._endpoints.unary(
            lambda e: e.schedule.TriggerSchedule(request, metadata=self._metadata), retry=bool(request_id)
        )

    async def delete(self, schedule_id: str) -> None:
        """Delete a schedule (the processes it started stay)."""
        request = pb.DeleteScheduleRequest(id=schedule_id)
        await self._endpoints.unary(lambda e: e.schedule.DeleteSchedule(request, metadata=self._metadata))
