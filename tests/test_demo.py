"""`mgmt demo` runs its scenario to the end."""

from __future__ import annotations

from control_plane.demo import run_demo


async def test_demo_shows_one_instance_lapse_and_stops_cleanly() -> None:
    lines: list[str] = []

    await run_demo(lines.append)

    text = "\n".join(lines)
    assert "docs-2 DOWN (lease_expired)" in text
    assert "lookup DocumentService -> ['docs-1']" in text
    assert lines[-1] == "control plane stopped cleanly"
