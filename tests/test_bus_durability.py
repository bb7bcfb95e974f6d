"""The Bus across restarts and through the tools: SIGKILL, grpcurl, the CLI, retention."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable

import pytest

from control_plane.errors import InvalidArgument
from control_plane.server import App
from hms.mgmt.v1 import bus_pb2 as pb
from hms_mgmt import Client
from tests.conftest import CLI_OUTPUT, ServerProcess
from tests.test_bus import messages, take
from tests.test_grpcurl import grpcurl

Start = Callable[..., Awaitable[ServerProcess]]


async def test_durable_consumer_loses_no_acknowledged_message_across_sigkill(server_process: Start) -> None:
    first = await server_process()
    async with Client(first.address) as client:
        async with client.bus.subscribe("k.>", durable="audit", explicit_ack=True) as sub:
            published = await client.bus.publish_many(messages("k.x", 50))
            got = await take(sub, 20)
            await client.bus.ack(*(d.delivery_id for d in got[:10]))  # 10 acked, 10 delivered unacked
        more = await client.bus.publish_many(messages("k.x", 5, prefix="late"))
    await first.stop(signal.SIGKILL)

    second = await server_process()
    async with (
        Client(second.address) as client,
        client.bus.subscribe("k.>", durable="audit", explicit_ack=True) as sub,
    ):
        rest = await take(sub, 45)
        await client.bus.ack(*(d.delivery_id for d in rest))
        info = await client.bus.consumer_info("audit")

    assert sorted(d.message.sequence for d in rest) == sorted([*published[10:], *more])
    assert {d.attempt for d in rest if d.message.sequence in published[10:20]} == {2}
    assert info.num_ack_pending == 0


async def test_grpcurl_publishes_json_and_a_grpcurl_subscriber_prints_it(server: App) -> None:
    subscriber = await asyncio.create_subprocess_exec(
        grpcurl(),
        "-plaintext",
        "-d",
        '{"pattern": "permit.>"}',
        server.address,
        "hms.mgmt.v1.Bus/Subscribe",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert subscriber.stdout is not None
    try:
        seen = ""
        async with asyncio.timeout(20):
            while '"ready"' not in seen:  # the subscription is in place: publish now
                seen += (await subscriber.stdout.readline()).decode()
            published = await asyncio.to_thread(
                subprocess.run,
                [
                    grpcurl(),
                    "-plaintext",
                    "-d",
                    '{"message": {"subject": "permit.a17.submitted", "data": "aGVsbG8=", "content_type": "text/plain"}}',
                    server.address,
                    "hms.mgmt.v1.Bus/Publish",
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
            while "permit.a17.submitted" not in seen or not seen.endswith("\n}\n"):  # a whole frame
                seen += (await subscriber.stdout.readline()).decode()
    finally:
        subscriber.kill()
        await subscriber.wait()

    assert json.loads(published.stdout)["sequence"] == "1"
    frames = [json.loads("{" + chunk) for chunk in seen.split("\n{")[1:]]
    delivery = frames[-1]["deliveries"][0]
    assert base64.b64decode(delivery["message"]["data"]) == b"hello"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "control_plane", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@CLI_OUTPUT
async def test_cli_pub_sub_subjects_and_consumers(server: App, client: Client) -> None:
    await client.bus.publish("cli.a", b"first")
    published = await asyncio.to_thread(run_cli, "bus", "pub", "cli.a", "second", "--server", server.address)
    sub = await asyncio.to_thread(
        run_cli, "bus", "sub", "cli.>", "--from", "all", "--durable", "cli-reader", "--ack", "--count", "2",
        "--server", server.address,
    )  # fmt: skip
    subjects = await asyncio.to_thread(run_cli, "bus", "subjects", "--server", server.address)
    consumers = await asyncio.to_thread(run_cli, "bus", "consumers", "--server", server.address)

    assert published.returncode == 0 and "sequence 2" in published.stdout, published.stderr
    assert sub.returncode == 0, sub.stderr
    assert "[1] cli.a: first" in sub.stdout and "[2] cli.a: second" in sub.stdout
    assert "cli.a" in subjects.stdout and " 2 " in subjects.stdout
    assert "cli-reader" in consumers.stdout


async def test_retention_trims_each_subject_to_its_policy(server: App, client: Client) -> None:
    await client.bus.publish_many(messages("logs.app", 6))
    await client.bus.publish_many(messages("keep.app", 6))
    policy = await client.bus.set_retention("logs", max_messages=2)

    removed = await server.bus.housekeeping()
    subjects = {s.subject: s for s in await client.bus.subjects()}

    assert policy.max_messages == 2
    assert removed == 4
    assert subjects["logs.app"].messages == 2
    assert subjects["logs.app"].first_sequence == 5
    assert subjects["keep.app"].messages == 6
    assert subjects["logs.app"].retention.subject_prefix == "logs"


async def test_a_longer_prefix_overrides_a_shorter_one(server: App, client: Client) -> None:
    # Retention by age, at its time, is tests/core/test_bus_timing.py's (and the store contract's).
    await client.bus.publish_many(messages("audit.keep.a", 5))
    await client.bus.publish_many(messages("audit.other", 5))
    await client.bus.set_retention("audit", max_messages=1)
    await client.bus.set_retention("audit.keep", max_messages=0)  # no count limit under audit.keep

    await server.bus.housekeeping()
    counts = {s.subject: s.messages for s in await client.bus.subjects()}

    assert counts["audit.keep.a"] == 5
    assert counts["audit.other"] == 1


async def test_malformed_delivery_ids_reject_the_whole_ack(client: Client) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await client.bus.ack("nonsense", "x/1/0")

    assert [v.field for v in caught.value.violations] == ["items[0].delivery_id", "items[1].delivery_id"]


async def test_in_progress_is_accepted_for_a_held_delivery(client: Client) -> None:
    # What in-progress does to the ack deadline, at its time, is tests/core/test_bus_timing.py's.
    async with client.bus.subscribe("slow.job", explicit_ack=True) as sub:
        await client.bus.publish("slow.job", b"x")
        (delivery,) = await take(sub, 1)
        progress = await client.bus.settle(
            [pb.AckItem(delivery_id=delivery.delivery_id, action=pb.ACK_ACTION_IN_PROGRESS)]
        )
        results = await client.bus.ack(delivery.delivery_id)
        info = await client.bus.consumer_info(sub.consumer)

    assert list(progress.results) == [pb.ACK_RESULT_ACCEPTED]
    assert results == [pb.ACK_RESULT_ACCEPTED]
    assert info.num_redelivered == 0
