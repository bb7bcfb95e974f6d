"""The console's graph layout: a definition as lanes of boxes, coloured by a process's step states."""

from __future__ import annotations

from control_plane.console.flow import Box, Fork, layout
from control_plane.core.workflow.parser import parse_definition
from control_plane.models import StepRun, StepState

DEFINITION = parse_definition(
    """
name: shapes
steps:
  - id: pay
    task: {service: Payments, type: charge, version: ">=1.0,<2"}
    compensate: {service: Payments, type: refund}
  - id: route
    choice:
      - when: "input.big"
        steps: [{id: review, task: {service: Docs, type: review}}]
  - id: both
    parallel:
      - steps: [{id: left, sleep: 5m}]
      - steps: [{id: right, wait_signal: {name: go, timeout: 14d}}]
"""
)


def test_a_definition_alone_is_drawn_without_states() -> None:
    flow = layout(DEFINITION)

    pay, route, both = flow.items
    assert isinstance(pay, Box) and pay.lines == (
        "task: Payments/charge >=1.0,<2",
        "compensate: Payments/refund",
    )
    assert pay.state == "" and pay.drawn_as == "not_reached"
    assert isinstance(route, Fork) and not route.joins
    assert [lane.label for lane in route.lanes] == ["input.big", "otherwise"]  # no default: it may pass
    assert isinstance(both, Fork) and both.joins
    left, right = (lane.items[0] for lane in both.lanes)
    assert isinstance(left, Box) and left.lines == ("sleep: 5m",)
    assert isinstance(right, Box) and right.lines == ("wait_signal: go", "timeout: 14d")


def test_a_process_colours_each_step_by_its_state() -> None:
    runs = {
        "pay": StepRun("pay", StepState.COMPENSATED, attempts=2),
        "route": StepRun("route", StepState.COMPLETED),
        "review": StepRun("review", StepState.FAILED, attempts=3),
    }

    flow = layout(DEFINITION, runs)

    pay, route, both = flow.items
    assert isinstance(pay, Box) and (pay.drawn_as, pay.state, pay.attempts) == (
        "compensated",
        "compensated",
        2,
    )
    assert isinstance(route, Fork) and route.box.drawn_as == "done"
    review = route.lanes[0].items[0]
    assert isinstance(review, Box) and review.drawn_as == "failed"
    assert isinstance(both, Fork) and (both.box.drawn_as, both.box.state) == ("not_reached", "pending")
