"""`pip install ./clients/python` into an empty venv brings only grpcio, protobuf, grpcio-status and what
they need, and the README's SDK script runs with it against a real control plane.

The venv is made with the interpreter running the tests, without pip of its own: the pip of the
test environment installs into it (`pip --python`), as the venv's would, from its usual index and the
shared pip cache, so after the first run nothing is downloaded. (Seeding a venv with pip by ensurepip
cost 3 s CPU, 10 s wall on the loaded CI machine, for a pip that would then do the same.) Only when
a venv cannot be made at all (no `venv` module) is the test skipped, with the reason.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from control_plane.server import App
from tests.doc_blocks import ROOT, blocks

CLIENT = ROOT / "clients" / "python"
ALLOWED_ROOTS = {"grpcio", "protobuf", "grpcio-status"}
VENV_TOOLS = {"pip", "setuptools", "wheel"}  # what `python -m venv` puts there when it seeds pip
INSTALL_TIMEOUT_S = 300.0


def run(argv: list[str], cwd: Path, timeout_s: float = INSTALL_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout_s, check=False)


def make_venv(where: Path) -> Path:
    made = run([sys.executable, "-m", "venv", "--without-pip", str(where)], cwd=where.parent, timeout_s=120)
    if made.returncode != 0:
        pytest.skip(
            f"cannot create a virtual environment here ({sys.executable} -m venv): {made.stderr.strip()}"
        )
    return where / "bin" / "python"


def site_packages(python: Path) -> Path:
    found = run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=python.parent
    )
    return Path(found.stdout.strip())


def closure(roots: set[str], installed: dict[str, metadata.Distribution]) -> set[str]:
    """`roots` and everything they require (markers evaluated for this Python), by canonical name."""
    seen: set[str] = set()
    todo = [canonicalize_name(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen or name not in installed:
            continue
        seen.add(name)
        for text in installed[name].requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(requirement.name))
    return seen


def readme_sdk_script() -> str:
    """The README's runnable Python block: the SDK script."""
    scripts = [b.text for b in blocks(ROOT / "README.md") if b.action == "run" and b.lang == "python"]
    assert len(scripts) == 1, "the README has one runnable SDK script"
    return scripts[0]


@pytest.mark.store_independent(reason="what the SDK needs installed; the control plane only answers it")
@pytest.mark.timeout(600)
async def test_the_client_alone_in_an_empty_venv_needs_only_grpc_and_protobuf(
    tmp_path: Path, server: App
) -> None:
    python = await asyncio.to_thread(make_venv, tmp_path / "venv")
    # Installed from a copy, so that pip's in-tree build leaves nothing in the checkout.
    source = tmp_path / "hms-mgmt-client"
    shutil.copytree(
        CLIENT, source, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__", "dist")
    )
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    installed_by_pip = await asyncio.to_thread(run, [*pip, "install", "-q", str(source)], tmp_path)
    assert installed_by_pip.returncode == 0, installed_by_pip.stderr

    packages = site_packages(python)
    installed: dict[str, metadata.Distribution] = {
        str(canonicalize_name(d.metadata["Name"])): d for d in metadata.distributions(path=[str(packages)])
    }
    client = installed["hms-mgmt-client"]
    assert {canonicalize_name(Requirement(r).name) for r in client.requires or []} == ALLOWED_ROOTS
    allowed = closure(ALLOWED_ROOTS, installed) | {"hms-mgmt-client"} | VENV_TOOLS
    assert set(installed) - allowed == set(), (
        f"installed beyond grpcio, protobuf, grpcio-status: {sorted(installed)}"
    )
    assert set(installed) >= ALLOWED_ROOTS

    # The server is not there: the SDK runs without it (and the checkout is not on the path).
    alone = await asyncio.to_thread(run, [str(python), "-c", "import control_plane"], tmp_path)
    assert alone.returncode != 0 and "No module named 'control_plane'" in alone.stderr

    script = tmp_path / "sdk_script.py"
    script.write_text(readme_sdk_script().replace("127.0.0.1:50051", server.address), encoding="utf-8")
    child = await asyncio.create_subprocess_exec(
        str(python), str(script), cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(120):
        out, err = await child.communicate()
    assert child.returncode == 0, err.decode()
    assert out.decode().startswith("COMPLETED {'receipt': 'r-"), out.decode()
