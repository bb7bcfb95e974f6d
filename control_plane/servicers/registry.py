"""Registry servicer: translates the wire API to `core.registry.Registry`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from control_plane.core.registry import Registry
from control_plane.models import Instance, RegistryChange
from control_plane.servicers import convert
from control_plane.servicers.errors import translate_errors
from control_plane.servicers.scopes import OPEN, Scopes
from control_plane.servicers.streams import until_stopped
from hms.mgmt.v1 import registry_pb2 as pb
from hms.mgmt.v1 import registry_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]

_WIRE_CACHE_SIZE = 50_000
# Lookup answers kept for the current revision: one per service, filter and rotation seen. Filters are
# the client's, so the count is bounded; past it the cache starts over.
_ANSWER_CACHE_SIZE = 10_000

# What identifies a Lookup answer within one revision: service, tags, version, include_unhealthy,
# limit, and the first instance of the rotation (the order follows from it).
_AnswerKey = tuple[str, tuple[str, ...], str, bool, int, str]


class RegistryServicer(registry_pb2_grpc.RegistryServicer):
    """Thin: each method converts, calls the registry and converts back."""

    def __init__(
        self,
        registry: Registry,
        progress_interval_s: float,
        stopping: asyncio.Event,
        scopes: Scopes = OPEN,
    ) -> None:
        self._registry = registry
        self._scopes = scopes
        self._progress_interval_s = progress_interval_s
        self._stopping = stopping
        # Instances are immutable per revision, so their wire form is built once, not on every Lookup
        # (profiled: conversion was 14% of a Lookup's server CPU).
        self._wire_cache: dict[tuple[str, str, int], pb.ServiceInstance] = {}
        # Whole Lookup answers of the revision `_answers_revision`: building a LookupResponse copies every
        # instance message into it (about 70 us for 10 instances here, half a raw unary call), and
        # between two registry changes the same service is answered with the same few orders.
        self._answers: dict[_AnswerKey, pb.LookupResponse] = {}
        self._answers_revision = -1
        # Watch frames of the revision `_frames_revision`, by the revisions of the changes they carry:
        # the watchers of one service wake together with the same batch, and the frame is built once
        # for all of them instead of once per watcher.
        self._frames: dict[tuple[int, ...], pb.WatchResponse] = {}
        self._frames_revision = -1

    def _wire(self, instance: Instance) -> pb.ServiceInstance:
        key = (instance.service, instance.instance_id, instance.revision)
        message = self._wire_cache.get(key)
        if message is None:
            if len(self._wire_cache) >= _WIRE_CACHE_SIZE:
                self._wire_cache.clear()
            message = self._wire_cache[key] = convert.instance_to_proto(instance)
        return message

    def _changes_frame(self, changes: list[RegistryChange], revision: int) -> pb.WatchResponse:
        if revision != self._frames_revision:
            self._frames.clear()
            self._frames_revision = revision
        key = tuple(c.revision for c in changes)
        frame = self._frames.get(key)
        if frame is None:
            # Shared by every watcher sent the same batch: grpc only serializes it, nothing mutates it.
            frame = pb.WatchResponse(revision=revision, changes=[convert.change_to_proto(c) for c in changes])
            self._frames[key] = frame
        return frame

    @translate_errors
    async def Register(self, request: pb.RegisterRequest, context: Context) -> pb.RegisterResponse:
        self._scopes.check(context, request.instance.service, "register instances")
        instance, lease = await self._registry.register(convert.registration_from_proto(request))
        return pb.RegisterResponse(
            instance=convert.instance_to_proto(instance),
            lease=convert.lease_to_proto(lease),
            revision=instance.revision,
        )

    @translate_errors
    async def Heartbeat(self, request: pb.HeartbeatRequest, context: Context) -> pb.HeartbeatResponse:
        return pb.HeartbeatResponse(lease=convert.lease_to_proto(self._registry.heartbeat(request.lease_id)))

    @translate_errors
    async def KeepAlive(
        self, request_iterator: AsyncIterator[pb.KeepAliveRequest], context: Context
    ) -> AsyncIterator[pb.KeepAliveResponse]:
        async for request in until_stopped(request_iterator, self._stopping):
            lease = self._registry.renew(request.lease_id)
            if lease is not None:
                yield pb.KeepAliveResponse(lease_id=request.lease_id, lease=convert.lease_to_proto(lease))
            else:
                yield pb.KeepAliveResponse(lease_id=request.lease_id, not_found=True)

    @translate_errors
    async def Deregister(self, request: pb.DeregisterRequest, context: Context) -> pb.DeregisterResponse:
        self._scopes.check(context, request.service, "deregister instances")
        revision = await self._registry.deregister(request.service, request.instance_id)
        return pb.DeregisterResponse(revision=revision)

    @translate_errors
    async def Lookup(self, request: pb.LookupRequest, context: Context) -> pb.LookupResponse:
        tags = tuple(request.tags)
        instances, revision = self._registry.lookup(
            request.service,
            tags=tags,
            version=request.version,
            include_unhealthy=request.include_unhealthy,
            limit=request.limit,
        )
        if revision != self._answers_revision or len(self._answers) >= _ANSWER_CACHE_SIZE:
            self._answers.clear()
            self._answers_revision = revision
        key = (
            request.service,
            tags,
            request.version,
            request.include_unhealthy,
            request.limit,
            instances[0].instance_id if instances else "",
        )
        # Shared by every call that gets the same answer: grpc only serializes it, nothing mutates it.
        answer = self._answers.get(key)
        if answer is None:
            answer = pb.LookupResponse(instances=[self._wire(i) for i in instances], revision=revision)
            self._answers[key] = answer
        return answer

    @translate_errors
    async def ListServices(
        self, request: pb.ListServicesRequest, context: Context
    ) -> pb.ListServicesResponse:
        summaries, revision = self._registry.list_services()
        return pb.ListServicesResponse(
            services=[convert.summary_to_proto(s) for s in summaries], revision=revision
        )

    @translate_errors
    async def Watch(self, request: pb.WatchRequest, context: Context) -> AsyncIterator[pb.WatchResponse]:
        after = request.after_revision if request.HasField("after_revision") else None
        with self._registry.watch(request.service, after) as (watcher, snapshot, revision):
            yield pb.WatchResponse(
                created=True, revision=revision, snapshot=[convert.instance_to_proto(i) for i in snapshot]
            )
            while True:
                changes = await watcher.next_batch(self._progress_interval_s)
                if changes:
                    # The queue was drained in one step, so the watcher is current up to the feed's revision.
                    yield self._changes_frame(changes, self._registry.feed.revision)
                else:
                    yield pb.WatchResponse(revision=self._registry.feed.revision)
