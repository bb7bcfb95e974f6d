"""Mermaid flowcharts of definitions, checked line by line with a tiny parser of the subset we emit."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from control_plane.core.workflow.definition import Definition, StepKind
from control_plane.core.workflow.parser import parse_definition
from control_plane.graph import STYLES, mermaid

PERMIT = """
name: permit-graph
steps:
  - id: check-docs
    task: {service: Docs, type: validate}
  - id: charge_fee
    task: {service: Pay, type: charge}
    compensate: {service: Pay, type: refund}
  - id: size
    choice:
      - when: 'input.cost > 100000 && input.kind == "large"'
        steps:
          - id: review
            task: {service: Review, type: review, version: ">=2.0,<3"}
    default:
      - id: fast-track
        sleep: 10ms
  - id: prepare
    parallel:
      - steps:
          - {id: assign, task: {service: Inspect, type: assign}}
      - steps:
          - {id: notify, task: {service: Notify, type: notice}}
          - {id: cool-off, sleep: 1s}
  - id: result
    wait_signal: {name: inspection_result, timeout: 24h}
  - id: maybe
    choice:
      - when: 'steps.result.output.approved == true'
        steps:
          - {id: end, task: {service: Notify, type: decision}}
  - id: charge-fee
    sleep: 5ms
"""

SHAPES = {
    StepKind.TASK: ("[", "]"),
    StepKind.CHOICE: ("{", "}"),
    StepKind.PARALLEL: ("{{", "}}"),
    StepKind.WAIT_SIGNAL: (">", "]"),
    StepKind.SLEEP: ("([", "])"),
}

_NODE = re.compile(
    r'(?P<id>[A-Za-z][A-Za-z0-9_]*)(?P<open>\(\(|\(\[|\{\{|\[|\{|>)"(?P<label>[^"]*)"(?P<close>.*)'
)
_EDGE = re.compile(r'(?P<source>\S+) -->(?:\|"(?P<label>[^"]*)"\|)? (?P<target>\S+)')
_CLASS_DEF = re.compile(r"classDef (?P<name>[A-Za-z_]\w*) (?P<style>\S.*)")
_CLASS = re.compile(r"class (?P<nodes>[\w,]+) (?P<name>[A-Za-z_]\w*)")
_CLOSING = {"((": "))", "([": "])", "{{": "}}", "[": "]", "{": "}", ">": "]"}


@dataclass
class Chart:
    """What a flowchart declares: nodes with shape and label, edges, class definitions and assignments."""

    nodes: dict[str, tuple[str, str]] = field(default_factory=dict)
    edges: list[tuple[str, str | None, str]] = field(default_factory=list)
    class_defs: dict[str, str] = field(default_factory=dict)
    classes: dict[str, list[str]] = field(default_factory=dict)

    def node_of(self, step_id: str) -> str:
        """The node whose label starts with `step_id` (not the start and end circles)."""
        found = [
            n
            for n, (shape, label) in self.nodes.items()
            if shape != "((" and label.split("<br/>")[0] == step_id
        ]
        assert len(found) == 1, f"{step_id}: {found}"
        return found[0]

    def out(self, node: str) -> list[tuple[str | None, str]]:
        """Edges leaving `node`, as (label, target)."""
        return [(label, target) for source, label, target in self.edges if source == node]

    def into(self, node: str) -> list[str]:
        """Sources of the edges entering `node`."""
        return [source for source, _, target in self.edges if target == node]


def parse(text: str) -> Chart:
    """Read a flowchart, failing on any line that is not a node, an edge, a classDef or a class line."""
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    chart = Chart()
    for line in lines[1:]:
        body = line.strip()
        if match := _CLASS_DEF.fullmatch(body):
            assert match["name"] not in chart.class_defs, line
            chart.class_defs[match["name"]] = match["style"]
        elif match := _CLASS.fullmatch(body):
            chart.classes.setdefault(match["name"], []).extend(match["nodes"].split(","))
        elif match := _EDGE.fullmatch(body):
            chart.edges.append((match["source"], match["label"], match["target"]))
        elif match := _NODE.fullmatch(body):
            assert match["close"] == _CLOSING[match["open"]], line
            assert match["id"] not in chart.nodes, f"node declared twice: {line}"
            chart.nodes[match["id"]] = (match["open"], match["label"])
        else:
            raise AssertionError(f"not a line of the Mermaid subset: {line!r}")
    return chart


def check_wiring(chart: Chart) -> None:
    """Edges join declared nodes; every node lies on a path from the start node to the end node."""
    for source, _, target in chart.edges:
        assert source in chart.nodes and target in chart.nodes, (source, target)
    assert "end" not in chart.nodes  # a Mermaid keyword
    starts = [n for n in chart.nodes if not chart.into(n)]
    ends = [n for n in chart.nodes if not chart.out(n)]
    assert len(starts) == 1 and len(ends) == 1, (starts, ends)
    forward = reachable(starts[0], lambda n: [t for _, t in chart.out(n)])
    backward = reachable(ends[0], chart.into)
    assert forward == backward == set(chart.nodes)


def reachable(origin: str, neighbours: Callable[[str], list[str]]) -> set[str]:
    """Nodes reachable from `origin` following `neighbours`."""
    seen, queue = {origin}, deque([origin])
    while queue:
        for node in neighbours(queue.popleft()):
            if node not in seen:
                seen.add(node)
                queue.append(node)
    return seen


def check_classes(chart: Chart, definition: Definition, states: dict[str, str]) -> None:
    """classDef per state class; class lines name declared nodes and classes; each step in its state's class."""
    assert set(chart.class_defs) == set(STYLES)
    assigned: dict[str, str] = {}
    for name, nodes in chart.classes.items():
        assert name in chart.class_defs, name
        for node in nodes:
            assert node in chart.nodes, node
            assert node not in assigned, f"{node} in two classes"
            assigned[node] = name
    for step in definition.all_steps():
        assert assigned[chart.node_of(step.id)] == states.get(step.id, "not_reached"), step.id


@pytest.fixture
def definition() -> Definition:
    return parse_definition(PERMIT)


def test_every_step_is_a_node_of_its_kind_and_the_chart_is_wired_start_to_end(definition: Definition) -> None:
    chart = parse(mermaid(definition.spec))

    for step in definition.all_steps():
        shape, label = chart.nodes[chart.node_of(step.id)]
        assert shape == SHAPES[step.kind][0], step.id
        if step.task is not None:
            assert f"{step.task.service}/{step.task.task_type}" in label
    check_wiring(chart)
    assert not chart.class_defs and not chart.classes
    assert len({chart.node_of("charge-fee"), chart.node_of("charge_fee")}) == 2
    assert "Pay/refund" in chart.nodes[chart.node_of("charge_fee")][1]
    assert "inspection_result" in chart.nodes[chart.node_of("result")][1]


def test_steps_follow_each_other_in_order(definition: Definition) -> None:
    chart = parse(mermaid(definition.spec))

    assert chart.out(chart.node_of("check-docs")) == [(None, chart.node_of("charge_fee"))]
    assert chart.out(chart.node_of("charge_fee")) == [(None, chart.node_of("size"))]
    assert chart.out(chart.node_of("notify")) == [(None, chart.node_of("cool-off"))]


def test_a_choice_branches_on_its_conditions_then_default_and_the_branches_meet_again(
    definition: Definition,
) -> None:
    chart = parse(mermaid(definition.spec))
    size, review, fast = (chart.node_of(s) for s in ("size", "review", "fast-track"))

    branches = chart.out(size)
    assert [target for _, target in branches] == [review, fast]
    condition = branches[0][0] or ""
    assert condition == "input.cost #62; 100000 #38;#38; input.kind == #34;large#34;"
    assert branches[1][0] == "default"
    assert chart.out(review) == chart.out(fast) == [(None, chart.node_of("prepare"))]
    # Without a default, a choice whose conditions all fail moves on to the next step.
    maybe = chart.node_of("maybe")
    assert [label for label, _ in chart.out(maybe)] == ["steps.result.output.approved == true", "otherwise"]
    assert chart.out(maybe)[1][1] == chart.node_of("charge-fee")


def test_a_parallel_step_fans_out_to_each_branch_and_joins_before_the_next_step(
    definition: Definition,
) -> None:
    chart = parse(mermaid(definition.spec))
    prepare = chart.node_of("prepare")

    assert [t for _, t in chart.out(prepare)] == [chart.node_of("assign"), chart.node_of("notify")]
    (join,) = {t for _, t in chart.out(chart.node_of("assign"))}
    assert chart.nodes[join][0] == "{{" and join not in {chart.node_of(s.id) for s in definition.all_steps()}
    assert sorted(chart.into(join)) == sorted([chart.node_of("assign"), chart.node_of("cool-off")])
    assert chart.out(join) == [(None, chart.node_of("result"))]


def test_process_states_colour_every_step_and_unreached_steps_are_grey(definition: Definition) -> None:
    # A compensated run: the review failed for good, so the fee was refunded and nothing after ran.
    states = {
        "check-docs": "done",
        "charge_fee": "compensated",
        "size": "failed",
        "review": "failed",
        "fast-track": "not_reached",
    }
    chart = parse(mermaid(definition.spec, states))

    check_wiring(chart)
    check_classes(chart, definition, states)
    assert chart.node_of("review") in chart.classes["failed"]
    assert chart.node_of("charge_fee") in chart.classes["compensated"]


def test_a_running_parallel_step_colours_its_join_too(definition: Definition) -> None:
    states = {
        "check-docs": "done",
        "charge_fee": "done",
        "size": "done",
        "review": "done",
        "prepare": "running",
    }
    chart = parse(mermaid(definition.spec, states))

    check_classes(chart, definition, states)
    (join,) = {t for _, t in chart.out(chart.node_of("assign"))}
    assert join in chart.classes["running"]


def test_labels_that_could_break_the_syntax_are_escaped() -> None:
    spec = {
        "name": "tricky",
        "steps": [
            {"id": "a", "choice": [{"when": 'x == "|" || y > 1 # `z`', "steps": [{"id": "b", "sleep": 2}]}]},
        ],
    }
    chart = parse(mermaid(spec, {}))

    check_wiring(chart)
    label = chart.out(chart.node_of("a"))[0][0] or ""
    assert not set('"|<>`') & set(label)
    assert "#34;#124;#34;" in label and "#62;" in label and "#35;" in label
    assert "sleep: 2s" in chart.nodes[chart.node_of("b")][1]


def test_an_unknown_state_class_is_refused(definition: Definition) -> None:
    with pytest.raises(ValueError, match="unknown step classes"):
        mermaid(definition.spec, {"check-docs": "finished"})
