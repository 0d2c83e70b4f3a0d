"""AIP-160 `filter` strings: one strict parser for the subset the platform's List methods accept.

Every list-like RPC takes one `filter` string, so vendors learn one syntax instead of a message
per method. The subset is small on purpose; anything outside it is INVALID_ARGUMENT
`INVALID_FILTER` (never silently ignored, which would widen a result the caller meant to narrow):

    filter     = [ term { "AND" term } ]
    term       = comparison { "OR" comparison } | "(" comparison { "OR" comparison } ")"
    comparison = FIELD OPERATOR VALUE
    OPERATOR   = "=" | "!=" | "<" | "<=" | ">" | ">=" | ":"
    VALUE      = '"' text '"' | a bare word

As in AIP-160, OR binds tighter than AND. An OR group lists alternatives of one field with "="
or ":" (`class_code = "10" OR class_code = "11"`). Each method declares its fields, their type
and the operators they accept (`Field`); values are converted here: enum value names (with or
without the enum's prefix), RFC 3339 timestamps with a time zone, `YYYY-MM-DD` dates, strings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from google.protobuf.descriptor import EnumDescriptor

from kit.errors import ServiceError, invalid_argument

REASON = "INVALID_FILTER"
MAX_LENGTH = 1024
MAX_COMPARISONS = 32
EQUALITY = frozenset({"="})
MEMBERSHIP = frozenset({":"})
ORDERING = frozenset({"<", "<=", ">", ">="})

Kind = Literal["string", "enum", "timestamp", "date"]
Value = str | int | datetime | date

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<op><=|>=|!=|=|<|>|:)
      | (?P<paren>[()])
      | (?P<word>[^\s()"=<>!:]+)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Field:
    """What a method accepts for one filter field."""

    kind: Kind
    operators: frozenset[str] = EQUALITY
    enum: EnumDescriptor | None = None


@dataclass(frozen=True)
class Condition:
    """One term of the conjunction: `field operator value`, or alternatives of one field."""

    field: str
    operator: str
    values: tuple[Value, ...]


def _error(message: str) -> ServiceError:
    return invalid_argument(REASON, f"Invalid filter: {message}", "filter")


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.lastgroup is None:
            raise _error(f"unexpected character at position {pos + 1}.")
        out.append((match.lastgroup, match.group(match.lastgroup)))
        pos = match.end()
    return out


def _unquote(token: str) -> str:
    return re.sub(r"\\(.)", r"\1", token[1:-1])


def _convert(name: str, spec: Field, raw: str) -> Value:
    if spec.kind == "string":
        return raw
    if spec.kind == "enum":
        assert spec.enum is not None
        prefix = spec.enum.values[0].name.removesuffix("UNSPECIFIED")
        value = spec.enum.values_by_name.get(raw) or spec.enum.values_by_name.get(prefix + raw)
        if value is None or value.number == 0:
            raise _error(f"{name} has no value {raw!r}.")
        return value.number
    if spec.kind == "timestamp":
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None or len(raw) <= 10:
            raise _error(f'{name} takes a quoted RFC 3339 time with a time zone ("…Z").')
        return moment
    if len(raw) == 10:
        try:
            return date.fromisoformat(raw)
        except ValueError:
            pass
    raise _error(f"{name} takes a date YYYY-MM-DD.")


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], fields: Mapping[str, Field]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.fields = fields

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise _error("it ends too early.")
        self.pos += 1
        return token

    def keyword(self, word: str) -> bool:
        if self.peek() == ("word", word):
            self.pos += 1
            return True
        return False

    def comparison(self) -> tuple[str, str, Value]:
        kind, name = self.take()
        if kind != "word" or name in {"AND", "OR", "NOT"}:
            raise _error(f"a field name was expected, not {name!r}.")
        spec = self.fields.get(name)
        if spec is None:
            raise _error(f"unknown field {name!r}; known: {', '.join(sorted(self.fields))}.")
        kind, operator = self.take()
        if kind != "op":
            raise _error(f"an operator was expected after {name}.")
        if operator not in spec.operators:
            allowed = " ".join(sorted(spec.operators))
            raise _error(f"{name} does not take {operator!r} (it takes {allowed}).")
        kind, raw = self.take()
        if kind not in {"word", "string"} or raw in {"AND", "OR", "NOT"}:
            raise _error(f"a value was expected after {name} {operator}.")
        return name, operator, _convert(name, spec, _unquote(raw) if kind == "string" else raw)

    def term(self) -> Condition:
        grouped = self.peek() == ("paren", "(")
        if grouped:
            self.take()
        name, operator, value = self.comparison()
        values = [value]
        while self.keyword("OR"):
            other, other_operator, other_value = self.comparison()
            if other != name or other_operator != operator or operator not in {"=", ":"}:
                raise _error("OR joins alternatives of one field with = or : only.")
            values.append(other_value)
        if grouped and self.take() != ("paren", ")"):
            raise _error("a parenthesis is not closed.")
        return Condition(name, operator, tuple(values))


def parse(text: str, fields: Mapping[str, Field]) -> list[Condition]:
    """The conditions of `text` (all must hold), or INVALID_ARGUMENT INVALID_FILTER."""
    if len(text) > MAX_LENGTH:
        raise _error(f"longer than {MAX_LENGTH} characters.")
    parser = _Parser(_tokens(text), fields)
    conditions: list[Condition] = []
    while parser.peek() is not None:
        if conditions and not parser.keyword("AND"):
            raise _error(f"AND was expected, not {parser.take()[1]!r}.")
        conditions.append(parser.term())
    if sum(len(c.values) for c in conditions) > MAX_COMPARISONS:
        raise _error(f"more than {MAX_COMPARISONS} comparisons.")
    return conditions


def one_of(conditions: list[Condition], field: str) -> tuple[Value, ...]:
    """The alternatives the filter allows for an equality field (empty: no constraint).

    A field constrained twice (`a = 1 AND a = 2`) is refused rather than intersected: it is
    always a mistake in the lists we serve, and refusing keeps every answer explainable.
    """
    found = [c for c in conditions if c.field == field and c.operator in {"=", ":"}]
    if len(found) > 1:
        raise _error(f"{field} is given more than once; use OR inside one term.")
    return found[0].values if found else ()
