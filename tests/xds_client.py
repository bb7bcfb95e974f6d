"""A gRPC Python xDS client in a process of its own: `python -m tests.xds_client` (GRPC_XDS_BOOTSTRAP set).

grpcio reads its xDS bootstrap once per process, so each test's client runs here, isolated. It reads
commands as JSON lines on stdin and answers with JSON lines on stdout:
  {"calls": N, "concurrency": C, "method": "Echo"}  -> {"results": [[t, who_or_error], ...]}
  {"run_s": S}                                      -> {"started": true}, later {"results": [...]}
  {"calls": N, "concurrency": N, "each": true}      -> one {"result": ...} per call, then {"done": true}
`who` is the answering instance's id; an error is "!" + the status code name. `t` is time.monotonic().
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import grpc

TARGET = sys.argv[1] if len(sys.argv) > 1 else "xds:///EchoService"
# --no-wait: only connect (a client whose resources are refused never gets ready).
WAIT = "--no-wait" not in sys.argv


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _call(method: Any, timeout_s: float) -> list[Any]:
    try:
        answer: bytes = await method(b"", timeout=timeout_s)
        return [time.monotonic(), answer.decode()]
    except grpc.aio.AioRpcError as exc:
        return [time.monotonic(), f"!{exc.code().name}"]


async def main() -> None:
    async with grpc.aio.insecure_channel(TARGET) as channel:
        methods: dict[str, Any] = {
            name: channel.unary_unary(f"/hms.test.Echo/{name}") for name in ("Echo", "Slow", "Fail")
        }
        # Wait until the client has its resources and an instance that answers (some may fail on purpose).
        deadline = time.monotonic() + 30
        if not WAIT:
            channel.get_state(try_to_connect=True)
        while WAIT:
            try:
                await methods["Echo"](b"", timeout=30, wait_for_ready=True)
                break
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise
        _emit({"ready": True})
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            command = json.loads(line)
            method = methods[command.get("method", "Echo")]
            timeout_s = float(command.get("timeout_s", 10))
            if "run_s" in command:
                _emit({"started": True})
                results = []
                end = time.monotonic() + float(command["run_s"])
                while time.monotonic() < end:
                    results.extend(await asyncio.gather(*(_call(method, timeout_s) for _ in range(4))))
                _emit({"results": results})
            elif command.get("each"):

                async def report(m: Any = method, limit_s: float = timeout_s) -> None:
                    _emit({"result": await _call(m, limit_s)})

                await asyncio.gather(*(report() for _ in range(int(command["calls"]))))
                _emit({"done": True})
            else:
                total, width = int(command["calls"]), int(command.get("concurrency", 16))
                results = []
                for start in range(0, total, width):
                    batch = min(width, total - start)
                    results.extend(await asyncio.gather(*(_call(method, timeout_s) for _ in range(batch))))
                _emit({"results": results})


if __name__ == "__main__":
    asyncio.run(main())
