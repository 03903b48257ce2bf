"""The demo's CPU job: JSON lines in, the same lines with every string value upper-cased."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from gpub_runner import Failure, Item, Result


def upper(value: Any) -> Any:
    """Upper-case strings anywhere in a JSON value; keys and non-strings are kept."""
    if isinstance(value, str):
        return value.upper()
    if isinstance(value, list):
        return [upper(v) for v in value]
    if isinstance(value, dict):
        return {k: upper(v) for k, v in value.items()}
    return value


def convert(data: bytes) -> bytes:
    lines = []
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {number}: not JSON: {exc.msg}") from None
        lines.append(json.dumps(upper(record), ensure_ascii=False))
    return "".join(line + "\n" for line in lines).encode("utf-8")


def process(batch: list[Item]) -> Sequence[Result]:
    results: list[Result] = []
    for item in batch:
        try:
            data = convert(item.data)
        except (ValueError, UnicodeDecodeError) as exc:
            results.append(Failure(item.name, str(exc)))
            continue
        # Same name as the input: out/<rel> holds the upper-cased <rel>.
        results.append(item.output(data, content_type="application/x-ndjson"))
    return results
