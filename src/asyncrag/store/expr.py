r"""Milvus boolean expressions built from data. Values become literals here, and only here.

File names, document ids and chunk ids are data, never code: every value that goes into an
expression passes through `literal`. A string is written between double quotes with the five
escapes that both Milvus Lite 3.2.2 and the Milvus 2.3.5 server read (\\ \" \n \r \t) and every
other character as itself: Lite knows no other escape (not JSON's \u0018, which json.dumps writes
for control characters), and both take any other character raw. (pymilvus's own templating,
`filter_params`, needs Milvus >= 2.5.)

A filter a user writes is code by intent: `user_filter` checks that it is one closed
expression, so that `all_of` can wrap it in parentheses without changing its meaning.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import TypeAlias

from asyncrag.errors import FilterError

Value: TypeAlias = str | int | float | bool
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CLOSING = {")": "(", "]": "["}
_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def literal(value: Value | Iterable[Value]) -> str:
    """`value` as a Milvus literal: a string, number, boolean, or a list of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} has no Milvus literal")
        return repr(value)
    if isinstance(value, str):
        return '"' + value.translate(_ESCAPES) + '"'
    return "[" + ", ".join(literal(v) for v in value) + "]"


def field(name: str) -> str:
    """A field name, which is code: only plain identifiers are accepted."""
    if not _FIELD.fullmatch(name):
        raise ValueError(f"not a Milvus field name: {name!r}")
    return name


def is_in(name: str, values: Iterable[Value]) -> str:
    return f"{field(name)} in {literal(list(values))}"


def equals(name: str, value: Value) -> str:
    return f"{field(name)} == {literal(value)}"


def differs(name: str, value: Value) -> str:
    return f"{field(name)} != {literal(value)}"


def all_of(*exprs: str) -> str:
    """The conjunction of the non-empty `exprs`, each in parentheses so none can rebind the others."""
    parts = [e for e in exprs if e.strip()]
    return parts[0] if len(parts) == 1 else " and ".join(f"({e})" for e in parts)


def user_filter(text: str) -> str:
    """A user's filter, checked to be one closed expression: strings terminated, brackets balanced.

    Milvus itself reports the rest (unknown fields, bad operators) when the filter is used; this
    check is what makes wrapping the filter in parentheses safe: `a == 1) or (b == 2` would
    otherwise become a valid expression that means something else.
    """
    stack: list[str] = []
    code, _, open_quote = code_and_strings(text)
    for i, char in code:
        if char in "([":
            stack.append(char)
        elif char in _CLOSING and (not stack or stack.pop() != _CLOSING[char]):
            raise FilterError(f"invalid filter {text!r}: unmatched {char!r} at position {i + 1}")
    if open_quote is not None:
        raise FilterError(f"invalid filter {text!r}: a string literal is not closed (missing {open_quote})")
    if stack:
        raise FilterError(f"invalid filter {text!r}: {stack[-1]!r} is never closed")
    return text.strip()


def code_and_strings(text: str) -> tuple[list[tuple[int, str]], list[str], str | None]:
    """`text` read as an expression: its characters outside string literals, with their positions
    (a literal stands as one space), the literals' contents, and the quote of a literal left open."""
    code: list[tuple[int, str]] = []
    strings: list[str] = []
    quote: str | None = None
    escaped = False
    current: list[str] = []
    for i, char in enumerate(text):
        if quote is None:
            if char in "\"'":
                quote, current = char, []
            else:
                code.append((i, char))
        elif escaped:
            escaped = False
            current.append(char)
        elif char == "\\":
            escaped = True
            current.append(char)
        elif char == quote:
            quote = None
            strings.append("".join(current))
            code.append((i, " "))
        else:
            current.append(char)
    return code, strings, quote
