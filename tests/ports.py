"""Ports chosen before a control plane listens on them (it must come back where its clients dial).

Chosen below the kernel's ephemeral range (32768-60999 on Linux): every other server in the tests
binds port 0 and gets a port from that range, so a port chosen here and released cannot be taken
by one of them in the moment before its control plane binds it, even with the SQLite and the
PostgreSQL passes running side by side.
"""

from __future__ import annotations

import random
import socket

_LOW, _HIGH = 20_000, 32_000


def free_port() -> int:
    """A loopback port below the ephemeral range that nothing listens on now."""
    for _ in range(200):
        port = random.randint(_LOW, _HIGH)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {_LOW} and {_HIGH}")


def free_address() -> str:
    """`127.0.0.1:PORT` of `free_port()`."""
    return f"127.0.0.1:{free_port()}"
