"""Expressions that only select fields are followed in Python: the same answers and errors as CEL's."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from control_plane.core.workflow.expressions import ExpressionError, compile_expression

ACTIVATION: dict[str, Any] = {
    "input": {
        "id": "a1",
        "cost": 12000.5,
        "count": 3,
        "nested": {"list": [1, {"x": None}], "flag": True},
        "huge": 2**70,  # CEL has no such integer: it answers with a double
        "text": "not a map",
    },
    "steps": {"s1": {"output": {"receipt": "r-1", "items": [1, 2]}}},
}
PATHS = [
    "input",
    "input.id",
    " input . nested.list ",
    "input.nested",
    "input.count",
    "steps.s1.output",
    "steps.s1.output.items",
    "input.huge",
    "input.missing",  # no such key
    "input.text.length",  # a field of a string
    "steps.s2.output",  # a step that has not run
]


def by_cel(text: str) -> Any:
    """The expression evaluated by the CEL core alone (the path not followed)."""
    compiled = dataclasses.replace(compile_expression(text), path=None)
    try:
        return compiled.evaluate(ACTIVATION)
    except ExpressionError as exc:
        return f"error: {exc}"


@pytest.mark.parametrize("text", PATHS)
def test_a_field_path_evaluates_as_cel_does(text: str) -> None:
    compiled = compile_expression(text)
    try:
        got: Any = compiled.evaluate(ACTIVATION)
    except ExpressionError as exc:
        got = f"error: {exc}"

    assert compiled.path is not None
    assert got == by_cel(text)
    assert type(got) is type(by_cel(text))


def test_a_followed_value_is_a_copy_not_the_process_data() -> None:
    value = compile_expression("steps.s1.output").evaluate(ACTIVATION)
    value["items"].append(3)

    assert ACTIVATION["steps"]["s1"]["output"]["items"] == [1, 2]


@pytest.mark.parametrize(
    "text", ["input.count + 1", "steps['s1'].output", "input.nested.list[0]", "has(input.id)"]
)
def test_anything_but_a_field_path_is_left_to_cel(text: str) -> None:
    assert compile_expression(text).path is None
