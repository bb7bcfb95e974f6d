"""Definitions compiled off the event loop: large ones checked in a child process with a time limit."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import pytest

from control_plane.core.workflow.compiler import DefinitionCompiler
from control_plane.core.workflow.parser import parse_definition
from control_plane.errors import InvalidArgument, ResourceExhausted, Unavailable
from tests.test_hostile_requests import big_definition

SOURCE = """\
name: checked
input_schema: {type: object, properties: {n: {type: integer}}}
steps:
  - id: pick
    choice:
      - when: "input.n > 1"
        steps: [{id: big, task: {service: S, type: t}, input: {n: "input.n"}}]
    default: [{id: small, sleep: 1s}]
output: {n: "input.n"}
"""


@pytest.fixture
async def compiler() -> AsyncIterator[DefinitionCompiler]:
    """A compiler that sends every source to its child process."""
    compiler = DefinitionCompiler(small_source=0)
    yield compiler
    await compiler.close()


async def test_a_large_definition_is_checked_in_the_child_and_compiled_here(
    compiler: DefinitionCompiler,
) -> None:
    compiled = await compiler.compile(SOURCE)
    direct = parse_definition(SOURCE)
    assert (compiled.name, compiled.digest, compiled.spec) == (direct.name, direct.digest, direct.spec)
    choice = compiled.step("pick").branches[0].when
    assert choice is not None and choice.holds({"input": {"n": 2}, "steps": {}})
    compiled.check_input({"n": 2})
    again = await compiler.compile(SOURCE.replace("checked", "again"))  # the same child, again
    assert again.name == "again"


async def test_a_large_invalid_definition_names_every_problem_and_its_line(
    compiler: DefinitionCompiler,
) -> None:
    source = SOURCE.replace("input.n > 1", "input.n >").replace("sleep: 1s", "sleep: soon")
    with pytest.raises(InvalidArgument) as caught:
        await compiler.compile(source)
    fields = {v.field: v.description for v in caught.value.violations}
    assert set(fields) == {"steps[0].choice[0].when", "steps[0].default[0].sleep"}
    assert "(line 6)" in fields["steps[0].choice[0].when"]


async def test_a_check_past_its_time_limit_is_stopped() -> None:
    compiler = DefinitionCompiler(time_limit_s=0.05, small_source=1024)
    try:
        with pytest.raises(ResourceExhausted, match=r"longer than 0\.05 s"):
            await compiler.compile(big_definition())
        assert (await compiler.compile(SOURCE)).name == "checked"  # small: not through the child
    finally:
        await compiler.close()


async def test_a_definition_that_kills_the_checker_is_refused() -> None:
    # A checker that dies on what it reads, as a crash in a parser would.
    dies = (sys.executable, "-c", "import os, sys; sys.stdin.buffer.read(4); os._exit(3)")
    compiler = DefinitionCompiler(small_source=0, child_command=dies)
    try:
        with pytest.raises(InvalidArgument, match="checker failed on it"):
            await compiler.compile(SOURCE)
        with pytest.raises(InvalidArgument, match="checker failed"):
            await compiler.compile(SOURCE)  # a new child for the next source
    finally:
        await compiler.close()


async def test_after_close_large_sources_are_refused() -> None:
    compiler = DefinitionCompiler(small_source=0)
    await compiler.close()
    await compiler.close()
    with pytest.raises(Unavailable):
        await compiler.compile(SOURCE)
