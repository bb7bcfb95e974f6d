"""Fixtures: a real control plane on a free port, in-process or as a child process."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

from control_plane.server import App, running
from control_plane.settings import RegistrySettings, Settings
from control_plane.storage import Store, open_store
from hms_mgmt import Client
from tests.workflow_support import Services

READY = re.compile(r"mgmt listening on (\S+)")

# MGMT_TEST_STORE=postgres (`make test-postgres`) puts the control planes and stores of these fixtures on
# PostgreSQL; every other fixture, and so every test that uses none of them, behaves the same as in the
# SQLite pass (`make test`), which already ran it. The PostgreSQL pass deselects those tests (see
# pytest_collection_modifyitems): nothing to declare per test, so a new test that starts a control plane
# through `settings` (or `server`, `client`, `services`, built on it) is in both passes by construction.
ON_POSTGRES = os.environ.get("MGMT_TEST_STORE") == "postgres"
STORE_FIXTURES = frozenset(
    {"settings", "postgres_url", "contract_database", "control_plane_database", "store_args"}
)
# .ci/run sets MGMT_POSTGRES_PASS_BESIDE=1 for `make test` while `make test-postgres` runs beside it:
# the PostgreSQL half of the store contract (marked postgres), which that pass runs anyway, is then
# left to it rather than run twice (about 100 tests, 150 s of the SQLite pass on the loaded CI machine).
POSTGRES_PASS_BESIDE = not ON_POSTGRES and os.environ.get("MGMT_POSTGRES_PASS_BESIDE") == "1"
# The CLI's tests check how `mgmt` parses its arguments and prints what the control plane answered; the
# answers themselves are checked on each store by the servicers' and the stores' tests.
CLI_OUTPUT = pytest.mark.store_independent(
    reason="the CLI's parsing and printing of the answers; servicer and store tests check the answers on each store"
)


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings for a loopback control plane on a free port with fast timers.

    With MGMT_TEST_STORE=postgres every test using this fixture runs on a PostgreSQL database of its
    own, as a new one would be (see control_plane_database).
    """
    store_url = request.getfixturevalue("control_plane_database") if ON_POSTGRES else None
    return Settings(
        listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        data_dir=tmp_path / "data",
        store_url=store_url,
        shutdown_grace_s=0.5,
        registry=RegistrySettings(progress_interval_s=0.5),
    )


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[App]:
    """A control plane running in this event loop."""
    async with running(settings) as app:
        yield app


@pytest.fixture
async def client(server: App) -> AsyncIterator[Client]:
    """An SDK client connected to `server`."""
    async with Client(server.address) as c:
        yield c


def with_registry(settings: Settings, **changes: Any) -> Settings:
    """`settings` with some registry knobs changed."""
    return replace(settings, registry=replace(settings.registry, **changes))


class ServerProcess:
    """`python -m control_plane serve` as a child process; ready once it logs where it listens."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.data_dir = data_dir
        self.extra = extra
        self.process: asyncio.subprocess.Process | None = None
        self.address = ""
        self.log: list[str] = []
        # Set by `follow`: reads the log as it is written, and sets (then replaces) `logged` per line.
        self.logged = asyncio.Event()
        self._follower: asyncio.Task[None] | None = None

    async def start(self, timeout_s: float = 20.0) -> str:
        """Start and wait for the readiness line; returns host:port."""
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "control_plane",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(self.data_dir),
            "--http-listen",
            "127.0.0.1:0",
            *self.extra,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stderr is not None
        async with asyncio.timeout(timeout_s):
            while True:
                line = (await self.process.stderr.readline()).decode()
                if not line:
                    raise RuntimeError("control plane exited before it was ready:\n" + "".join(self.log))
                self.log.append(line)
                match = READY.search(line)
                if match:
                    self.address = match.group(1)
                    return self.address

    def follow(self) -> None:
        """Read the log from now on as it is written, for a test that waits on what it says."""
        assert self.process is not None and self.process.stderr is not None
        stderr = self.process.stderr

        async def read() -> None:
            while line := (await stderr.readline()).decode():
                self.log.append(line)
                self.logged.set()
                self.logged = asyncio.Event()

        self._follower = asyncio.ensure_future(read())

    async def stop(self, signum: int = signal.SIGTERM, timeout_s: float = 10.0) -> int:
        """Send `signum` and wait for the exit status."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signum)
        assert self.process.stderr is not None
        async with asyncio.timeout(timeout_s):
            if self._follower is not None:
                await self._follower  # it reads to the end
            else:
                rest = await self.process.stderr.read()
                self.log.append(rest.decode())
            return await self.process.wait()


@pytest.fixture
def store_args(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """The `serve` flags that put a child control plane on the store of this pass: a fresh PostgreSQL
    database with MGMT_TEST_STORE=postgres, else none (SQLite in its data directory)."""
    return ("--store", request.getfixturevalue("postgres_url")) if ON_POSTGRES else ()


@pytest.fixture
async def server_process(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[ServerProcess]]]:
    """Factory of started child control planes; every one is killed at the end."""
    started: list[ServerProcess] = []

    async def start(*extra: str, data_dir: Path | None = None) -> ServerProcess:
        proc = ServerProcess(data_dir or tmp_path / "data", *extra)
        started.append(proc)
        await proc.start()
        return proc

    yield start
    for proc in started:
        if proc.process is not None and proc.process.returncode is None:
            await proc.stop(signal.SIGKILL)


@pytest.fixture
async def services(client: Client) -> AsyncIterator[Services]:
    s = Services(client)
    yield s
    await s.stop()


POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new PostgreSQL database (dropped after); skips the test when no server answers.

    The server comes from MGMT_TEST_POSTGRES_URL; with MGMT_REQUIRE_POSTGRES=1 a missing server fails
    the test instead of skipping it.
    """
    admin_url = os.environ.get("MGMT_TEST_POSTGRES_URL", POSTGRES_URL)
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("MGMT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required but not reachable at {admin_url}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {admin_url} (MGMT_TEST_POSTGRES_URL)")
    name = f"hms_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield admin_url.rsplit("/", 1)[0] + "/" + name
        finally:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (dropped after); skipped when no server answers."""
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def contract_database() -> Iterator[str]:
    """One PostgreSQL database for the whole store contract suite, emptied before each test.

    Creating and migrating a database costs about a second; emptying one costs milliseconds, and the
    contract suite has several tests per store method on each backend.
    """
    with postgres_database() as url:
        yield url


class Databases:
    """Migrated databases for in-process control planes, each used by one test at a time.

    Creating, migrating and dropping a database per test cost about a second (CREATE DATABASE,
    14 migrations, DROP) on each of the ~450 tests of the PostgreSQL pass that use `settings`. A
    database handed out again is first freed of every connection left on it and emptied to the state
    its migrations left (empty_database: no sequences, the counters back to 0), so a test finds what
    a new database would hold. Tests that check migrations or start child control planes (which
    may outlive a test's teardown) use postgres_url, a new database each time.
    """

    def __init__(self) -> None:
        self._free: list[str] = []
        self._made: ExitStack = ExitStack()

    def take(self) -> str:
        if not self._free:
            return self._made.enter_context(postgres_database())  # the control plane migrates it
        url = self._free.pop()
        with psycopg.connect(url, autocommit=True) as conn:
            # Waits (up to 10 s each) until the connections a control plane of the last test left are gone.
            conn.execute(
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        empty_database(url)
        return url

    def give_back(self, url: str) -> None:
        self._free.append(url)

    def close(self) -> None:
        self._made.close()


@pytest.fixture(scope="session")
def databases() -> Iterator[Databases]:
    """The session's pool of control plane databases (dropped at the end)."""
    pool = Databases()
    yield pool
    pool.close()


@pytest.fixture
def control_plane_database(databases: Databases) -> Iterator[str]:
    """A PostgreSQL database holding what a new migrated one holds, for one test's control planes."""
    url = databases.take()
    yield url
    databases.give_back(url)


def empty_database(url: str) -> None:
    """Remove every row the store wrote (the schema and its migrations stay), and zero the counters."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename NOT IN ('schema_migrations', 'counters')"
            )
        ]
        # DELETE rather than TRUNCATE: for a few rows it takes milliseconds, TRUNCATE a few hundred.
        with conn.transaction():
            for table in tables:
                conn.execute(f'DELETE FROM "{table}"')
            if tables:
                conn.execute("UPDATE counters SET value = 0")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store, once per backend: the store contract runs on both in the same run."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("contract_database")
        empty_database(url)
        return url
    return f"sqlite:///{tmp_path / 'cp.db'}"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """An opened, empty store on each backend; closed after the test."""
    opened = await open_store(store_url)
    yield opened
    await opened.close()


def uses_the_store(item: pytest.Item) -> bool:
    """Whether `item`'s outcome can depend on the store MGMT_TEST_STORE selects.

    True when it uses one of STORE_FIXTURES (directly or through another fixture) or is marked
    `postgres` (the PostgreSQL half of the store contract) or `postgres_pass`. The SQLite half of the
    contract (`store_url` pinned to sqlite) is the same in both passes, and so is a test marked
    `store_independent` (a control plane serves it, but what it checks is not the store's doing).
    """
    if item.get_closest_marker("postgres") or item.get_closest_marker("postgres_pass"):
        return True
    if item.get_closest_marker("store_independent"):
        return False
    callspec = getattr(item, "callspec", None)
    pinned = callspec.params.get("store_url") if callspec is not None else None
    fixtures = set(getattr(item, "fixturenames", ()))
    return bool(fixtures & STORE_FIXTURES) and pinned != "sqlite"


_DESELECTED = pytest.StashKey[int]()
_PG_ONLY = pytest.mark.skip(
    reason="replicas share PostgreSQL: make test-postgres runs it (MGMT_TEST_STORE=postgres)"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the PostgreSQL-pass-only tests in the SQLite pass; in the PostgreSQL pass, deselect the tests
    whose outcome does not depend on the store."""
    if not ON_POSTGRES:
        for item in items:
            if item.get_closest_marker("postgres_pass"):
                item.add_marker(_PG_ONLY)
        if POSTGRES_PASS_BESIDE:
            _deselect(config, items, [item for item in items if item.get_closest_marker("postgres")])
        return
    for item in items:
        marker = item.get_closest_marker("store_independent")
        if marker is not None and not marker.kwargs.get("reason"):
            raise pytest.UsageError(f"{item.nodeid}: store_independent needs a reason= saying why")
    _deselect(config, items, [item for item in items if not uses_the_store(item)])


def _deselect(config: pytest.Config, items: list[pytest.Item], dropped: list[pytest.Item]) -> None:
    config.stash[_DESELECTED] = len(dropped)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        gone = set(dropped)
        items[:] = [item for item in items if item not in gone]


def pytest_report_collectionfinish(config: pytest.Config) -> str | None:
    """Say how many tests this pass left out, and why (CI logs show it)."""
    dropped = config.stash.get(_DESELECTED, 0)
    if not dropped:
        return None
    if POSTGRES_PASS_BESIDE:
        return (
            f"MGMT_POSTGRES_PASS_BESIDE=1: deselected the {dropped} tests marked postgres (the PostgreSQL "
            "half of the store contract): make test-postgres, running beside, runs them"
        )
    return (
        f"MGMT_TEST_STORE=postgres: deselected {dropped} tests that use none of "
        f"{', '.join(sorted(STORE_FIXTURES))} or are marked store_independent, and are marked neither "
        "postgres nor postgres_pass (their outcome does not depend on the store; make test runs them)"
    )
