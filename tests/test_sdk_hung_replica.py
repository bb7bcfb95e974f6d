"""A replica that hangs (stopped, not gone) is left like one that is gone, and reads try every address.

The hung replica is a real `mgmt serve` child process stopped with SIGSTOP: its socket stays open and
accepts bytes, but nothing answers, as with a frozen host or a partition that drops packets.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest

from hms_mgmt import Client, Unavailable
from tests.conftest import ServerProcess
from tests.ports import free_address

Start = Callable[..., Awaitable[ServerProcess]]


@contextlib.asynccontextmanager
async def hung(replica: ServerProcess) -> AsyncIterator[None]:
    assert replica.process is not None
    replica.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        replica.process.send_signal(signal.SIGCONT)


async def test_a_unary_call_to_a_hung_replica_ends_at_the_default_deadline(server_process: Start) -> None:
    replica = await server_process()
    async with Client(replica.address, call_timeout_s=1.0) as client:
        await client.registry.list_services()  # connected
        async with hung(replica):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                async with asyncio.timeout(20):  # without a default deadline the call never ends
                    await client.registry.list_services()

    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_a_watch_on_a_hung_replica_ends_once_keepalive_pings_go_unanswered(
    server_process: Start,
) -> None:
    replica = await server_process()
    async with (
        Client(replica.address, keepalive_time_s=1.0, keepalive_timeout_s=1.0) as client,
        client.registry.watch() as stream,
        hung(replica),
    ):
        with pytest.raises(Unavailable):
            async with asyncio.timeout(20):  # without keepalive an idle watch waits forever
                await anext(stream)


async def test_a_read_tries_every_address_until_one_answers(server_process: Start) -> None:
    live = await server_process()
    addresses = [free_address(), free_address(), live.address]  # the first two refuse connections
    assert len(set(addresses)) == 3

    async with Client(addresses) as client:
        services = await client.registry.list_services()
        assert client.address == live.address

    assert services == []
