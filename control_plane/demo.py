"""`mgmt demo`: a control plane, two registered instances, one kept alive, one left to lapse."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from control_plane.server import running
from control_plane.settings import Settings
from hms_mgmt import Client

TTL_S = 2.0


async def run_demo(say: Callable[[str], None]) -> None:
    """Run the registry scenario end to end and stop cleanly; raises if anything is not as promised."""
    with tempfile.TemporaryDirectory(prefix="mgmt-demo-") as data_dir:
        settings = Settings(listen="127.0.0.1:0", data_dir=Path(data_dir))
        async with running(settings) as app:
            say(f"control plane listening on {app.address} (data in {data_dir})")
            async with Client(app.address) as client:
                await _scenario(client, say)
        say("control plane stopped cleanly")


async def _scenario(client: Client, say: Callable[[str], None]) -> None:
    async with client.registry.watch("DocumentService") as changes:
        say(f"watching DocumentService from revision {changes.revision}")
        kept = await client.registry.register(
            "DocumentService", "127.0.0.1:7001", instance_id="docs-1", version="1.4.0", ttl_s=TTL_S
        )
        lapsing = await client.registry.register(
            "DocumentService", "127.0.0.1:7002", instance_id="docs-2", version="1.4.0", ttl_s=TTL_S
        )
        say(f"registered docs-1 and docs-2 with a {TTL_S:g}s lease; only docs-1 keeps its lease alive")
        started = time.monotonic()
        async with client.registry.keep_alive(kept.lease.lease_id, interval_s=TTL_S / 3):
            async with asyncio.timeout(TTL_S + 5):
                async for response in changes:
                    for change in response.changes:
                        kind = change.type.name
                        extra = f" ({change.reason})" if change.reason else ""
                        say(
                            f"  revision {change.revision}: {change.instance.instance_id} {kind}{extra}"
                            f" at +{time.monotonic() - started:.2f}s"
                        )
                    if any(c.instance.instance_id == "docs-2" and c.reason for c in response.changes):
                        break
            instances = await client.registry.lookup("DocumentService")
            say(f"lookup DocumentService -> {[i.instance_id for i in instances]}")
            if [i.instance_id for i in instances] != ["docs-1"]:
                raise RuntimeError(f"expected only docs-1 to remain, got {instances}")
        await client.registry.deregister("DocumentService", "docs-1")
        say(f"deregistered docs-1 (lease {lapsing.lease.lease_id[:8]}... had lapsed on its own)")
