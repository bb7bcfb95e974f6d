"""Subjects and patterns as NATS has them: dot-separated tokens, `*` for one token, `>` for the rest."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import NoReturn

from control_plane.core.limits import MAX_SUBJECT_LEN, MAX_TOKENS
from control_plane.errors import FieldViolation

_WILDCARDS = ("*", ">")
# Subjects seen per pattern whose verdict is remembered: the same subjects repeat on a bus.
_VERDICT_CACHE = 4096


def _character_problems(text: str) -> list[str]:
    # The common case (printable ASCII, no space) costs three C-level scans; only a bad string is walked.
    if text.isascii() and text.isprintable() and " " not in text:
        return []
    first: dict[str, str] = {}
    for position, char in enumerate(text, start=1):
        if char.isspace():
            kind, what = "whitespace", "whitespace"
        elif not char.isascii():
            kind, what = "ascii", "non-ASCII character"
        elif not char.isprintable():
            kind, what = "printable", "non-printable character"
        else:
            continue
        # One violation per kind, at its first occurrence: a pasted line would otherwise flood the reply.
        first.setdefault(kind, f"{what} {char!r} at position {position} is not allowed")
    return list(first.values())


def _positions(numbers: list[int]) -> str:
    # "token 2", "tokens 2 and 5", or "tokens 1, 2, 3, ... (40 in all)": bounded, however long the input.
    if len(numbers) == 1:
        return f"token {numbers[0]}"
    if len(numbers) > 5:
        return f"tokens {', '.join(map(str, numbers[:3]))}, ... ({len(numbers)} in all)"
    return f"tokens {', '.join(map(str, numbers[:-1]))} and {numbers[-1]}"


def _token_problems(tokens: list[str], *, pattern: bool) -> list[str]:
    empty: list[int] = []
    forbidden: dict[str, list[int]] = {}  # wildcard -> tokens holding it, in a publish subject
    partial: dict[str, list[int]] = {}  # wildcard -> tokens holding it with other characters, in a pattern
    misplaced_tail: list[int] = []
    for n, token in enumerate(tokens, start=1):
        if not token:
            empty.append(n)
        elif pattern and token in _WILDCARDS:
            if token == ">" and n != len(tokens):
                misplaced_tail.append(n)
        else:
            for wildcard in _WILDCARDS:
                if wildcard in token:
                    (partial if pattern else forbidden).setdefault(wildcard, []).append(n)
    # One violation per kind of problem, naming where: a string of dots would otherwise flood the reply.
    problems = []
    if empty:
        problems.append(f"{_positions(empty)} {'is' if len(empty) == 1 else 'are'} empty")
    for wildcard, where in forbidden.items():
        problems.append(f"wildcard {wildcard!r} is not allowed in a publish subject ({_positions(where)})")
    for wildcard, where in partial.items():
        problems.append(f"wildcard {wildcard!r} must be a whole token, not part of one ({_positions(where)})")
    if misplaced_tail:
        problems.append(
            f"'>' must be the last token (found at {_positions(misplaced_tail)} of {len(tokens)})"
        )
    return problems


def _problems(text: str, *, pattern: bool) -> list[str]:
    if not text:
        return ["must not be empty"]
    problems = []
    if len(text) > MAX_SUBJECT_LEN:
        problems.append(f"at most {MAX_SUBJECT_LEN} characters (got {len(text)})")
    problems += _character_problems(text)
    tokens = text.split(".")
    if len(tokens) > MAX_TOKENS:
        problems.append(f"at most {MAX_TOKENS} tokens (got {len(tokens)})")
    return problems + _token_problems(tokens, pattern=pattern)


@lru_cache(maxsize=4096)
def _subject_problems(subject: str) -> tuple[str, ...]:
    return tuple(_problems(subject, pattern=False))


def check_subject(field: str, subject: str) -> list[FieldViolation]:
    """Problems of a publish subject (no wildcards); cached, since publishers repeat their subjects."""
    return [FieldViolation(field, problem) for problem in _subject_problems(subject)]


def check_pattern(field: str, pattern: str) -> list[FieldViolation]:
    """Problems of a subscription pattern: `*` a whole token, `>` a whole token and the last."""
    return [FieldViolation(field, problem) for problem in _problems(pattern, pattern=True)]


def is_system(subject: str) -> bool:
    """Whether the subject belongs to the bus (its first token starts with '$', e.g. dead letters)."""
    return subject.startswith("$")


# The workflow engine's per-process subjects, `workflow.<definition>.<process id>.<event>`: the engine
# numbers them itself (from the process record, not from a row per subject), so it must be their only
# publisher; that also keeps anyone from forging a process's events.
ENGINE_PREFIX = "workflow."
_ENGINE_TOKENS = 4


def engine_owned(subject: str) -> bool:
    """Whether only the workflow engine may publish on `subject` (`workflow.<a>.<b>.<c>`)."""
    return subject.startswith(ENGINE_PREFIX) and subject.count(".") == _ENGINE_TOKENS - 1


def prefix_covers(prefix: str, subject: str) -> bool:
    """Token-wise prefix: "orders" covers "orders" and "orders.eu" but not "ordersx"; "" covers all."""
    return not prefix or subject == prefix or subject.startswith(prefix + ".")


def _regex(tokens: list[str]) -> str:
    parts = []
    for n, token in enumerate(tokens):
        # A wildcard in the first position never matches a '$' system subject (MQTT's "$SYS" rule).
        guard = r"(?!\$)" if n == 0 else ""
        if token == "*":
            parts.append(guard + r"[^.]+")
        elif token == ">":
            # `.+` rather than `[^.]+(\.[^.]+)*`: subjects were checked on publish, and it is ~50 ns faster.
            parts.append(guard + r".+")
        else:
            parts.append(re.escape(token))
    return r"\.".join(parts)


class Pattern:
    """A compiled subscription pattern; immutable, equal and hashed by its text."""

    __slots__ = ("_fullmatch", "_seen", "literal", "text")

    text: str
    literal: bool
    _fullmatch: Callable[[str], re.Match[str] | None]
    _seen: dict[str, bool]

    def __init__(self, text: str) -> None:
        problems = _problems(text, pattern=True)
        if problems:
            raise ValueError(f"invalid pattern {text!r}: {'; '.join(problems)}")
        tokens = text.split(".")
        literal = not any(token in _WILDCARDS for token in tokens)
        # One precompiled regex, not str.split and token comparisons: timeit on 3-5 token subjects gave
        # 110-150 ns per uncached match for the regex against 340-460 ns for split-and-compare.
        fullmatch = re.compile(_regex(tokens)).fullmatch
        for name, value in (("text", text), ("literal", literal), ("_fullmatch", fullmatch), ("_seen", {})):
            object.__setattr__(self, name, value)

    def matches(self, subject: str) -> bool:
        """Whether `subject` matches; a leading wildcard never matches a '$' system subject."""
        if self.literal:
            return subject == self.text  # cheaper than the cache lookup
        verdict = self._seen.get(subject)
        if verdict is None:
            verdict = self._fullmatch(subject) is not None
            if len(self._seen) >= _VERDICT_CACHE:
                # Clearing beats LRU bookkeeping on the hot path; the working set refills in one pass.
                self._seen.clear()
            self._seen[subject] = verdict
        return verdict

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"Pattern is immutable (cannot set {name!r})")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"Pattern is immutable (cannot delete {name!r})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pattern) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"Pattern({self.text!r})"


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Pattern:
    """The compiled pattern, cached; raises ValueError when `pattern` is not a valid one."""
    return Pattern(pattern)
