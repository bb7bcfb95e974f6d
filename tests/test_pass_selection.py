"""The PostgreSQL pass keeps a test by the fixtures it uses and its markers (tests/conftest.py).

A test that reached the store another way (reading MGMT_TEST_STORE itself, asking for a PostgreSQL
database from a fixture the pass does not know) would be left out of that pass without a word: these
checks fail instead, and say where.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import STORE_FIXTURES

TESTS = Path(__file__).parent
READS_THE_PASS = re.compile(r"""(environ\b.*|getenv\(\s*)["']MGMT_TEST_STORE["']""")
# The fixtures that hand out a PostgreSQL database.
DATABASES = {"postgres_url", "contract_database", "control_plane_database"}


def sources() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "node_modules" not in p.parts and p != Path(__file__))


def test_only_the_conftest_reads_which_store_the_pass_uses() -> None:
    readers = [
        f"{path.relative_to(TESTS)}:{n}"
        for path in sources()
        if path != TESTS / "conftest.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if READS_THE_PASS.search(line)
    ]
    assert readers == [], (
        "use the conftest's fixtures (settings, store_args, postgres_url), ON_POSTGRES or the "
        f"postgres_pass marker instead: {readers}"
    )


def _marks_postgres(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether a decorator parametrizes `function` with a param marked postgres (the pass keeps those)."""
    return any("mark.postgres" in ast.unparse(decorator) for decorator in function.decorator_list)


def test_a_database_is_asked_for_by_name_only_where_the_pass_sees_it() -> None:
    """request.getfixturevalue("postgres_url") hides the fixture from the test's fixture names."""
    hidden = []
    for path in sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for call in ast.walk(function):
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and call.func.attr == "getfixturevalue"
                    and any(isinstance(a, ast.Constant) and a.value in DATABASES for a in call.args)
                    and function.name not in STORE_FIXTURES
                    and not _marks_postgres(function)
                ):
                    hidden.append(f"{path.relative_to(TESTS)}:{call.lineno} in {function.name}")
    assert hidden == [], f"add the fixture to STORE_FIXTURES or mark its PostgreSQL param postgres: {hidden}"


def test_beside_the_postgresql_pass_the_sqlite_pass_leaves_it_the_postgresql_half_of_the_contract() -> None:
    """.ci/run: each half of the store contract runs once, the PostgreSQL one in the PostgreSQL pass."""
    environment = {k: v for k, v in os.environ.items() if k != "MGMT_TEST_STORE"}
    contract = str(TESTS / "test_store_schedules.py")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider", contract],
        capture_output=True,
        text=True,
        env=environment | {"MGMT_POSTGRES_PASS_BESIDE": "1"},
        timeout=120,
        check=True,
    )
    collected = [line for line in done.stdout.splitlines() if "::" in line]

    assert collected != [] and all(test.endswith("[sqlite]") for test in collected), collected
    # Each test of the contract has one PostgreSQL run beside its SQLite one.
    assert f"deselected the {len(collected)} tests marked postgres" in done.stdout, done.stdout
