"""The docs run as written: every block marked `run` (tests/doc_blocks.py) against a real control plane.

A document's blocks run in order, in one working directory holding what a checkout offers (`.venv`,
`services/`), with the venv activated, as a reader pastes them into one terminal. The documented
addresses (127.0.0.1:50051 for gRPC, 127.0.0.1:50052 for HTTP) are replaced by those of the control
plane the test started; blocks that need PostgreSQL start their own replicas, each documented port
replaced by a free one and the documented database by a fresh one. Whatever a block leaves running
in the background (services started with `&`) is stopped at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import psycopg
import pytest

from control_plane.server import App
from tests.conftest import POSTGRES_URL
from tests.doc_blocks import DOCUMENTS, ROOT, RUN_ELSEWHERE, RUNNABLE, Block, blocks
from tests.ports import free_port

BLOCK_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0
DOCUMENTED_GRPC = "127.0.0.1:50051"
DOCUMENTED_HTTP = "127.0.0.1:50052"
DOCUMENTED_PORT = re.compile(r"127\.0\.0\.1:(5\d{4})\b")
DOCUMENTED_DATABASE = re.compile(r"(5432/|-U postgres )hms\b")


def runnable_documents() -> list[Path]:
    return [d for d in DOCUMENTS if any(b.action == "run" for b in blocks(d))]


def test_every_shell_and_python_block_is_run_or_skipped_for_a_reason() -> None:
    unmarked = [
        b.where
        for d in DOCUMENTS
        if str(d.relative_to(ROOT)) not in RUN_ELSEWHERE
        for b in blocks(d)
        if b.lang in RUNNABLE and b.action not in ("run", "skip")
    ]
    assert not unmarked, (
        f"mark these blocks `<!-- doc-test: run -->` or `<!-- doc-test: skip: WHY -->`: {unmarked}"
    )
    ran = [b for d in DOCUMENTS for b in blocks(d) if b.action == "run"]
    assert {b.lang for b in ran} >= {"sh", "python"}
    for document, test in RUN_ELSEWHERE.items():
        assert (ROOT / test).is_file(), f"{document} is said to be run by {test}, which does not exist"


class Terminal:
    """One working directory and the process groups its blocks started."""

    def __init__(self, work: Path, env: Mapping[str, str], replace: Mapping[str, str]) -> None:
        self.work = work
        self.env = dict(env)
        self.replace = dict(replace)
        self.groups: list[int] = []
        self.ports: dict[str, int] = {}  # documented port -> free port, in blocks that start replicas
        self.database = ""
        (work / ".venv").symlink_to(Path(sys.prefix))
        (work / "services").symlink_to(ROOT / "services")

    def text(self, block: Block) -> str:
        text = block.text
        if "postgres" in block.requires:
            text = DOCUMENTED_PORT.sub(lambda m: f"127.0.0.1:{self.port(m[1])}", text)
            return DOCUMENTED_DATABASE.sub(lambda m: f"{m[1]}{self.database}", text)
        for documented, actual in self.replace.items():
            text = text.replace(documented, actual)
        return text

    def port(self, documented: str) -> int:
        if documented not in self.ports:
            self.ports[documented] = free_port()
        return self.ports[documented]

    async def run(self, index: int, block: Block) -> str:
        if block.action == "file":
            (self.work / block.argument).write_text(block.text, encoding="utf-8")
            return ""
        if block.lang == "python":
            script = self.work / f"block_{index}.py"
            script.write_text(self.text(block), encoding="utf-8")
            argv = [sys.executable, str(script)]
        else:
            script = self.work / f"block_{index}.sh"
            script.write_text("set -euo pipefail\n" + self.text(block), encoding="utf-8")
            argv = ["bash", str(script)]
        output = self.work / f"block_{index}.out"
        with output.open("wb") as sink:
            # Output to a file, not a pipe: services a block leaves running in the background keep it open.
            child = await asyncio.create_subprocess_exec(
                *argv, cwd=self.work, env=self.env, stdout=sink, stderr=sink, start_new_session=True
            )
        self.groups.append(child.pid)
        try:
            async with asyncio.timeout(BLOCK_TIMEOUT_S):
                status = await child.wait()
        except TimeoutError:
            raise AssertionError(
                f"{block.where} did not end within {BLOCK_TIMEOUT_S:.0f} s:\n{output.read_text()}"
            ) from None
        printed = output.read_text(encoding="utf-8", errors="replace")
        assert status == 0, f"{block.where} exited with status {status}:\n{self.text(block)}\n---\n{printed}"
        for expected in block.expect:
            assert expected in printed, f"{block.where}: {expected!r} not in its output:\n{printed}"
        return printed

    async def stop(self) -> None:
        """SIGTERM every process group the blocks started, SIGKILL what is left after the grace."""
        for group in self.groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_TIMEOUT_S
        for group in self.groups:
            # Nothing signals the end of a process group whose leader is already reaped: poll, with a deadline.
            while _alive(group) and loop.time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # waits-on-purpose: no event marks a reaped group's end
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)


def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def database_for_the_docs() -> Iterator[str]:
    """A name the docs' `createdb` may use; the database is dropped after. Skips without PostgreSQL."""
    admin_url = os.environ.get("MGMT_TEST_POSTGRES_URL", POSTGRES_URL)
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("MGMT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required but not reachable at {admin_url}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {admin_url} (MGMT_TEST_POSTGRES_URL): the doc needs it")
    name = f"hms_doc_{uuid.uuid4().hex[:12]}"
    with admin:
        try:
            yield name
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def terminal(
    tmp_path: Path, replace: Mapping[str, str], env: Mapping[str, str]
) -> AsyncIterator[Terminal]:
    venv_bin = str(Path(sys.executable).parent)
    activated = {
        **os.environ,
        **env,
        "VIRTUAL_ENV": sys.prefix,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
    }
    shell = Terminal(tmp_path, activated, replace)
    try:
        yield shell
    finally:
        await shell.stop()


def documents_needing(postgres: bool) -> list[Path]:
    return [
        d
        for d in runnable_documents()
        if any("postgres" in b.requires for b in blocks(d) if b.action == "run") == postgres
    ]


async def run_in_order(shell: Terminal, document: Path) -> None:
    for index, block in enumerate(blocks(document)):
        if block.action in ("run", "file"):
            await shell.run(index, block)


@pytest.mark.store_independent(
    reason="that the documents' blocks run as written; the contract runs on both stores elsewhere"
)
@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "document", documents_needing(postgres=False), ids=lambda d: str(d.relative_to(ROOT))
)
async def test_the_blocks_of_a_document_run_as_written(document: Path, tmp_path: Path, server: App) -> None:
    http = (server.http_url or "").removeprefix("http://").rstrip("/")
    replace = {DOCUMENTED_GRPC: server.address, DOCUMENTED_HTTP: http}
    # The documented defaults (127.0.0.1:50051, the console on port 50052) point at this control plane.
    env = {"MGMT_SERVER": server.address, "MGMT_CONSOLE_URL": server.http_url or ""}
    async with terminal(tmp_path, replace, env) as shell:
        await run_in_order(shell, document)


@pytest.mark.postgres
@pytest.mark.timeout(600)
@pytest.mark.parametrize("document", documents_needing(postgres=True), ids=lambda d: str(d.relative_to(ROOT)))
async def test_the_blocks_of_a_postgresql_document_run_as_written(document: Path, tmp_path: Path) -> None:
    with database_for_the_docs() as database:
        async with terminal(tmp_path, {}, {}) as shell:
            shell.database = database
            await run_in_order(shell, document)
