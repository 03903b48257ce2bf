"""`bin/submit results` under at-least-once delivery: a redelivered outcome is shown once."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from stacks.environments import dev
from submit import results


class FakeSubscriptions:
    """Hands out the queued batches of messages, one batch per pull."""

    batches: list[list[Any]] = []

    def __init__(self, *_: Any, **__: Any) -> None:
        pass

    def deliver(self) -> int:
        return 0

    def pull(self, subscription: str, **_: Any) -> list[Any]:
        return FakeSubscriptions.batches.pop(0) if FakeSubscriptions.batches else []


def _message(batch: str, gen: int, state: str = "SUCCEEDED") -> Any:
    body = {"client": "acme", "job": "embed", "batch": batch, "marker_generation": gen,
            "state": state, "inputs": 3, "job_id": f"embed-{batch}"}
    return SimpleNamespace(data=json.dumps(body).encode(), attributes={})


def test_a_redelivered_outcome_is_shown_once(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(results, "Subscriptions", FakeSubscriptions)
    monkeypatch.setattr(results, "_client", lambda env, client: dev())
    FakeSubscriptions.batches = [
        [_message("b-1", 7), _message("b-1", 7)],  # a duplicate in one pull
        [_message("b-2", 9), _message("b-1", 7)],  # and one redelivered later
        [_message("b-1", 8, "FAILED")],  # a re-run (new marker generation) is another outcome
    ]
    assert results.results_cmd("acme", env="dev", json_out=True) == 0
    shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(o["batch"], o["marker_generation"]) for o in shown] == [
        ("b-1", 7), ("b-2", 9), ("b-1", 8)]
