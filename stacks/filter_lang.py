"""A parser (and, for log entries, an evaluator) of the filter subset the platform writes:
Cloud Logging queries (cloud.google.com/logging/docs/view/logging-query-language) for the
log-based metrics and Cloud Monitoring filters (cloud.google.com/monitoring/api/v3/filters)
for the alerts and the dashboard. No Python parser of either language exists, so this one
covers what `stacks/monitoring_specs.py` uses and refuses the rest: comparisons
`field OP value` (OP one of = != > < >= <= :), values quoted strings, numbers or a function
call (`monitoring.regex.full_match("...")`), joined by AND / OR / NOT and parentheses (both
languages give NOT the highest precedence, then AND, then OR). Tests run every filter through
it and evaluate the logging ones on recorded log entries.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(r'''\s*(?:
    (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<op>>=|<=|!=|=|>|<|:)
  | (?P<paren>[()])
  | (?P<comma>,)
  | (?P<word>[A-Za-z_][A-Za-z0-9_./-]*(?:\."[^"]+")?(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<number>-?\d+(?:\.\d+)?)
)''', re.VERBOSE)
KEYWORDS = ("AND", "OR", "NOT")


class FilterSyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class Compare:
    field: str
    op: str
    value: Any  # str | float | ("call", name, [args])


@dataclass(frozen=True)
class BoolOp:
    op: str  # AND | OR | NOT
    args: tuple[Any, ...]


def tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise FilterSyntaxError(f"unexpected text at {pos}: {text[pos:pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, kind: str | None = None, text: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (kind and tok[0] != kind) or (text and tok[1] != text):
            raise FilterSyntaxError(f"expected {text or kind}, got {tok[1] if tok else 'end'}")
        self.i += 1
        return tok

    def parse(self) -> Any:
        node = self.disjunction()
        if self.peek() is not None:
            raise FilterSyntaxError(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return node

    def disjunction(self) -> Any:
        args = [self.conjunction()]
        while self.peek() == ("word", "OR"):
            self.take()
            args.append(self.conjunction())
        return args[0] if len(args) == 1 else BoolOp("OR", tuple(args))

    def conjunction(self) -> Any:
        args = [self.negation()]
        while self.peek() == ("word", "AND"):
            self.take()
            args.append(self.negation())
        return args[0] if len(args) == 1 else BoolOp("AND", tuple(args))

    def negation(self) -> Any:
        if self.peek() == ("word", "NOT"):
            self.take()
            return BoolOp("NOT", (self.negation(),))
        if self.peek() == ("paren", "("):
            self.take()
            node = self.disjunction()
            self.take("paren", ")")
            return node
        return self.comparison()

    def comparison(self) -> Compare:
        _, field = self.take("word")
        if field in KEYWORDS:
            raise FilterSyntaxError(f"a field name was expected, got {field}")
        _, op = self.take("op")
        return Compare(field, op, self.value())

    def value(self) -> Any:
        tok = self.peek()
        if tok is None:
            raise FilterSyntaxError("a value was expected")
        if tok[0] == "string":
            self.take()
            return json.loads(tok[1])
        if tok[0] == "number":
            self.take()
            return float(tok[1])
        if tok[0] == "word" and tok[1] not in KEYWORDS:
            self.take()
            self.take("paren", "(")
            args = [self.value()]
            while self.peek() == ("comma", ","):
                self.take()
                args.append(self.value())
            self.take("paren", ")")
            return ("call", tok[1], args)
        raise FilterSyntaxError(f"a value was expected, got {tok[1]!r}")


def parse(text: str) -> Any:
    return _Parser(text).parse()


def comparisons(node: Any) -> list[Compare]:
    if isinstance(node, Compare):
        return [node]
    return [c for arg in node.args for c in comparisons(arg)]


def lookup(entry: Any, field: str) -> Any:
    """`jsonPayload.outcome.client` in a log entry (None when absent)."""
    cur = entry
    for part in re.findall(r'"[^"]+"|[^.]+', field):
        key = part.strip('"')
        if not isinstance(cur, dict) or key not in cur:
            return None
        cur = cur[key]
    return cur


def matches(node: Any, entry: dict[str, Any]) -> bool:
    """Evaluate a Logging query on one LogEntry (JSON). Equality and inequality only: the
    platform's log filters use nothing else (others raise)."""
    if isinstance(node, BoolOp):
        if node.op == "NOT":
            return not matches(node.args[0], entry)
        results = (matches(a, entry) for a in node.args)
        return all(results) if node.op == "AND" else any(results)
    got = lookup(entry, node.field)
    if node.op == "=":
        return got is not None and str(got) == str(node.value)
    if node.op == "!=":
        return got is None or str(got) != str(node.value)
    raise FilterSyntaxError(f"operator {node.op} is not evaluated offline")


EXTRACT_RE = re.compile(r"^EXTRACT\(([A-Za-z_][A-Za-z0-9_.]*)\)$")


def extractor_field(extractor: str) -> str:
    """`EXTRACT(jsonPayload.client)` -> `jsonPayload.client` (the form logs-based metric
    extractors take; cloud.google.com/logging/docs/logs-based-metrics/labels)."""
    m = EXTRACT_RE.match(extractor)
    if m is None:
        raise FilterSyntaxError(f"extractor {extractor!r} is not EXTRACT(field)")
    return m.group(1)
