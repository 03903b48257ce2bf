"""The demo's CPU handler."""

from __future__ import annotations

import json

import uppercase_handler
from gpub_runner import Failure, Item, Output


def test_upper_cases_string_values_only() -> None:
    data = (
        json.dumps({"id": 1, "text": "héllo", "tags": ["a", {"k": "v"}], "n": 2.5, "ok": True})
        + "\n\n"
        + json.dumps({"text": "second"})
        + "\n"
    ).encode()
    [out] = uppercase_handler.process([Item("in/a.jsonl", data, "gs://b/in/a.jsonl")])
    assert isinstance(out, Output)
    assert (out.item, out.name, out.content_type) == ("in/a.jsonl", "in/a.jsonl",
                                                     "application/x-ndjson")
    rows = [json.loads(line) for line in out.data.decode().splitlines()]
    assert rows == [{"id": 1, "text": "HÉLLO", "tags": ["A", {"k": "V"}], "n": 2.5, "ok": True},
                    {"text": "SECOND"}]


def test_bad_file_is_a_failure_not_an_exception() -> None:
    good = Item("g.jsonl", b'{"a": "b"}\n', "gs://b/g.jsonl")
    bad = Item("b.jsonl", b'{"a": "b"}\n{oops\n', "gs://b/b.jsonl")
    results = uppercase_handler.process([good, bad])
    assert results[0] == Output("g.jsonl", "g.jsonl", b'{"a": "B"}\n', "application/x-ndjson")
    assert isinstance(results[1], Failure) and "line 2" in results[1].error
