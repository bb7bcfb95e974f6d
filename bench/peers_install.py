"""Installs the peers the bench compares the workflow engine with, into a cache folder of the bench's own.

Not `make install`, and not the project's virtual environment: the peers' libraries (restate-sdk,
hypercorn, dbos and what they pull in) must not become the project's dependencies. Under
MGMT_BENCH_CACHE (default ~/.cache/hms-mgmt-bench):
- `venv/`: a virtual environment with the pinned `PYPI` packages; the peers' Python children
  (`bench.peers_restate_app`, `bench.peers_dbos`) run on its interpreter, from the repository.
- `restate-server/`: `npm install` of the pinned `NPM` package; its platform package carries the
  server binary, which the bench runs directly (no node wrapper between it and its signals).
Each part is installed once per pinned set (a stamp file records it); a failed install leaves no
stamp, so the next run retries it. `python -m bench.peers_install` installs without measuring.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

CACHE_ENV = "MGMT_BENCH_CACHE"
PYPI = ("restate-sdk==1.3.0", "hypercorn==0.18.0", "dbos==3.4.0")
NPM = "@restatedev/restate-server@1.7.12"
_STAMP = ".hms-bench-installed"
_INSTALL_TIMEOUT_S = 900.0


class PeerInstallError(RuntimeError):
    """A peer could not be installed; the message says what failed and how."""


@dataclass(frozen=True, slots=True)
class Peers:
    """Where the installed peers are: the venv's interpreter and the Restate server binary."""

    python: Path
    restate_server: Path


def cache_dir() -> Path:
    """The bench's cache folder."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "hms-mgmt-bench"


async def _run(what: str, argv: list[str], cwd: Path | None = None) -> None:
    """Run an install command; PeerInstallError with the tail of its output if it fails."""
    logger.info("%s: %s", what, " ".join(argv))
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(_INSTALL_TIMEOUT_S):
            output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.returncode != 0:
        tail = "\n".join(output.decode(errors="replace").splitlines()[-20:])
        raise PeerInstallError(f"{what} failed (status {process.returncode}):\n{tail}")


def _installed(directory: Path, spec: str) -> bool:
    stamp = directory / _STAMP
    return stamp.exists() and stamp.read_text() == spec


async def python_peers(cache: Path) -> Path:
    """The interpreter of the peers' venv, created and filled with `PYPI` if not yet."""
    venv = cache / "venv"
    python = venv / "bin" / "python"
    spec = "\n".join(PYPI)
    if not _installed(venv, spec):
        await _run("peers venv", [sys.executable, "-m", "venv", "--clear", str(venv)])
        await _run("peers venv", [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
        await _run("peers venv", [str(python), "-m", "pip", "install", "--quiet", *PYPI])
        (venv / _STAMP).write_text(spec)
    return python


async def restate_server(cache: Path) -> Path:
    """The restate-server binary, installed from npm if not yet."""
    directory = cache / "restate-server"
    if not _installed(directory, NPM):
        npm = shutil.which("npm")
        if npm is None:
            raise PeerInstallError(
                "npm not found: the Restate server is installed from npm (apt-get install npm)"
            )
        directory.mkdir(parents=True, exist_ok=True)
        (directory / _STAMP).unlink(missing_ok=True)
        # --ignore-scripts: the binary ships in a platform package; no install script is needed.
        argv = [
            npm,
            "install",
            "--prefix",
            str(directory),
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            NPM,
        ]
        await _run("restate-server", argv, cwd=directory)
        (directory / _STAMP).write_text(NPM)
    found = sorted((directory / "node_modules" / "@restatedev").glob("restate-server-*/bin/restate-server"))
    if not found:
        raise PeerInstallError(f"no restate-server binary for this platform under {directory}/node_modules")
    return found[0]


async def ensure() -> Peers:
    """Install what is missing and say where the peers are."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    logger.info("peers in %s (%s to change)", cache, CACHE_ENV)
    return Peers(await python_peers(cache), await restate_server(cache))


def main() -> None:
    """`python -m bench.peers_install`: install the peers and print where they are."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    peers = asyncio.run(ensure())
    print(f"python {peers.python}\nrestate-server {peers.restate_server}")


if __name__ == "__main__":
    main()
