"""Helpers for tests of the store's writer thread."""

from __future__ import annotations

import threading
from typing import Any


class Blocked:
    """A write that holds the writer thread until released (a slow disk, a stalled database): what is
    submitted meanwhile queues, and shares the next commit."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, conn: Any) -> None:
        self.entered.set()
        self.release.wait(30)
