"""Subjects and patterns as NATS has them: dot-separated tokens, `*` for one token, `>` for the rest."""

from __future__ import annotations

from functools import lru_cache

from control_plane.errors import FieldViolation

MAX_SUBJECT_LEN = 255
MAX_TOKENS = 16
_WILDCARDS = ("*", ">")
# Subjects seen per pattern whose verdict is remembered: the same subjects repeat on a bus.
_VERDICT_CACHE = 4096


def _check(field: str, text: str, *, pattern: bool) -> list[FieldViolation]:
    kind = "pattern" if pattern else "subject"
    if not text:
        return [FieldViolation(field, f"the {kind} must not be empty")]
    if len(text) > MAX_SUBJECT_LEN:
        return [FieldViolation(field, f"at most {MAX_SUBJECT_LEN} characters (got {len(text)})")]
    if not text.isascii() or not text.isprintable() or any(c.isspace() for c in text):
        return [FieldViolation(field, "only printable ASCII without whitespace is allowed")]
    tokens = text.split(".")
    if len(tokens) > MAX_TOKENS:
        return [FieldViolation(field, f"at most {MAX_TOKENS} tokens (got {len(tokens)})")]
    violations = []
    for n, token in enumerate(tokens, start=1):
        if not token:
            violations.append(FieldViolation(field, f"token {n} is empty"))
        elif token in _WILDCARDS:
            if not pattern:
                violations.append(
                    FieldViolation(field, f"wildcard {token!r} is not allowed in a publish subject")
                )
            elif token == ">" and n != len(tokens):
                violations.append(FieldViolation(field, "'>' must be the last token"))
        elif "*" in token or ">" in token:
            violations.append(
                FieldViolation(field, f"token {n} ({token!r}): a wildcard must be a whole token")
            )
    return violations


@lru_cache(maxsize=4096)
def _subject_problems(subject: str) -> tuple[str, ...]:
    return tuple(v.description for v in _check("", subject, pattern=False))


def check_subject(field: str, subject: str) -> list[FieldViolation]:
    """Problems of a publish subject (no wildcards); cached, since publishers repeat their subjects."""
    return [FieldViolation(field, problem) for problem in _subject_problems(subject)]


def check_pattern(field: str, pattern: str) -> list[FieldViolation]:
    """Problems of a subscription pattern."""
    return _check(field, pattern, pattern=True)


def is_system(subject: str) -> bool:
    """Subjects whose first token starts with '$' belong to the bus (dead letters)."""
    return subject.startswith("$")


def prefix_covers(prefix: str, subject: str) -> bool:
    """Token-wise prefix: "orders" covers "orders" and "orders.eu" but not "ordersx"; "" covers all."""
    return not prefix or subject == prefix or subject.startswith(prefix + ".")


class Pattern:
    """A compiled pattern; `matches` is on the hot path of every delivery."""

    __slots__ = ("_seen", "_tail", "_tokens", "literal", "text")

    def __init__(self, text: str) -> None:
        violations = check_pattern("pattern", text)
        if violations:
            raise ValueError(violations[0].description)
        self.text = text
        tokens = text.split(".")
        self._tail = tokens[-1] == ">"
        self._tokens = tokens[:-1] if self._tail else tokens
        self.literal = not any(t in _WILDCARDS for t in tokens)
        self._seen: dict[str, bool] = {}

    def matches(self, subject: str) -> bool:
        """Whether `subject` matches (a leading wildcard never matches a '$' system subject)."""
        verdict = self._seen.get(subject)
        if verdict is None:
            verdict = self._match(subject)
            if len(self._seen) >= _VERDICT_CACHE:
                self._seen.clear()
            self._seen[subject] = verdict
        return verdict

    def _match(self, subject: str) -> bool:
        if self.literal:
            return subject == self.text
        parts = subject.split(".")
        tokens = self._tokens
        if self._tail:
            if len(parts) <= len(tokens):
                return False
        elif len(parts) != len(tokens):
            return False
        if subject.startswith("$") and (not tokens or tokens[0] == "*"):
            return False
        return all(t == "*" or t == p for t, p in zip(tokens, parts, strict=False))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pattern) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"Pattern({self.text!r})"


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Pattern:
    """A compiled (and cached) pattern; raises ValueError when it is not one."""
    return Pattern(pattern)
