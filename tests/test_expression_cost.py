"""What a CEL expression may cost: refused when registered, or when evaluated over too much data."""

from __future__ import annotations

import pytest

from control_plane.core.workflow.cel_shape import MAX_COST, MAX_DEPTH
from control_plane.core.workflow.expressions import ExpressionError, ExpressionRefused, compile_expression


@pytest.mark.parametrize(
    "text",
    [
        "1" + " + 1" * 20_000,  # compiles, then overflowed the evaluator's stack: the process died
        "a." * 30_000 + "b",  # overflowed the parser's stack
        "(" * 100_000 + "1" + ")" * 100_000,  # a Rust panic, which `except Exception` does not catch
        "1" + " + 1" * MAX_DEPTH,
    ],
)
def test_an_expression_nested_too_deeply_is_refused_before_cel_sees_it(text: str) -> None:
    with pytest.raises(ExpressionRefused, match="too deeply"):
        compile_expression(text)


@pytest.mark.parametrize(
    "text",
    [
        "input.items.all(x, input.items.exists(y, x == y))",
        "input.a.all(x, steps.s.output.b.all(y, y != x))",
        "input.a.map(x, input.a.filter(y, y > x))",
        "input.a.all(x, (x.items + input.b).all(y, y > 0))",
        "input.a.all(x, input.b.map(y, y).all(z, z > x))",
    ],
)
def test_comprehensions_nested_over_the_data_are_refused(text: str) -> None:
    with pytest.raises(ExpressionRefused, match="nested in another comprehension"):
        compile_expression(text)


@pytest.mark.parametrize(
    "text",
    [
        "input.orders.all(o, o.items.all(i, i.qty > 0))",  # over the outer item: all its runs walk it once
        "input.a.all(x, [1, 2, 3].exists(y, y == x))",  # over a literal
        "input.a.map(x, x * 2).all(y, y > 0)",  # one after the other
        "input.s.matches('.all(x, input.a.all(y, y))')",  # in a string: not code
    ],
)
def test_comprehensions_over_an_item_or_one_after_another_are_allowed(text: str) -> None:
    compile_expression(text)


COSTS = [
    # (expression, input that fits, input that does not)
    ("input.items.all(x, x in input.items)", list(range(200)), list(range(2_000))),
    ("input.items.map(x, x * 2).size() > 0", list(range(200)), list(range(2_000))),
    ("input.items.filter(x, x > 0).size() > 0", list(range(200)), list(range(2_000))),
    ("input.items.all(x, x > 0)", list(range(1, 10_000)), list(range(1, 100_000))),
    ("size(input.items) > 0", [{"a": 1}] * 1_000, [{"a": 1}] * 20_000),
    ("input.items.all(x, input.s.contains(x))", ["a"] * 100, ["a"] * 2_000),
]


@pytest.mark.parametrize(("text", "fits", "too_long"), COSTS)
def test_an_evaluation_too_costly_for_its_data_is_refused(
    text: str, fits: list[object], too_long: list[object]
) -> None:
    expression = compile_expression(text)
    expression.evaluate({"input": {"items": fits, "s": "a" * 10_000}})
    with pytest.raises(ExpressionError, match="too costly"):
        expression.evaluate({"input": {"items": too_long, "s": "a" * 10_000}})


def test_only_the_keys_an_expression_reads_count() -> None:
    expression = compile_expression("input.id == 'x'")
    huge = [{"k": n} for n in range(MAX_COST)]
    assert expression.evaluate({"input": {"id": "x", "huge": huge}}) is True
