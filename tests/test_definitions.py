"""Workflow definitions: parsing, validation with paths and lines, expressions, durations, retry delays."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest
import yaml

from control_plane.core.workflow.definition import Definition, RetryPolicy, StepKind
from control_plane.core.workflow.durations import parse_duration
from control_plane.core.workflow.expressions import ExpressionError, compile_expression, evaluate_mapping
from control_plane.core.workflow.parser import parse_definition
from control_plane.errors import FieldViolation, InvalidArgument

PERMIT = """\
# The building permit process of the demo: every step kind but parallel and sleep.
name: building_permit
description: Building permit application
input_schema:
  type: object
  required: [application_id, applicant, documents, cost]
  properties:
    application_id: {type: string, minLength: 1}
    applicant:
      type: object
      required: [name, email]
      properties:
        name: {type: string}
        email: {type: string, format: email}
    documents: {type: array, minItems: 1, items: {type: string}}
    cost: {type: number, minimum: 0}
timeout: 30d
steps:
  - id: validate
    task: {service: DocumentService, type: validateDocs, version: ">=1.0,<2"}
    input: {documents: "input.documents", applicant: "input.applicant"}
    retry: {max_attempts: 3, initial_interval: 1s, backoff: 2.0, max_interval: 100s, non_retryable: [INVALID_DOCUMENTS]}
    timeout: 30s
    heartbeat_timeout: 10s
  - id: charge_fee
    task: {service: PaymentService, type: chargeFee}
    input: {application_id: "input.application_id", amount: "double(input.cost) * 0.001"}
    compensate:
      service: PaymentService
      type: refundFee
      input: {payment_id: "steps.charge_fee.output.payment_id"}
      retry: {max_attempts: 10, initial_interval: 500ms}
      timeout: 30s
  - id: extra_review           # large projects get a structural review first
    choice:
      - when: "input.cost > 100000"
        steps:
          - id: structural_review
            task: {service: InspectionService, type: reviewStructure}
            input: {application_id: "input.application_id", documents: "steps.validate.output.documents"}
            timeout: 2h
  - id: assign_inspector
    task: {service: InspectionService, type: assignInspector}
    input: "{'application_id': input.application_id, 'large': input.cost > 100000}"
  - id: schedule_inspection
    task: {service: InspectionService, type: scheduleInspection, version: "2.1.0"}
    input:
      application_id: input.application_id
      inspector: steps.assign_inspector.output.inspector_id
      windows: ["'morning'", "'afternoon'"]
      priority: 1
      urgent: false
      note: null
    compensate:
      service: InspectionService
      type: cancelSlot
      input: {slot_id: "steps.schedule_inspection.output.slot_id"}
  - id: inspection_result
    wait_signal: {name: inspection_result, timeout: 7d}
  - id: decide
    choice:
      - when: "steps.inspection_result.output.passed"
        steps:
          - id: approve
            task: {service: DocumentService, type: approvePermit}
            input: {application_id: "input.application_id", fee: "steps.charge_fee.output.payment_id"}
    default:
      - id: reject
        task: {service: DocumentService, type: rejectPermit}
        input: {reason: "steps.inspection_result.output.reason"}
  - id: send_decision
    task: {service: NotificationService, type: sendDecision}
    input: {email: "input.applicant.email", approved: "'approve' in steps"}
output: {decision: "'approve' in steps ? 'approved' : 'rejected'", inspection: "steps.inspection_result.output"}
"""


def permit() -> Definition:
    """The example, parsed."""
    return parse_definition(PERMIT)


def test_building_permit_parses() -> None:
    definition = permit()
    assert definition.name == "building_permit"
    assert definition.description == "Building permit application"
    assert definition.timeout_s == 30 * 86400
    assert [step.id for step in definition.steps] == [
        "validate",
        "charge_fee",
        "extra_review",
        "assign_inspector",
        "schedule_inspection",
        "inspection_result",
        "decide",
        "send_decision",
    ]
    assert [step.id for step in definition.all_steps()] == [
        "validate",
        "charge_fee",
        "extra_review",
        "structural_review",
        "assign_inspector",
        "schedule_inspection",
        "inspection_result",
        "decide",
        "approve",
        "reject",
        "send_decision",
    ]
    validate = definition.step("validate")
    assert validate.kind is StepKind.TASK and validate.task is not None
    assert (validate.task.service, validate.task.task_type, validate.task.version) == (
        "DocumentService",
        "validateDocs",
        ">=1.0,<2",
    )
    assert validate.task.retry == RetryPolicy(3, 1.0, 2.0, 100.0, frozenset({"INVALID_DOCUMENTS"}))
    assert (validate.task.timeout_s, validate.task.heartbeat_timeout_s) == (30.0, 10.0)
    refund = definition.step("charge_fee").compensate
    assert refund is not None and (refund.service, refund.task_type) == ("PaymentService", "refundFee")
    assert refund.retry == RetryPolicy(10, 0.5, 2.0, 50.0, frozenset())
    review = definition.step("extra_review")
    assert review.kind is StepKind.CHOICE and len(review.branches) == 1
    assert review.branches[0].when is not None and review.branches[0].when.text == "input.cost > 100000"
    assert definition.step("structural_review").parent == "extra_review"
    decide = definition.step("decide")
    assert [branch.when is None for branch in decide.branches] == [False, True]
    assert definition.step("reject").parent == "decide"
    wait = definition.step("inspection_result")
    assert (wait.kind, wait.signal, wait.subject, wait.wait_timeout_s) == (
        StepKind.WAIT_SIGNAL,
        "inspection_result",
        "",
        7 * 86400,
    )
    assert definition.step("send_decision").task is not None
    assert definition.spec == yaml.safe_load(PERMIT)
    with pytest.raises(KeyError):
        definition.step("nope")


def test_compiled_inputs_evaluate_with_literals_kept() -> None:
    definition = permit()
    step = definition.step("schedule_inspection")
    assert step.task is not None
    activation = {
        "input": {"application_id": "A-7", "cost": 250_000},
        "steps": {"assign_inspector": {"output": {"inspector_id": "I-3"}}},
    }
    assert evaluate_mapping(step.task.input, activation) == {
        "application_id": "A-7",
        "inspector": "I-3",
        "windows": ["morning", "afternoon"],
        "priority": 1,
        "urgent": False,
        "note": None,
    }
    assign = definition.step("assign_inspector").task
    assert assign is not None
    assert evaluate_mapping(assign.input, activation) == {"application_id": "A-7", "large": True}
    done = {
        "input": {},
        "steps": {"approve": {"output": {}}, "inspection_result": {"output": {"passed": True}}},
    }
    assert evaluate_mapping(definition.output, done) == {
        "decision": "approved",
        "inspection": {"passed": True},
    }
    with pytest.raises(ExpressionError, match="no such key"):
        evaluate_mapping(definition.output, {"input": {}, "steps": {}})


def test_json_form_has_the_same_digest() -> None:
    document = yaml.safe_load(PERMIT)
    expected = permit().digest
    assert parse_definition(json.dumps(document)).digest == expected
    # Pretty-printed JSON with tab indentation, which YAML alone refuses.
    assert parse_definition(json.dumps(document, indent="\t")).digest == expected
    assert parse_definition(json.dumps(document, indent=2)) == permit()


def test_formatting_and_comments_do_not_change_the_digest() -> None:
    document = yaml.safe_load(PERMIT)
    reformatted = "# reformatted\n" + yaml.safe_dump(document, default_flow_style=False, sort_keys=True)
    assert reformatted != PERMIT
    assert parse_definition(reformatted).digest == permit().digest
    document["steps"][0]["timeout"] = "31s"
    assert parse_definition(yaml.safe_dump(document)).digest != permit().digest


def test_yaml_dates_and_yes_stay_strings_as_in_json() -> None:
    source = "name: t\ndescription: 2024-01-01\nsteps: [{id: a, sleep: 1s}]\noutput: {on: true, off: 1}\n"
    definition = parse_definition(source)
    assert definition.description == "2024-01-01"
    assert definition.spec["output"] == {"on": True, "off": 1}


def _doc(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


# (document, field at fault, fragment of its description, line or None)
INVALID: list[tuple[str, str, str, int | None]] = [
    (
        _doc("""
        name: t
        steps:
          - {id: a, sleep: 1s}
          - {id: a, sleep: 2s}
        """),
        "steps[1].id",
        "duplicate step id 'a' (first at steps[0].id)",
        4,
    ),
    (
        _doc("""
        name: t
        steps:
          - {id: a, sleep: 1s}
          - id: p
            parallel:
              - steps: [{id: b, sleep: 1s}]
              - steps: [{id: b, sleep: 1s}]
        """),
        "steps[1].parallel[1].steps[0].id",
        "duplicate step id 'b'",
        7,
    ),
    (
        _doc("""
        name: t
        steps:
          - id: a
            task: {service: S, type: t}
            input: {x: "steps.nope.output.y"}
        """),
        "steps[0].input.x",
        "unknown step 'nope'",
        5,
    ),
    (
        _doc("""
        name: t
        steps:
          - id: a
            task: {service: S, type: t}
            input: {x: "steps.b.output"}
          - {id: b, task: {service: S, type: t}}
        """),
        "steps[0].input.x",
        "refers to step 'b', which runs later",
        5,
    ),
    (
        _doc("""
        name: t
        steps:
          - id: a
            task: {service: S, type: t}
            input: "steps['a'].output"
        """),
        "steps[0].input",
        "step 'a' refers to itself",
        5,
    ),
    (
        _doc("""
        name: t
        steps:
          - id: p
            parallel:
              - steps: [{id: b, task: {service: S, type: t}}]
              - steps: [{id: c, task: {service: S, type: t}, input: {x: "steps.b.output"}}]
        """),
        "steps[0].parallel[1].steps[0].input.x",
        "refers to step 'b' in another branch",
        6,
    ),
    (
        _doc("""
        name: t
        steps:
          - id: r
            choice:
              - when: "steps.r.output.ok"
                steps: [{id: b, sleep: 1s}]
        """),
        "steps[0].choice[0].when",
        "step 'r' refers to itself",
        5,
    ),
    (
        _doc("""
        name: t
        steps:
          - id: a
            task: {service: S, type: t}
            retires: {max_attempts: 2}
        """),
        "steps[0].retires",
        "unknown field 'retires' (did you mean 'retry'?)",
        5,
    ),
    (
        _doc("""
        name: t
        steps:
          - {id: a, task: {service: S, typ: t}}
        """),
        "steps[0].task.typ",
        "unknown field 'typ'",
        3,
    ),
    (
        _doc("""
        name: t
        steps:
          - {id: a, task: {service: S, type: t}}
          - id: r
            choice:
              - when: "true"
                steps:
                  - {id: b, task: {type: t}}
        """),
        "steps[1].choice[0].steps[0].task.service",
        "is required",
        8,
    ),
    ("name: t\nsteps: []\n", "steps", "must not be empty", 2),
    (
        _doc("""
        name: t
        steps:
          - id: r
            choice:
              - when: "input.x > 1"
                steps: []
        """),
        "steps[0].choice[0].steps",
        "must not be empty",
        6,
    ),
    (
        _doc("""
        name: t
        steps:
          - id: r
            choice:
              - {when: "input.x > 1", steps: [{id: b, sleep: 1s}]}
            default: []
        """),
        "steps[0].default",
        "must not be empty",
        6,
    ),
    ("name: t\nsteps:\n  - {id: p, parallel: []}\n", "steps[0].parallel", "non-empty list", 3),
    (
        "name: t\nsteps:\n  - {id: a, sleep: 1s, task: {service: S, type: t}}\n",
        "steps[0]",
        "exactly one of task, choice, parallel, wait_signal, sleep, call, map; found task and sleep",
        3,
    ),
    ("name: t\nsteps:\n  - {id: a}\n", "steps[0]", "exactly one of", 3),
    (
        "name: t\nsteps:\n  - {id: a, sleep: 1s, retry: {max_attempts: 2}}\n",
        "steps[0].retry",
        "only to task",
        3,
    ),
    (
        "name: t\nsteps:\n  - {id: a, task: {service: S, type: t}, timeout: 10 minutes}\n",
        "steps[0].timeout",
        "not a duration: '10 minutes'",
        3,
    ),
    (
        "name: t\nsteps:\n  - {id: a, task: {service: S, type: t}, timeout: 60d}\n",
        "steps[0].timeout",
        "30d",
        3,
    ),
    ("name: t\nsteps:\n  - {id: a, sleep: 0}\n", "steps[0].sleep", "positive", 3),
    (
        "name: t\ntimeout: 10\nsteps:\n  - {id: a, sleep: 1s}\n",
        "",
        "",
        None,
    ),  # valid: a bare number is seconds
    (
        "name: t\nsteps:\n  - {id: a, task: {service: S, type: t}, input: {x: 'input.cost >'}}\n",
        "steps[0].input.x",
        "CEL expression does not compile: ERROR: <input>:1:13: Syntax error",
        3,
    ),
    (
        "name: t\nsteps:\n  - id: r\n    choice: [{when: 'input.(', steps: [{id: b, sleep: 1s}]}]\n",
        "steps[0].choice[0].when",
        "does not compile",
        4,
    ),
    (
        "name: t\nsteps:\n  - {id: a, task: {service: S, type: t}, input: {x: 'inptu.cost'}}\n",
        "steps[0].input.x",
        "unknown variable 'inptu'; expressions see input and steps",
        3,
    ),
    (
        "name: t\nsteps:\n  - {id: a, task: {service: S, type: t}, input: {x: 'message.id'}}\n",
        "steps[0].input.x",
        "only a wait_signal correlate sees message",
        3,
    ),
    (
        _doc("""
        name: t
        steps:
          - {id: a-b, task: {service: S, type: t}}
          - {id: c, task: {service: S, type: t}, input: {x: "steps.a-b.output"}}
        """),
        "steps[1].input.x",
        "write steps['a-b']",
        4,
    ),
    (
        "name: t\nsteps:\n  - {id: a, task: {service: S, type: t, version: '>=2.0,<<3'}}\n",
        "steps[0].task.version",
        "not a version or a version range",
        3,
    ),
    (
        "name: t\nsteps:\n  - {id: a, task: {service: S, type: t}, retry: {max_attempts: 0}}\n",
        "steps[0].retry.max_attempts",
        "between 1 and 100, got 0",
        3,
    ),
    (
        "name: t\nsteps:\n  - {id: a, task: {service: S, type: t}, retry: {backoff: 0.5}}\n",
        "steps[0].retry.backoff",
        "between 1 and 100, got 0.5",
        3,
    ),
    (
        _doc("""
        name: t
        steps:
          - id: a
            task: {service: S, type: t}
            retry:
              initial_interval: 10s
              max_interval: 5s
        """),
        "steps[0].retry.max_interval",
        "at least initial_interval (10s), got 5s",
        7,
    ),
    ("name: 9lives\nsteps: [{id: a, sleep: 1s}]\n", "name", "starting with a letter", 1),
    ("steps: [{id: a, sleep: 1s}]\n", "name", "is required", 1),
    ("name: t\nsteps: [{id: 1a, sleep: 1s}]\n", "steps[0].id", "starting with a letter", 2),
    ("name: t\nsteps:\n  - {id: w, wait_signal: {timeout: 1h}}\n", "steps[0].wait_signal", "needs name", 3),
    (
        "name: t\nsteps:\n  - {id: w, wait_signal: {name: go, subject: a.b}}\n",
        "steps[0].wait_signal",
        "not both",
        3,
    ),
    (
        "name: t\nsteps:\n  - {id: w, wait_signal: {name: go, correlate: 'message.id == input.id'}}\n",
        "steps[0].wait_signal.correlate",
        "applies only to a Bus message wait",
        3,
    ),
    (
        "name: t\nsteps:\n  - {id: w, wait_signal: {subject: 'a.>.b'}}\n",
        "steps[0].wait_signal.subject",
        "'>' must be the last token",
        3,
    ),
    (
        "name: t\ninput_schema: {type: objekt}\nsteps: [{id: a, sleep: 1s}]\n",
        "input_schema.type",
        "not a valid JSON Schema",
        2,
    ),
    (
        "name: t\ninput_schema: {properties: {a: {$ref: '#/$defs/nope'}}}\nsteps: [{id: a, sleep: 1s}]\n",
        "input_schema.properties.a.$ref",
        "cannot resolve $ref '#/$defs/nope'",
        2,
    ),
    ("name: t\ninput_schema: [1]\nsteps: [{id: a, sleep: 1s}]\n", "input_schema", "must be a JSON Schema", 2),
    ("- name: t\n- steps: []\n", "source", "the document must be a mapping", 1),
    ("", "source", "the document must be a mapping with name and steps, got null", None),
    ("name: t\nsteps:\n  - id: a\n   sleep: 1s\n", "source", "not valid YAML or JSON", 4),
    ('{"name": "t", "steps": [}', "source", "line 1, column 25", None),
    ("name: t\nname: u\nsteps: [{id: a, sleep: 1s}]\n", "name", "duplicate key 'name' (line 2)", 2),
    ("name: t\nsteps: [{id: a, sleep: 1s}]\noutput: {x: .nan}\n", "output.x", "finite", 3),
    ("name: t\nsteps: [{id: a, sleep: 1s}]\noutput: 5\n", "output", "must be a map", 3),
    ("a: &a [*a]\n", "source", "an alias refers to a node that contains it", None),
]


@pytest.mark.parametrize(("source", "path", "fragment", "line"), [case for case in INVALID if case[1]])
def test_invalid_definitions_name_the_path_at_fault(
    source: str, path: str, fragment: str, line: int | None
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_definition(source)
    matching = [v for v in caught.value.violations if v.field == path and fragment in v.description]
    assert matching, caught.value.violations
    if line is not None:
        assert (
            matching[0].description.endswith(f"(line {line})") or f"(line {line}," in matching[0].description
        )


def test_the_invalid_table_is_wide() -> None:
    assert len([case for case in INVALID if case[1]]) >= 20


def test_every_problem_is_reported_at_once() -> None:
    source = _doc("""
        name: t
        steps:
          - {id: a, task: {service: S, type: t}, retry: {max_attempts: 0, backoff: 0}, timeout: 0s}
          - {id: a, sleep: forever}
          - {id: c, task: {service: S, type: t}, input: {x: "steps.zzz.output"}}
        """)
    with pytest.raises(InvalidArgument) as caught:
        parse_definition(source)
    fields = {violation.field for violation in caught.value.violations}
    assert fields >= {
        "steps[0].retry.max_attempts",
        "steps[0].retry.backoff",
        "steps[0].timeout",
        "steps[1].id",
        "steps[1].sleep",
        "steps[2].input.x",
    }


def test_references_to_completed_steps_are_accepted() -> None:
    source = _doc("""
        name: t
        steps:
          - {id: a, task: {service: S, type: t}}
          - id: p
            parallel:
              - steps:
                  - {id: b, task: {service: S, type: t}, input: {x: "steps.a.output"}}
                  - {id: c, task: {service: S, type: t}, input: {x: "steps.b.output"}}
              - steps:
                  - {id: d, task: {service: S, type: t}, input: "steps['a'].output"}
          - {id: e, task: {service: S, type: t}, input: {x: "[steps.b, steps.d, steps.p]"}}
          - id: w
            wait_signal: {subject: "permit.*.inspected", correlate: "message.id == input.id && has(steps.e)"}
          - {id: f, sleep: 250ms}
        output: "{'f': steps.f.output}"
        """)
    definition = parse_definition(source)
    assert definition.step("c").parent == "p"
    wait = definition.step("w")
    assert (wait.subject, wait.signal, wait.wait_timeout_s) == ("permit.*.inspected", "", None)
    assert wait.correlate is not None
    assert wait.correlate.holds({"input": {"id": 1}, "message": {"id": 1}, "steps": {"e": {"output": 0}}})
    assert definition.step("f").sleep_s == 0.25


CHECK_INPUT: list[tuple[Any, list[tuple[str, str]]]] = [
    (
        {
            "application_id": "A-1",
            "applicant": {"name": "N", "email": "n@example.com"},
            "documents": ["d"],
            "cost": 1,
        },
        [],
    ),
    (
        {"applicant": {"name": "N", "email": "n@example.com"}, "documents": ["d"], "cost": 1},
        [("input", '"application_id" is a required property')],
    ),
    (
        {"application_id": "A", "applicant": {"name": "N", "email": "nope"}, "documents": ["d"], "cost": 1},
        [("input.applicant.email", '"nope" is not a "email"')],
    ),
    (
        {"application_id": "A", "applicant": {"name": "N", "email": "n@e.com"}, "documents": [3], "cost": 1},
        [("input.documents[0]", '3 is not of type "string"')],
    ),
    (
        {"application_id": "", "applicant": {"name": "N", "email": "n@e.com"}, "documents": [], "cost": -1},
        [
            ("input.application_id", "shorter than 1 character"),
            ("input.documents", "less than 1 item"),
            ("input.cost", "less than the minimum of 0"),
        ],
    ),
    ([1, 2], [("input", 'is not of type "object"')]),
]


@pytest.mark.parametrize(("value", "expected"), CHECK_INPUT)
def test_check_input(value: Any, expected: list[tuple[str, str]]) -> None:
    definition = permit()
    if not expected:
        definition.check_input(value)
        return
    with pytest.raises(InvalidArgument) as caught:
        definition.check_input(value)
    violations = caught.value.violations
    assert len(violations) == len(expected), violations
    for path, fragment in expected:
        assert any(v.field == path and fragment in v.description for v in violations), violations


def test_check_input_without_schema_accepts_anything() -> None:
    parse_definition("name: t\nsteps: [{id: a, sleep: 1s}]\n").check_input(["anything"])


def test_evaluate_mapping_nested_maps_lists_and_literals() -> None:
    mapping = {
        "id": compile_expression("input.id"),
        "nested": {"total": compile_expression("steps.a.output.n * 2"), "fixed": 7, "none": None},
        "list": [compile_expression("input.id + '-x'"), 1.5, True, {"deep": compile_expression("[1, 2]")}],
    }
    activation = {"input": {"id": "P1"}, "steps": {"a": {"output": {"n": 21}}}}
    assert evaluate_mapping(mapping, activation) == {
        "id": "P1",
        "nested": {"total": 42, "fixed": 7, "none": None},
        "list": ["P1-x", 1.5, True, {"deep": [1, 2]}],
    }
    whole = compile_expression("{'id': input.id, 'n': steps.a.output.n}")
    assert evaluate_mapping(whole, activation) == {"id": "P1", "n": 21}
    with pytest.raises(ExpressionError, match="must evaluate to a map, got a list"):
        evaluate_mapping(compile_expression("[1]"), activation)


def test_expression_values_come_back_as_plain_python() -> None:
    value = compile_expression(
        "{'b': b'hi', 't': timestamp('2024-05-01T10:00:00Z'), 'd': duration('90s'), 'o': optional.of(1)}"
    ).evaluate({})
    assert value == {"b": "aGk=", "t": "2024-05-01T10:00:00Z", "d": "90s", "o": 1}


@pytest.mark.parametrize(
    ("text", "activation", "fragment"),
    [
        ("input.missing", {"input": {}}, "no such key: missing"),
        ("input.cost + 'a'", {"input": {"cost": 1}}, "No such overload"),
        ("1 / input.zero", {"input": {"zero": 0}}, "division by zero"),
        ("message.id", {"input": {}}, "Undefined variable"),
    ],
)
def test_runtime_errors_are_expression_errors(text: str, activation: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ExpressionError, match=fragment):
        compile_expression(text).evaluate(activation)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("input.all(k, k != 'x')", False),  # a macro on the map itself sees every key
        ("input.exists(k, k == 'y') || has(input.missing)", True),
        ("size(input) == 2 && input['x'] == 1", True),
        ("[1, 2].map(v, v * input.x) == [1, 2]", True),  # bound names are not unknown variables
        ("steps.a.output.n + steps['b-c'].output.n", 5),
        ("'b-c' in steps && !('zzz' in steps)", True),
    ],
)
def test_expressions_read_the_whole_activation(text: str, expected: Any) -> None:
    activation = {
        "input": {"x": 1, "y": 2},
        "steps": {"a": {"output": {"n": 2}}, "b-c": {"output": {"n": 3}}, "d": {"output": {}}},
    }
    assert compile_expression(text).evaluate(activation) == expected
    source = (
        f"name: t\nsteps: [{{id: a, sleep: 1s}}, {{id: b-c, sleep: 1s}}]\noutput: {{v: {json.dumps(text)}}}\n"
    )
    parse_definition(source)


def test_a_condition_must_be_a_bool() -> None:
    assert compile_expression("input.cost > 100000").holds({"input": {"cost": 100001}})
    with pytest.raises(ExpressionError, match="must be true or false"):
        compile_expression("input.cost").holds({"input": {"cost": 1}})


def test_compile_errors_and_cache() -> None:
    with pytest.raises(ExpressionError, match="Syntax error"):
        compile_expression("input.cost >")
    assert compile_expression("input.a") is compile_expression("input.a")


def test_retry_delays_with_the_defaults() -> None:
    policy = RetryPolicy()
    assert [policy.delay_after(attempt) for attempt in range(1, 10)] == [1, 2, 4, 8, 16, 32, 64, 100, 100]
    assert policy.delay_after(10_000) == 100
    assert policy.retries(2, "BOOM") and not policy.retries(3, "BOOM")
    assert not RetryPolicy(non_retryable=frozenset({"BAD"})).retries(1, "BAD")


def test_retry_defaults_fill_what_is_left_out() -> None:
    source = "name: t\nsteps: [{id: a, task: {service: S, type: t}, retry: {initial_interval: 2s}}]\n"
    task = parse_definition(source).step("a").task
    assert task is not None and task.retry == RetryPolicy(3, 2.0, 2.0, 200.0, frozenset())
    assert task.timeout_s is None and task.heartbeat_timeout_s is None and task.input is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("250ms", 0.25),
        ("10s", 10),
        ("5m", 300),
        ("2h", 7200),
        ("7d", 604800),
        ("1h30m", 5400),
        (3, 3),
        (0.5, 0.5),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("10", "no unit"),
        ("-1s", "not a duration"),
        (0, "positive"),
        (True, "expected a duration"),
        ([], "list"),
    ],
)
def test_parse_duration_refuses(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_duration(value)


def test_violations_are_field_violations() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_definition("name: t\nsteps: []\n")
    assert caught.value.violations == [FieldViolation("steps", "must not be empty (line 2)")]


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        (
            "{properties: {code: {type: string, pattern: '^(a+)\\1$'}}}",
            "input_schema.properties.code.pattern",
        ),
        ("{patternProperties: {'(?<=a)b': {type: string}}}", "input_schema.patternProperties.(?<=a)b"),
        ("{propertyNames: {pattern: '(?!x)'}}", "input_schema.propertyNames.pattern"),
    ],
)
def test_a_pattern_that_needs_backtracking_is_refused(schema: str, where: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_definition(f"name: t\ninput_schema: {schema}\nsteps: [{{id: a, sleep: 1s}}]\n")
    violation = caught.value.violations[0]
    assert (violation.field, "does not backtrack" in violation.description) == (where, True), violation


def test_a_pattern_checks_input_in_linear_time() -> None:
    definition = parse_definition(
        "name: t\ninput_schema: {properties: {code: {pattern: '^(a+)+$'}}}\nsteps: [{id: a, sleep: 1s}]\n"
    )
    definition.check_input({"code": "a" * 1000})
    with pytest.raises(InvalidArgument, match="does not match"):
        definition.check_input({"code": "a" * 100_000 + "b"})  # Python's re: 2^100000 ways to try


def test_a_ref_is_never_fetched() -> None:
    with pytest.raises(InvalidArgument, match="cannot resolve"):
        parse_definition(
            "name: t\ninput_schema: {$ref: 'http://127.0.0.1:9/schema.json'}\nsteps: [{id: a, sleep: 1s}]\n"
        )
