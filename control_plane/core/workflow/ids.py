"""Process ids that sort by creation time: UUID version 7 (RFC 9562).

A process's rows are found by its id in several B-tree indexes: its history (process id, sequence), its
Bus events' subjects (`workflow.<definition>.<process id>.<event>`) and the process table's key. With
random (version 4) ids every step's entries landed on a random leaf page of each: a commit of 100 steps
wrote about as many pages of each index as it had steps (SQLite: 77 pages of the subject index and 68 of
the history key per commit at 100 in flight). Ids that begin with their creation time put the entries of
processes started around the same time on the same few pages, and still carry 74 random bits.
"""

from __future__ import annotations

import secrets
import uuid

_MILLIS = (1 << 48) - 1
_RAND_A = (1 << 12) - 1
_RAND_B = (1 << 62) - 1


def new_process_id(now: float) -> str:
    """A new process id created at `now` (Unix seconds): 48 bits of milliseconds, version 7, 12 random bits,
    the RFC variant, 62 random bits."""
    millis = int(now * 1000) & _MILLIS
    rand = secrets.randbits(74)
    value = (millis << 80) | (0x7 << 76) | ((rand >> 62) & _RAND_A) << 64 | (0b10 << 62) | (rand & _RAND_B)
    return str(uuid.UUID(int=value))
