"""Mermaid flowcharts of workflow definitions, optionally coloured by the step states of one process."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# The classes a step can be drawn with, and how each looks.
STYLES: dict[str, str] = {
    "done": "fill:#d3f2d3,stroke:#2e7d32,color:#1b5e20",
    "running": "fill:#d6e9ff,stroke:#1565c0,color:#0d47a1,stroke-width:3px",
    "failed": "fill:#ffd6d6,stroke:#c62828,color:#b71c1c,stroke-width:3px",
    "compensated": "fill:#ffe9c7,stroke:#ef6c00,color:#e65100,stroke-dasharray:5 3",
    "not_reached": "fill:#f2f2f2,stroke:#9e9e9e,color:#757575",
}
NOT_REACHED = "not_reached"
START, END = "process_start", "process_end"

_KINDS = ("task", "choice", "parallel", "wait_signal", "sleep", "call", "map")
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
# Characters that would end a quoted label, an edge label or an entity, or be read as HTML or Markdown;
# Mermaid reads decimal entity codes in their place.
_ESCAPES = {c: f"#{ord(c)};" for c in '"#&<>|`'}


@dataclass(frozen=True, slots=True)
class _Exit:
    """A node whose outgoing edge goes to whatever comes next, with an optional edge label."""

    node: str
    label: str | None = None


@dataclass(slots=True)
class _Chart:
    """Nodes and edges collected while walking a definition."""

    ids: dict[str, str]
    nodes: list[str] = field(default_factory=list)
    edges: list[str] = field(default_factory=list)
    # Each extra node (a parallel join) drawn in the class of the step it belongs to.
    companions: dict[str, str] = field(default_factory=dict)

    def node(self, node_id: str, shape: tuple[str, str], *lines: str) -> None:
        label = "<br/>".join(_escape(line) for line in lines if line)
        self.nodes.append(f'    {node_id}{shape[0]}"{label}"{shape[1]}')

    def connect(self, sources: Iterable[_Exit], target: str) -> None:
        for source in sources:
            arrow = f'-->|"{_escape(source.label)}"|' if source.label else "-->"
            self.edges.append(f"    {source.node} {arrow} {target}")


def mermaid(spec: Mapping[str, Any], step_states: Mapping[str, str] | None = None) -> str:
    """A `flowchart TD` of the definition `spec`; with `step_states` (step id -> class) each step is coloured."""
    steps = _list(spec.get("steps"))
    chart = _Chart(ids=_node_ids(_step_ids(steps)))
    chart.node(START, ("((", "))"), "start")
    exits = _sequence(chart, steps, [_Exit(START)])
    chart.node(END, ("((", "))"), "end")
    chart.connect(exits, END)
    lines = ["flowchart TD", *chart.nodes, *chart.edges]
    if step_states is not None:
        lines.extend(_classes(chart, step_states))
    return "\n".join(lines) + "\n"


def _classes(chart: _Chart, step_states: Mapping[str, str]) -> list[str]:
    unknown = sorted(set(step_states.values()) - STYLES.keys())
    if unknown:
        raise ValueError(f"unknown step classes {unknown}; expected one of {sorted(STYLES)}")
    members: dict[str, list[str]] = {name: [] for name in STYLES}
    for step_id, node_id in chart.ids.items():
        members[step_states.get(step_id, NOT_REACHED)].append(node_id)
    owners = {node_id: step_id for step_id, node_id in chart.ids.items()}
    for extra, owner in chart.companions.items():
        members[step_states.get(owners[owner], NOT_REACHED)].append(extra)
    lines = [f"    classDef {name} {style}" for name, style in STYLES.items()]
    lines.extend(f"    class {','.join(nodes)} {name}" for name, nodes in members.items() if nodes)
    return lines


def _sequence(chart: _Chart, steps: list[Any], entering: list[_Exit]) -> list[_Exit]:
    """Draw steps run in order, entered from `entering`; returns the exits of the last one."""
    for step in steps:
        if isinstance(step, Mapping):
            entering = _step(chart, step, entering)
    return entering


def _step(chart: _Chart, step: Mapping[str, Any], entering: list[_Exit]) -> list[_Exit]:
    step_id = str(step.get("id", ""))
    node_id = chart.ids[step_id]
    kind = next((k for k in _KINDS if k in step), "")
    chart.connect(entering, node_id)
    match kind:
        case "task":
            task = _map(step.get("task"))
            compensate = _map(step.get("compensate"))
            chart.node(
                node_id,
                ("[", "]"),
                step_id,
                f"task: {_target(task)}",
                f"compensate: {_target(compensate)}" if compensate else "",
            )
            return [_Exit(node_id)]
        case "choice":
            chart.node(node_id, ("{", "}"), step_id, "choice")
            exits: list[_Exit] = []
            for branch in _list(step.get("choice")):
                body = _map(branch)
                label = str(body["when"]) if "when" in body else "when"
                exits += _sequence(chart, _list(body.get("steps")), [_Exit(node_id, label)])
            if "default" in step:
                exits += _sequence(chart, _list(step.get("default")), [_Exit(node_id, "default")])
            else:
                # No branch holds and no default: the choice completes and the process moves on.
                exits.append(_Exit(node_id, "otherwise"))
            return exits
        case "parallel":
            chart.node(node_id, ("{{", "}}"), step_id, "parallel")
            join = f"{node_id}__join"
            ends: list[_Exit] = []
            for branch in _list(step.get("parallel")):
                ends += _sequence(chart, _list(_map(branch).get("steps")), [_Exit(node_id)])
            chart.node(join, ("{{", "}}"), f"join {step_id}")
            chart.companions[join] = node_id
            chart.connect(ends, join)
            return [_Exit(join)]
        case "wait_signal":
            wait = _map(step.get("wait_signal"))
            what = (
                f"wait_signal: {wait['name']}"
                if "name" in wait
                else f"wait_message: {wait.get('subject', '')}"
            )
            timeout = f"timeout: {_duration(wait['timeout'])}" if "timeout" in wait else ""
            chart.node(node_id, (">", "]"), step_id, what, timeout)
            return [_Exit(node_id)]
        case "sleep":
            chart.node(node_id, ("([", "])"), step_id, f"sleep: {_duration(step.get('sleep'))}")
            return [_Exit(node_id)]
        case "call":
            call = _map(step.get("call"))
            version = f" {call['version']}" if call.get("version") else ""
            chart.node(node_id, ("[[", "]]"), step_id, f"call: {call.get('definition', '')}{version}")
            return [_Exit(node_id)]
        case "map":
            body = _map(step.get("map"))
            chart.node(node_id, ("[/", "/]"), step_id, f"map: {body.get('items', '')}")
            ends = _sequence(chart, _list(body.get("steps")), [_Exit(node_id, "each item")])
            join = f"{node_id}__join"
            chart.node(join, ("[/", "/]"), f"collect {step_id}")
            chart.companions[join] = node_id
            chart.connect(ends, join)
            return [_Exit(join)]
        case _:
            chart.node(node_id, ("[", "]"), step_id, "unknown step kind")
            return [_Exit(node_id)]


def _step_ids(steps: list[Any]) -> list[str]:
    """Every step id, nested ones included, in document order."""
    found: list[str] = []
    for step in steps:
        if not isinstance(step, Mapping):
            continue
        found.append(str(step.get("id", "")))
        for branch in _list(step.get("choice")) + _list(step.get("parallel")):
            found += _step_ids(_list(_map(branch).get("steps")))
        found += _step_ids(_list(step.get("default")))
        found += _step_ids(_list(_map(step.get("map")).get("steps")))
    return found


def _node_ids(step_ids: list[str]) -> dict[str, str]:
    """A distinct Mermaid-safe node id per step id ('-' and other characters become '_')."""
    # The "s_" prefix keeps ids clear of keywords ("end") and of the o/x edge heads ("A --- oB").
    taken = {START, END}
    ids: dict[str, str] = {}
    for step_id in step_ids:
        if step_id in ids:
            continue
        base = "s_" + _UNSAFE.sub("_", step_id)
        candidate, n = base, 1
        while candidate in taken or f"{candidate}__join" in taken:
            n += 1
            candidate = f"{base}_{n}"
        taken |= {candidate, f"{candidate}__join"}
        ids[step_id] = candidate
    return ids


def _target(task: Mapping[str, Any]) -> str:
    version = f" {task['version']}" if task.get("version") else ""
    return f"{task.get('service', '?')}/{task.get('type', '?')}{version}"


def _duration(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:g}s"


def _escape(text: str) -> str:
    return "".join(_ESCAPES.get(c, c) for c in " ".join(str(text).split()))


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


# How each step state (by its wire name) is drawn. A step stopped by a cancel is drawn like a failure,
# so the picture shows where the process ended.
_STATE_CLASS = {
    "STEP_STATE_PENDING": "not_reached",
    "STEP_STATE_SKIPPED": "not_reached",
    "STEP_STATE_SCHEDULED": "running",
    "STEP_STATE_RUNNING": "running",
    "STEP_STATE_RETRYING": "running",
    "STEP_STATE_WAITING": "running",
    "STEP_STATE_COMPENSATING": "running",
    "STEP_STATE_COMPLETED": "done",
    "STEP_STATE_FAILED": "failed",
    "STEP_STATE_COMPENSATION_FAILED": "failed",
    "STEP_STATE_CANCELLED": "failed",
    "STEP_STATE_INCIDENT": "failed",
    "STEP_STATE_COMPENSATED": "compensated",
}


def step_class(state_name: str) -> str:
    """The drawing class of a step state given by its wire name (e.g. "STEP_STATE_COMPLETED")."""
    return _STATE_CLASS.get(state_name, "not_reached")
