"""Subjects and patterns: the syntax of bus.proto's file comment and NATS wildcard semantics."""

from __future__ import annotations

import pytest

from control_plane.core.bus.subjects import (
    Pattern,
    check_pattern,
    check_subject,
    compile_pattern,
    is_system,
    prefix_covers,
)
from control_plane.core.limits import MAX_SUBJECT_LEN, MAX_TOKENS

MATCHING = [
    # exact (literal patterns)
    ("permit.application.submitted", "permit.application.submitted", True),
    ("permit.application.submitted", "permit.application.rejected", False),
    ("permit.application", "permit.application.submitted", False),
    ("permit.application.submitted", "permit.application", False),
    ("a", "a", True),
    ("a", "ab", False),
    # '*' in each position, exactly one token
    ("*.application.submitted", "permit.application.submitted", True),
    ("permit.*.submitted", "permit.application.submitted", True),
    ("permit.application.*", "permit.application.submitted", True),
    ("*.*.*", "permit.application.submitted", True),
    ("permit.*.submitted", "permit.application.rejected", False),
    ("*.application.submitted", "permit.inspection.submitted", False),
    ("permit.*", "permit", False),  # '*' does not match an absent token
    ("permit.*", "permit.a.b", False),  # nor more than one
    ("permit.*.submitted", "permit.submitted", False),
    ("permit.*.submitted", "permit.a.b.submitted", False),
    ("*", "permit", True),
    ("*", "permit.application", False),
    # '>' at the end: one or more trailing tokens
    ("permit.>", "permit.application", True),
    ("permit.>", "permit.application.submitted.eu", True),
    ("permit.>", "permit", False),  # at least one token
    ("a.>", "a", False),
    ("permit.>", "permits.application", False),
    ("permit.*.>", "permit.application.submitted", True),
    ("permit.*.>", "permit.application", False),
    ("*.b.>", "a.b.c.d", True),
    (">", "permit.application.submitted", True),
    (">", "a", True),
    # system subjects: a wildcard in the first position does not match them
    (">", "$DLQ.consumer1", False),
    ("*.consumer1", "$DLQ.consumer1", False),
    ("*.>", "$DLQ.consumer1", False),
    ("*", "$DLQ", False),
    ("$DLQ.>", "$DLQ.consumer1", True),
    ("$DLQ.>", "$DLQ.orders.eu", True),
    ("$DLQ.*", "$DLQ.consumer1", True),
    ("$DLQ.consumer1", "$DLQ.consumer1", True),
    ("$DLQ.>", "$DLQ", False),
    ("a.*", "a.$b", True),  # only the first token makes a subject a system subject
    ("a.>", "a.$b.c", True),
    # regex metacharacters in literal tokens are literal
    ("a+b.c", "a+b.c", True),
    ("a+b.*", "aab.c", False),
    ("(x).*", "(x).y", True),
]


@pytest.mark.parametrize(("pattern", "subject", "expected"), MATCHING)
def test_matches(pattern: str, subject: str, expected: bool) -> None:
    assert check_pattern("pattern", pattern) == []
    assert check_subject("subject", subject) == []
    compiled = compile_pattern(pattern)
    assert compiled.matches(subject) is expected
    assert compiled.matches(subject) is expected  # second call answers from the per-pattern cache


def test_literal_flag() -> None:
    assert compile_pattern("permit.application.submitted").literal
    assert compile_pattern("$DLQ.c1").literal
    assert not compile_pattern("permit.*").literal
    assert not compile_pattern("permit.>").literal


def test_pattern_is_immutable_and_hashable_by_text() -> None:
    pattern = compile_pattern("permit.*")
    assert compile_pattern("permit.*") is pattern  # cached
    assert Pattern("permit.*") == pattern
    assert hash(Pattern("permit.*")) == hash(pattern)
    assert Pattern("permit.>") != pattern
    assert len({Pattern("a.*"), Pattern("a.*"), Pattern("a.>")}) == 2
    with pytest.raises(AttributeError):
        pattern.text = "other"
    with pytest.raises(AttributeError):
        del pattern.literal


def test_verdict_cache_is_bounded() -> None:
    pattern = Pattern("load.*")
    for n in range(10_000):
        assert pattern.matches(f"load.{n}")
        assert not pattern.matches(f"load.{n}.x")
    assert len(pattern._seen) <= 4096


@pytest.mark.parametrize("pattern", ["", "a..b", "a.>.b", "a*", "a. b"])
def test_compile_refuses_invalid_pattern(pattern: str) -> None:
    with pytest.raises(ValueError, match="invalid pattern"):
        compile_pattern(pattern)


INVALID_SUBJECTS = [
    ("", "must not be empty"),
    ("a..b", "token 2 is empty"),
    (".a", "token 1 is empty"),
    ("a.", "token 2 is empty"),
    (".a.", "tokens 1 and 3 are empty"),
    ("a.*.b", "wildcard '*' is not allowed in a publish subject (token 2)"),
    ("a.>", "wildcard '>' is not allowed in a publish subject (token 2)"),
    ("a.b*", "wildcard '*' is not allowed in a publish subject (token 2)"),
    ("a.b>c", "wildcard '>' is not allowed in a publish subject"),
    ("a b", "whitespace ' ' at position 2 is not allowed"),
    ("a.b\t", "whitespace '\\t' at position 4"),
    ("a.\x00", "non-printable character '\\x00' at position 3"),
    ("a.\x7f", "non-printable character"),
    ("caf\u00e9.x", "non-ASCII character 'é' at position 4"),
    ("a." + "b" * 300, f"at most {MAX_SUBJECT_LEN} characters (got 302)"),
    (".".join("t" * (MAX_TOKENS + 1)), f"at most {MAX_TOKENS} tokens (got {MAX_TOKENS + 1})"),
    ("." * 20, "tokens 1, 2, 3, ... (21 in all) are empty"),
]


@pytest.mark.parametrize(("subject", "fragment"), INVALID_SUBJECTS)
def test_invalid_subject(subject: str, fragment: str) -> None:
    violations = check_subject("messages[3].subject", subject)
    assert violations, subject
    assert {v.field for v in violations} == {"messages[3].subject"}
    assert any(fragment in v.description for v in violations), violations


def test_each_subject_problem_is_its_own_violation() -> None:
    descriptions = [v.description for v in check_subject("subject", "a b..*." + "x" * 260)]
    assert descriptions == [
        "at most 255 characters (got 267)",
        "whitespace ' ' at position 2 is not allowed",
        "token 2 is empty",
        "wildcard '*' is not allowed in a publish subject (token 3)",
    ]


INVALID_PATTERNS = [
    ("", "must not be empty"),
    ("a..b", "token 2 is empty"),
    ("a.*.", "token 3 is empty"),
    ("a.>.b", "'>' must be the last token (found at token 2 of 3)"),
    (">.a", "'>' must be the last token (found at token 1 of 2)"),
    ("a.b*", "wildcard '*' must be a whole token, not part of one (token 2)"),
    ("*a.b", "wildcard '*' must be a whole token, not part of one (token 1)"),
    ("a.b>", "wildcard '>' must be a whole token, not part of one (token 2)"),
    ("a.**", "wildcard '*' must be a whole token"),
    ("a.* ", "whitespace ' ' at position 4"),
    ("a.\u00e9", "non-ASCII character"),
    ("a.\n", "whitespace '\\n'"),
    ("a.>" + ".b" * 130, "at most 255 characters"),
    (".".join("*" * (MAX_TOKENS + 1)), f"at most {MAX_TOKENS} tokens (got {MAX_TOKENS + 1})"),
]


@pytest.mark.parametrize(("pattern", "fragment"), INVALID_PATTERNS)
def test_invalid_pattern(pattern: str, fragment: str) -> None:
    violations = check_pattern("pattern", pattern)
    assert violations, pattern
    assert {v.field for v in violations} == {"pattern"}
    assert any(fragment in v.description for v in violations), violations


@pytest.mark.parametrize(
    "pattern", ["*", ">", "a.*", "a.>", "*.*.>", "$DLQ.>", "a.b.c", ".".join("*" * MAX_TOKENS)]
)
def test_valid_pattern(pattern: str) -> None:
    assert check_pattern("pattern", pattern) == []


def test_longest_valid_subject() -> None:
    subject = ".".join(["x" * 15] * MAX_TOKENS)  # 16 tokens, 255 characters
    assert len(subject) == MAX_SUBJECT_LEN
    assert check_subject("subject", subject) == []
    assert check_subject("subject", subject + "x") != []


@pytest.mark.parametrize(
    ("subject", "expected"),
    [("$DLQ.c1", True), ("$DLQ", True), ("$x.y", True), ("a.$DLQ", False), ("permit.x", False)],
)
def test_is_system(subject: str, expected: bool) -> None:
    assert is_system(subject) is expected


@pytest.mark.parametrize(
    ("prefix", "subject", "expected"),
    [
        ("", "orders", True),
        ("", "$DLQ.c1", True),
        ("orders", "orders", True),
        ("orders", "orders.eu", True),
        ("orders", "orders.eu.new", True),
        ("orders.eu", "orders.eu.new", True),
        ("orders", "ordersx", False),
        ("orders", "ordersx.eu", False),
        ("orders.eu", "orders", False),
        ("orders.eu", "orders.eux", False),
        ("orders.eu", "orders.us.new", False),
        ("$DLQ", "$DLQ.c1", True),
    ],
)
def test_prefix_covers(prefix: str, subject: str, expected: bool) -> None:
    assert prefix_covers(prefix, subject) is expected
