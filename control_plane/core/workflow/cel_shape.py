"""The shape of a CEL expression, read from its tokens, since the CEL binding exposes no syntax tree.

Two things decide how much an expression can cost: how deep it nests (the Rust parser and evaluator
recurse once per level, and 20,000 chained `+` overflow the stack and kill the process), and its
comprehensions (`all`, `exists`, `map`, ...), which run their body once per item of a list. The
binding has no cost limit, so the shape is used twice: when a definition is registered, to refuse
what nests too deeply and comprehensions nested over the process's data (their cost multiplies:
250 items three deep took 10.8 s); and before each evaluation, to estimate the cost over the actual
values and refuse one that would run too long (`x in input.items` inside a comprehension over the
same list is quadratic).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Deeper than this, an expression is refused before CEL sees it. The evaluator overflows an 8 MiB stack
# between 10,000 and 20,000 levels; cel-go's parser stops at 250.
MAX_DEPTH = 250
# Evaluation steps an expression may take, as estimated before it runs; about 20 ms of CPU here.
MAX_COST = 100_000
# A step walks this many bytes of a string (comparing, searching, concatenating).
_STRING_BYTES_PER_STEP = 128
# Converting a map to CEL costs about as much as this many evaluation steps.
_MAP_STEPS = 8

# Those that build a list copy it at every item in the Rust core (8,000 items took 4.3 s to `map`).
_BUILDING_LOOPS = frozenset({"map", "filter", "transformList", "transformMap", "transformMapEntry", "sortBy"})
_LOOPS = _BUILDING_LOOPS | {"all", "exists", "exists_one"}
_KEYWORDS = frozenset({"true", "false", "null", "in"})
_OPERATORS = frozenset({"==", "!=", "<=", ">=", "&&", "||", "+", "-", "*", "/", "%", "!", "<", ">", "?", "."})
_OPEN = {"(": ")", "[": "]", "{": "}"}
_SCALARS = frozenset({int, float, bool, type(None)})
_TOKEN = re.compile(
    r"""
    (?P<space>\s+|//[^\n]*)
    |(?P<raw>(?:[bB]?[rR]|[rR][bB])(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|"[^"\n]*"|'[^'\n]*'))
    |(?P<string>[bB]?(?:\"\"\"(?:\\[\s\S]|[^\\])*?\"\"\"|'''(?:\\[\s\S]|[^\\])*?'''
        |"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'))
    |(?P<number>0[xX][0-9a-fA-F]+[uU]?|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[uU]?)
    |(?P<ident>[A-Za-z_]\w*)
    |(?P<punct>==|!=|<=|>=|&&|\|\||[-+*/%!<>?:.,()\[\]{}])
    |(?P<other>.)
    """,
    re.VERBOSE,
)


class ShapeError(Exception):
    """The expression nests too deeply or nests comprehensions over the data (`refused`), or is not CEL."""

    def __init__(self, message: str, *, refused: bool = True) -> None:
        super().__init__(message)
        self.refused = refused


@dataclass(frozen=True, slots=True)
class Path:
    """A variable and the keys read from it (`input.items` is ("input", ("items",))), or a whole variable."""

    variable: str
    keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Loop:
    """A comprehension: what it ranges over, and what one run of its body costs."""

    # Index of the loop this one ranges inside (over its iteration variable), or -1.
    within: int
    # Top-level data the range is made of; empty when it is a literal or an enclosing loop's variable.
    ranges_over: tuple[Path, ...]
    # Loops whose results the range is made of (`input.a.map(...).all(...)`).
    ranges_over_loops: tuple[int, ...]
    # Steps of one run of the body, and the data it reads (each read may walk all of it: `x in input.b`).
    body_steps: int
    body_reads: tuple[Path, ...]
    # Whether it builds a list, copied once per item: its cost grows with the square of the items.
    builds: bool = False


@dataclass(frozen=True, slots=True)
class Shape:
    """What `estimate_cost` needs: the loops of an expression, in source order."""

    loops: tuple[Loop, ...]

    def estimate_cost(self, values: Mapping[str, Any], limit: int = MAX_COST) -> int:
        """Steps to evaluate over `values` (the variables passed in); counting stops once past `limit`."""
        # Handing the values to CEL converts every one of them: 10,000 small maps took 50 ms.
        total = 0
        for value in values.values():
            total += _size(value, limit, _MAP_STEPS)
        costs: list[int] = []
        runs: list[int] = []  # how many times each loop's body runs, over the whole evaluation
        for loop in self.loops:
            if total > limit:
                break
            if loop.within >= 0:
                count = runs[loop.within]
            else:
                count = sum(_size(_resolve(path, values), limit) for path in loop.ranges_over)
                count += sum(costs[index] for index in loop.ranges_over_loops)
            read = sum(_size(_resolve(path, values), limit) for path in loop.body_reads)
            cost = count * (loop.body_steps + read)
            if loop.builds:
                # The list built so far is copied at every item: about count^2 / 2 copied items.
                cost += count * count // 2 * (1 + read)
            runs.append(count)
            costs.append(cost)
            total += cost
        return total


def shape_of(text: str, variables: frozenset[str]) -> Shape:
    """The shape of `text`; ShapeError when it nests too deeply or nests loops over `variables`."""
    tokens = _tokens(text)
    partner = _partners(tokens)
    depth = _depth(tokens, partner)
    if depth > MAX_DEPTH:
        raise ShapeError(f"nested or chained too deeply (about {depth} levels; at most {MAX_DEPTH})")
    return Shape(tuple(_loops(tokens, partner, variables)))


# ---------------------------------------------------------------------------------------------------


def _tokens(text: str) -> list[str]:
    tokens = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        if kind == "space":
            continue
        if kind == "other":
            raise ShapeError(f"unexpected character {match.group()!r}", refused=False)
        # Literals become placeholders: their contents never name a variable or a loop.
        tokens.append({"raw": '""', "string": '""', "number": "0"}.get(kind or "", match.group()))
    return tokens


def _partners(tokens: list[str]) -> dict[int, int]:
    """Index of each bracket -> index of its partner."""
    partner: dict[int, int] = {}
    stack: list[int] = []
    for index, token in enumerate(tokens):
        if token in _OPEN:
            stack.append(index)
        elif token in (")", "]", "}"):
            if not stack or _OPEN[tokens[stack[-1]]] != token:
                raise ShapeError("unbalanced brackets", refused=False)
            opener = stack.pop()
            partner[opener], partner[index] = index, opener
    if stack:
        raise ShapeError("unbalanced brackets", refused=False)
    return partner


def _depth(tokens: list[str], partner: dict[int, int]) -> int:
    """An upper bound of the syntax tree's depth: operators of a bracket level add up, levels stack."""
    depth = [0]  # per open bracket: operators seen at this level
    deepest = [0]  # per open bracket: deepest level inside it
    for index, token in enumerate(tokens):
        if token in _OPEN:
            depth.append(0)
            deepest.append(0)
        elif index in partner and token in (")", "]", "}"):
            inner = 1 + depth.pop() + deepest.pop()
            deepest[-1] = max(deepest[-1], inner)
        elif token in _OPERATORS or token == "in":
            depth[-1] += 1
    return 1 + depth[0] + deepest[0]


@dataclass(slots=True)
class _Found:
    dot: int  # the '.' before the macro name
    open: int  # its '('
    close: int
    receiver_start: int
    bound: tuple[str, ...]
    body_start: int


def _loops(tokens: list[str], partner: dict[int, int], variables: frozenset[str]) -> list[Loop]:
    found: list[_Found] = []
    for index in range(len(tokens) - 2):
        if tokens[index] == "." and tokens[index + 1] in _LOOPS and tokens[index + 2] == "(":
            opener = index + 2
            bound: list[str] = []
            at = opener + 1
            while (
                at + 1 < partner[opener] and _is_name(tokens[at]) and tokens[at + 1] == "," and len(bound) < 2
            ):
                bound.append(tokens[at])
                at += 2
            if bound:  # otherwise a method of that name, not a comprehension
                receiver = _receiver_start(tokens, partner, index)
                found.append(_Found(index, opener, partner[opener], receiver, tuple(bound), at))
    loops: list[Loop] = []
    for position, loop in enumerate(found):
        # A loop's body follows its name: the loops around this one come before it.
        enclosing = [i for i in range(position) if found[i].body_start <= loop.dot < found[i].close]
        bound_around = {name for i in enclosing for name in found[i].bound}
        roots = _roots(tokens, loop.receiver_start, loop.dot)
        in_receiver = tuple(i for i in range(position) if loop.receiver_start <= found[i].dot < loop.dot)
        # Names bound by loops inside the receiver (`input.a.map(x, x).all(...)`) are theirs, not data.
        data_roots = roots - bound_around - {name for i in in_receiver for name in found[i].bound}
        if enclosing and (data_roots or in_receiver):
            names = ", ".join(sorted(data_roots)) or "another comprehension's result"
            raise ShapeError(
                f"a comprehension over {names} nested in another comprehension runs once per item of the"
                " outer list: range the inner one over the outer one's variable, or write the two side by side"
            )
        body_roots = _roots(tokens, loop.body_start, loop.close) - set(loop.bound) - bound_around
        reads = tuple(
            p for p in _paths(tokens, loop.body_start, loop.close, body_roots) if p.variable in variables
        )
        body_steps = 1 + (loop.close - loop.body_start) // 2
        builds = tokens[loop.dot + 1] in _BUILDING_LOOPS
        if enclosing:
            # Over an item of an enclosing loop (or a literal list): all its runs together walk that
            # loop's range once (times the literal's length).
            owners = [i for i in enclosing if set(found[i].bound) & roots] or enclosing
            literal = 1 if roots else max(1, loop.dot - loop.receiver_start)
            loops.append(Loop(max(owners), (), (), body_steps * literal, reads, builds))
            continue
        ranges = tuple(
            p for p in _paths(tokens, loop.receiver_start, loop.dot, roots) if p.variable in variables
        )
        if data_roots - variables:
            ranges += tuple(Path(name) for name in sorted(variables))  # a name that cannot be followed
        loops.append(Loop(-1, ranges, in_receiver, body_steps, reads, builds))
    return loops


def _receiver_start(tokens: list[str], partner: dict[int, int], dot: int) -> int:
    """Where the operand before `tokens[dot]` (a postfix chain: names, calls, indexes, literals) starts."""
    at = dot - 1
    while at >= 0:
        token = tokens[at]
        if token in (")", "]", "}"):
            at = partner[at]
            if at > 0 and _is_name(tokens[at - 1]) and tokens[at - 1] != "in":
                at -= 1  # a call, an index or a message literal: f(...), a[...], Type{...}
        elif not (_is_name(token) or token in ('""', "0")) or token == "in":
            return at + 1
        if at > 0 and tokens[at - 1] == ".":
            at -= 2
        elif at > 0 and tokens[at - 1] in (")", "]"):
            at -= 1
        else:
            return at
    return 0


def _is_name(token: str) -> bool:
    return token[:1].isalpha() or token[:1] == "_"


def _roots(tokens: list[str], start: int, end: int) -> set[str]:
    """Names read as variables in tokens[start:end]: not after '.', not called, not keywords."""
    return {
        token
        for at in range(start, end)
        if _is_name(token := tokens[at])
        and token not in _KEYWORDS
        and (at == 0 or tokens[at - 1] != ".")
        and (at + 1 >= len(tokens) or tokens[at + 1] != "(")
    }


def _paths(tokens: list[str], start: int, end: int, roots: set[str]) -> list[Path]:
    """Each use of a root name in tokens[start:end], with the literal keys that follow it."""
    paths = []
    for at in range(start, end):
        token = tokens[at]
        if token not in roots or (at > 0 and tokens[at - 1] == "."):
            continue
        keys: list[str] = []
        step = at + 1
        while step + 1 < end and tokens[step] == "." and _is_name(tokens[step + 1]):
            if step + 2 < len(tokens) and tokens[step + 2] == "(":
                break  # a method or macro: what it is called on is what is read
            keys.append(tokens[step + 1])
            step += 2
        paths.append(Path(token, tuple(keys)))
    return paths


def _resolve(path: Path, activation: Mapping[str, Any]) -> Any:
    value: Any = activation.get(path.variable)
    for key in path.keys:
        if not isinstance(value, Mapping) or key not in value:
            return value  # what cannot be followed is counted whole
        value = value[key]
    return value


def _size(value: Any, limit: int, map_steps: int = 1) -> int:
    """Items, keys and string chunks in `value` (a map counts `map_steps`); counting stops past `limit`."""
    # Exact type checks first: this runs before every evaluation, over plain JSON values.
    kind = type(value)
    if kind in _SCALARS:
        return 1
    if kind is str:
        return 1 + len(value) // _STRING_BYTES_PER_STEP
    size = 0
    pending = [value]
    while pending and size <= limit:
        item = pending.pop()
        kind = type(item)
        if kind in _SCALARS:
            size += 1
        elif kind is dict:
            size += map_steps + len(item)  # the keys, strings of their own
            pending.extend(item.values())
        elif kind is list:
            size += 1
            pending.extend(item)
        elif kind is str or kind is bytes:
            size += 1 + len(item) // _STRING_BYTES_PER_STEP
        elif isinstance(item, Mapping):
            size += map_steps + len(item)
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            size += 1
            pending.extend(item)
        else:
            size += 1
    return size
