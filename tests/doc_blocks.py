"""The fenced blocks of the docs and what a test does with each: the marker convention.

An HTML comment on the line just before a fence says what the doc-block test does with the block:

    <!-- doc-test: run -->                      run it (sh in bash, python with the venv's Python)
    <!-- doc-test: run; expect: COMPLETED -->   ... and its output must contain "COMPLETED"
    <!-- doc-test: run; requires: postgres -->  ... on PostgreSQL, with replicas the block starts itself
    <!-- doc-test: file: permit.yaml -->        write it to permit.yaml, for the blocks after it
    <!-- doc-test: skip: REASON -->             do not run it, for the reason given (the rest of the line)

Every ```sh, ```bash and ```python block of a document in DOCUMENTS must carry `run` or `skip` with a
reason, so a new snippet cannot go untested by accident. Blocks run in order in one working
directory, as a reader would paste them into one terminal with the venv activated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = (
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "services" / "README.md",
    ROOT / "clients" / "python" / "README.md",
)
# Documents whose blocks another test runs in its own way (each command's answer checked).
RUN_ELSEWHERE = {"docs/grpcurl.md": "tests/test_grpcurl_walkthrough.py"}
RUNNABLE = frozenset({"sh", "bash", "python"})

_MARKER = re.compile(r"^<!--\s*doc-test:\s*(?P<spec>.*?)\s*-->\s*$")
_FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced block with what its marker asks."""

    document: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    action: str = ""  # run, skip, file, or "" without a marker
    argument: str = ""  # the reason of a skip, the file name of a file
    expect: tuple[str, ...] = ()
    requires: frozenset[str] = field(default_factory=frozenset)

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def _parse_marker(spec: str, where: str) -> tuple[str, str, tuple[str, ...], frozenset[str]]:
    action, argument = "", ""
    expect: list[str] = []
    requires: set[str] = set()
    if spec.startswith("skip:"):  # the reason is free text, semicolons included
        return "skip", spec.removeprefix("skip:").strip(), (), frozenset()
    for part in (p.strip() for p in spec.split(";")):
        key, _, value = part.partition(":")
        key, value = key.strip(), value.strip()
        if key == "run" and not value:
            action = "run"
        elif key in ("skip", "file"):
            action, argument = key, value
        elif key == "expect":
            expect.append(value)
        elif key == "requires":
            requires.update(v.strip() for v in value.split(","))
        else:
            raise ValueError(f"{where}: unknown doc-test marker part {part!r}")
    if action in ("skip", "file") and not argument:
        raise ValueError(f"{where}: `{action}:` needs a {'reason' if action == 'skip' else 'file name'}")
    if not action:
        raise ValueError(f"{where}: a doc-test marker needs run, skip: REASON or file: NAME")
    return action, argument, tuple(expect), frozenset(requires)


def blocks(document: Path) -> list[Block]:
    """The fenced blocks of `document`, in order, each with its marker (if any)."""
    lines = document.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        start = index
        index += 1
        while index < len(lines) and lines[index].rstrip() != "```":
            index += 1
        text = "\n".join(lines[start + 1 : index]) + "\n"
        where = f"{document.relative_to(ROOT)}:{start + 1}"
        marker = _MARKER.match(lines[start - 1]) if start > 0 else None
        if marker is None:
            found.append(Block(document, start + 1, fence["lang"], text))
        else:
            action, argument, expect, requires = _parse_marker(marker["spec"], where)
            found.append(Block(document, start + 1, fence["lang"], text, action, argument, expect, requires))
        index += 1
    return found
