"""Helpers for tests of the store's writer thread."""

from __future__ import annotations

import threading
from typing import Any


class Blocked:
    """A write that holds the writer thread until released (a slow disk, a stalled database): what is
    submitted meanwhile queues, and shares the next commit. Submit it `slow`: the embedded store's writer
    runs other works on the event loop, which this one must not hold."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, conn: Any) -> None:
        self.entered.set()
        self.release.wait(30)


async def after_started() -> None:
    """Nothing. Tasks start in the order they were made, and a submit with room queues its work before it
    first waits: once a task made after some callers has run (`await asyncio.ensure_future(after_started())`),
    every one of them has queued its work."""
