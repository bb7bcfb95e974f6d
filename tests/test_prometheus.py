"""A real Prometheus server scrapes a control plane running the permit demo; every panel of the
committed Grafana dashboard gets data from it.

Needs the `prometheus` binary (Debian: `apt-get install prometheus`; `.ci/run` installs it). Without
it the test is skipped, unless MGMT_REQUIRE_PROMETHEUS=1 (CI) makes that a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from control_plane.server import App
from hms_mgmt import Client
from services.permit.demo import run_demo

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana" / "hms-mgmt.json"
JOB = "hms-mgmt"
# Grafana's variables, as a query sent straight to Prometheus needs them.
VARIABLES = {"$__rate_interval": "1m", "$job": JOB}
_LISTENING = re.compile(r'msg="Listening on" address=(\S+)')
_READY = "Server is ready to receive web requests"


def prometheus_or_skip() -> str:
    """The prometheus binary; skips the test without one (fails it with MGMT_REQUIRE_PROMETHEUS=1)."""
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("MGMT_REQUIRE_PROMETHEUS") == "1":
            pytest.fail("prometheus is required (MGMT_REQUIRE_PROMETHEUS=1) but not on PATH")
        pytest.skip("prometheus is not installed (Debian: apt-get install prometheus)")
    return binary


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel with queries, rows' nested panels included."""
    for panel in dashboard["panels"]:
        yield from panels(panel) if panel.get("type") == "row" and panel.get("panels") else ()
        if panel.get("targets"):
            yield panel


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL with Grafana's variables filled in) of every target."""
    found = []
    for panel in panels(dashboard):
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in VARIABLES.items():
                expr = expr.replace(variable, value)
            found.append((panel["title"], expr))
    return found


class Scrapes:
    """Counts the scrapes of one control plane's /metrics, as they happen."""

    def __init__(self, app: App) -> None:
        assert app.metrics is not None
        self.count = 0
        self._changed = asyncio.Condition()
        app.metrics.refreshers.append(self._scraped)

    async def _scraped(self) -> None:
        async with self._changed:
            self.count += 1
            self._changed.notify_all()

    async def wait(self, count: int) -> None:
        """Wait until `count` more scrapes have begun."""
        async with self._changed:
            target = self.count + count
            await self._changed.wait_for(lambda: self.count >= target)


class Prometheus:
    """A prometheus server in a child process, scraping one target twice a second, data under `data`."""

    def __init__(self, binary: str, directory: Path, target: str) -> None:
        self.binary = binary
        self.directory = directory
        self.target = target
        self.url = ""
        self.process: asyncio.subprocess.Process | None = None
        self.log: list[str] = []
        self._reader: asyncio.Future[None] | None = None

    async def start(self) -> None:
        config = self.directory / "prometheus.yml"
        config.write_text(
            json.dumps(  # YAML is a superset of JSON
                {
                    "global": {"scrape_interval": "500ms", "scrape_timeout": "500ms"},
                    "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [self.target]}]}],
                }
            )
        )
        self.process = await asyncio.create_subprocess_exec(
            self.binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            "--web.listen-address=127.0.0.1:0",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self.process.stderr is not None
        ready = False
        async with asyncio.timeout(30):
            while not (ready and self.url):  # the two lines come in either order
                line = (await self.process.stderr.readline()).decode()
                if not line:
                    raise RuntimeError("prometheus exited before it was ready:\n" + "".join(self.log))
                self.log.append(line)
                listening = _LISTENING.search(line)
                if listening:
                    self.url = f"http://{listening.group(1)}"
                ready = ready or _READY in line
        # Read on, so that its log never fills the pipe and blocks it.
        self._reader = asyncio.ensure_future(self._read_log())

    async def _read_log(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for line in self.process.stderr:
            self.log.append(line.decode())

    async def query(self, session: aiohttp.ClientSession, expr: str) -> list[dict[str, Any]]:
        """The result vector of an instant query (raises on a bad query)."""
        async with session.get(f"{self.url}/api/v1/query", params={"query": expr}) as response:
            body = await response.json()
        assert body["status"] == "success", f"{expr}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def stop(self) -> None:
        """SIGTERM, and SIGKILL if it has not exited 10 s later."""
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            async with asyncio.timeout(10):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        if self._reader is not None:
            await self._reader


def numbers(result: list[dict[str, Any]]) -> list[float]:
    """The values of a result vector that are numbers (a quantile of nothing is NaN)."""
    return [v for v in (float(sample["value"][1]) for sample in result) if not math.isnan(v)]


@pytest.mark.timeout(180)
async def test_prometheus_scrapes_the_permit_demo_and_every_dashboard_panel_has_data(tmp_path: Path) -> None:
    binary = prometheus_or_skip()
    dashboard = json.loads(DASHBOARD.read_text())
    answers: dict[str, list[dict[str, Any]]] = {}
    states: dict[str, float] = {}

    @contextlib.asynccontextmanager
    async def observe(app: App) -> AsyncIterator[None]:
        assert app.http_url is not None
        scrapes = Scrapes(app)
        prometheus = Prometheus(binary, tmp_path, urlsplit(app.http_url).netloc)
        # An auditor's durable consumer of every process event, so that consumer lag has a consumer.
        async with Client(app.address) as client, client.bus.subscribe("workflow.>", durable="audit"):
            pass
        try:
            await prometheus.start()
            async with asyncio.timeout(30):
                await scrapes.wait(1)  # scraping before the applications start: rates have a baseline
            yield
            async with aiohttp.ClientSession() as session:
                # Until every query has data, or the deadline: then the assertions below say which lack it.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(60):
                        while not answers or not all(numbers(r) for r in answers.values()):
                            # What one scrape brought is in by the time the one after the next begins.
                            await scrapes.wait(2)
                            for title, expr in queries(dashboard):
                                answers[f"{title}: {expr}"] = await prometheus.query(session, expr)
                processes = 'mgmt_workflow_processes{job="hms-mgmt", definition="building_permit"}'
                for sample in await prometheus.query(session, processes):
                    states[sample["metric"]["state"]] = float(sample["value"][1])
        finally:
            await prometheus.stop()

    lines: list[str] = []
    await run_demo(lines.append, node=False, http_listen="127.0.0.1:0", observe=observe)

    assert len(answers) >= 30
    lacking = {query: result for query, result in answers.items() if not numbers(result)}
    assert lacking == {}
    assert states["completed"] == 1 and states["failed"] == 1 and states["compensated"] == 1
    assert states["running"] == 0
