"""Definitions compiled off the event loop, the large ones checked in a child process with a time limit.

A 1 MiB definition takes seconds of CPU to read and validate (YAML, the JSON Schema meta-schema, every
CEL expression). On the event loop that stalled every stream; a worker thread does not help enough,
because libyaml composes the document in long stretches that hold the GIL (190 ms at a time here).
So a large source is checked whole in a child process, which a time limit can kill; the parent then
compiles the checked document on a worker thread, in pure-Python steps that let the loop run (CEL
programs cannot cross processes). A small source costs a few milliseconds and is compiled on a worker
thread directly: a child process for each definition of the test suite would cost more than it saves.

Run as `python -m control_plane.core.workflow.compiler`, this module is the child: it reads
length-prefixed sources on stdin and answers each with a pickled verdict on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import pickle
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, BinaryIO

from control_plane.core.workflow.definition import Definition
from control_plane.core.workflow.parser import build_definition, parse_definition
from control_plane.errors import FieldViolation, InvalidArgument, ResourceExhausted, Unavailable

logger = logging.getLogger(__name__)

# Sources up to this many bytes are compiled on a worker thread (a few milliseconds of CPU, in short
# steps); larger ones are checked in the child process first.
SMALL_SOURCE = 16 * 1024
# How long the child may take over one source before it is killed: a 1 MiB definition takes 4-5 s
# here, 20 s on a machine loaded five times over.
CHECK_TIME_LIMIT_S = 60.0
_HEADER = 4
_YIELD_EVERY_S = 0.001


class DefinitionCompiler:
    """Compiles definition sources without stalling the event loop; owns the checking child process."""

    def __init__(
        self,
        *,
        time_limit_s: float = CHECK_TIME_LIMIT_S,
        small_source: int = SMALL_SOURCE,
        child_command: Sequence[str] = (sys.executable, "-m", __name__),
    ) -> None:
        self._time_limit_s = time_limit_s
        self._small_source = small_source
        self._child_command = tuple(child_command)
        self._child: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()  # one source at a time through the child
        self._closed = False

    async def compile(self, source: str) -> Definition:
        """The compiled definition; InvalidArgument lists what is wrong with it, as parse_definition does.

        ResourceExhausted when checking it takes longer than the time limit (the check is killed).
        """
        if len(source) <= self._small_source:
            return await asyncio.to_thread(parse_definition, source, _Yield())
        document, digest = await self._check(source)
        return await asyncio.to_thread(_build_aside, document, digest)

    async def close(self) -> None:
        """Stop the child process (idempotent); later compiles of large sources raise Unavailable."""
        self._closed = True
        async with self._lock:
            await self._stop()

    async def _check(self, source: str) -> tuple[dict[str, Any], str]:
        payload = source.encode()
        async with self._lock:
            child = await self._started()
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write(len(payload).to_bytes(_HEADER, "big") + payload)
            try:
                async with asyncio.timeout(self._time_limit_s):
                    await child.stdin.drain()
                    size = int.from_bytes(await child.stdout.readexactly(_HEADER), "big")
                    answer = await child.stdout.readexactly(size)
            except TimeoutError:
                await self._stop()
                raise ResourceExhausted(
                    f"source: checking the definition took longer than {self._time_limit_s:g} s; it was stopped"
                ) from None
            except (asyncio.IncompleteReadError, ConnectionError):
                status = await self._stop()
                logger.error("the definition checker ended (exit status %s) while checking a source", status)
                raise InvalidArgument.field(
                    "source", f"the definition checker failed on it (exit status {status})"
                ) from None
        verdict, body = pickle.loads(answer)
        if verdict == "invalid":
            raise InvalidArgument([FieldViolation(field, description) for field, description in body])
        document, digest = body
        return document, digest

    async def _started(self) -> asyncio.subprocess.Process:
        if self._closed:
            raise Unavailable("the control plane is shutting down")
        if self._child is None or self._child.returncode is not None:
            self._child = await asyncio.create_subprocess_exec(
                *self._child_command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
        return self._child

    async def _stop(self) -> int | None:
        """End the child (it is killed: it may be deep in a hostile source); returns its exit status."""
        child, self._child = self._child, None
        if child is None:
            return None
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
        assert child.stdin is not None
        child.stdin.close()
        with contextlib.suppress(ConnectionError):
            await child.stdin.wait_closed()
        return await child.wait()


# The collector is one per process, and so is the count of builds that paused it.
_collector_paused = 0
_collector_lock = threading.Lock()


def _build_aside(document: dict[str, Any], digest: str) -> Definition:
    """Build a large definition with the cyclic collector paused, then set its objects aside for good.

    A 1 MiB definition is some 140,000 objects that live as long as the process. Built with the
    collector on, they set off full collections that walk the whole heap while the event loop waits for
    the GIL (20-30 ms each here, 100-200 ms on a loaded machine), and every later full collection
    walks them again. Frozen (`gc.freeze`), they are never walked again; whatever else is alive at that
    moment is frozen too, which only keeps cycles among those objects from being collected.
    """
    global _collector_paused
    with _collector_lock:
        ours = gc.isenabled() or _collector_paused > 0  # otherwise someone else manages the collector
        if ours:
            _collector_paused += 1
            gc.disable()
    if not ours:
        return build_definition(document, digest, _Yield())
    try:
        return build_definition(document, digest, _Yield())
    finally:
        with _collector_lock:
            _collector_paused -= 1
            if not _collector_paused:
                gc.freeze()
                gc.enable()


class _Yield:
    """Called between steps of a compile on a worker thread: lets go of the GIL every millisecond.

    A thread that computes keeps the GIL until another asks for it and then for up to 5 ms more (the
    switch interval), each time the event loop wants it back: a round trip that needs it a few times
    waited 50-90 ms on a busy machine. Letting go often keeps each wait short.
    """

    __slots__ = ("_at",)

    def __init__(self) -> None:
        self._at = time.perf_counter()

    def __call__(self) -> None:
        now = time.perf_counter()
        if now - self._at >= _YIELD_EVERY_S:
            time.sleep(0)  # releases the GIL; a thread waiting for it takes it
            self._at = time.perf_counter()


def _serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """The child: check each source read from `requests`, answer on `answers`, until end of input."""
    while header := requests.read(_HEADER):
        source = requests.read(int.from_bytes(header, "big")).decode()
        try:
            definition = parse_definition(source)
            answer: tuple[str, Any] = ("ok", (definition.spec, definition.digest))
        except InvalidArgument as exc:
            answer = ("invalid", [(v.field, v.description) for v in exc.violations])
        body = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        answers.write(len(body).to_bytes(_HEADER, "big") + body)
        answers.flush()


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
