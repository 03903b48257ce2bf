"""The dispatcher workflow and the run-time contract (gpub_runner.contract) agree.

The workflow kept its own copies of the final states (without CANCELLED), the
runtime variable names, the task splitting and the input-name rule. Now it reads them from
the contract; these tests fail if the two ever disagree again, whichever side changes.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import re2  # google-re2: the RE2 engine Workflows' text.match_regex uses
import yaml
from gpub_runner import contract
from hypothesis import given, settings
from hypothesis import strategies as st

from stacks.workflow_params import RUNTIME_ASSIGNMENTS, VARS, prefix_regex
from stacks.workflow_run import size_steps
from tests._helpers.workflow_source import emulator, params, steps


def test_polling_stops_at_exactly_the_contracts_final_states() -> None:
    condition = steps(params())["done"]["switch"][0]["condition"]
    assert set(re.findall(r'state == "([A-Z_]+)"', condition)) == contract.JOB_FINAL_STATES


def test_fill_sets_the_contracts_runtime_variables() -> None:
    fill = {k for a in steps(params())["fill"]["assign"] for k in a}
    assert fill == set(RUNTIME_ASSIGNMENTS)
    filled = {k.removeprefix(f"{VARS}.") for k in fill if k.startswith(f"{VARS}.")}
    # A workflow run lists its inputs (GPUB_INPUT_OBJECTS) instead of writing a manifest.
    expected = (set(contract.RUNTIME_VARIABLES) - {contract.MANIFEST}) | {contract.INPUT_OBJECTS}
    assert filled == expected


def _sized(n: int, **kw: Any) -> tuple[int, int]:
    """Task count and parallelism the workflow's `size` step computes for n inputs, evaluated
    by workflows-emulator (the expressions as deployed, not a Python copy of them)."""
    (size,) = size_steps(params(**kw))
    size["size"].pop("next")
    doc = {"main": {"params": ["args"], "steps": [
        {"init": {"assign": [{"n_objects": "${args.n}"}]}},
        size,
        {"out": {"return": {"count": "${task_count}", "par": "${parallelism}"}}},
    ]}}
    out = emulator().execute_workflow(yaml.safe_load(yaml.safe_dump(doc)), {"args": {"n": n}})
    return int(out["count"]), int(out["par"])


@pytest.mark.parametrize("files_per_task", [None, 1, 3, 20])
def test_task_sizing_gives_every_input_to_exactly_one_task(files_per_task: int | None) -> None:
    """The workflow's task count and the runner's `task_share` together cover each input
    once, and no task starts with nothing to do."""
    for n in (1, 2, 3, 4, 5, 19, 20, 21, 41, 60):
        count, par = _sized(n, files_per_task=files_per_task, max_parallelism=4)
        shares = [contract.task_share(n, i, count, files_per_task) for i in range(count)]
        covered = [k for share in shares for k in share]
        assert covered == list(range(n)), (n, count)
        assert all(len(share) for share in shares), (n, count)
        assert 1 <= par <= min(count, 4)


def _runs_take(name: str, suffix: str = ".jsonl") -> bool:
    """What the contract accepts, less bookkeeping (`_...`) and commas, with the format."""
    name = name.removesuffix(".jsonl") if not suffix else name
    return (
        contract.input_name_problem(name) is None
        and "," not in name
        and not any(seg.startswith("_") for seg in name.split("/"))
        and name.lower().endswith(suffix)
        and not name.endswith("/")
    )


NAMES = ["a.jsonl", "d/b.JSONL", ".h.jsonl", "..x.jsonl", "a/../b.jsonl", "./a.jsonl",
         "a//b.jsonl", "/a.jsonl", "_done/a.jsonl", "a,b.jsonl", "a\x01.jsonl", "a\nb.jsonl",
         "a.csv", "dir/", "../a.jsonl", "x/./y.jsonl", "x/.../y.jsonl"]


@pytest.mark.parametrize("name", NAMES)
def test_prefix_runs_take_the_names_the_contract_accepts(name: str) -> None:
    pattern = prefix_regex(params())
    assert bool(re2.search(pattern, name)) == _runs_take(name), name
    assert bool(re.search(pattern, name)) == _runs_take(name), name  # the local emulator


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="a._/,\x01", min_size=0, max_size=4), min_size=1, max_size=4))
def test_prefix_regex_and_contract_agree_on_any_name(segments: list[str]) -> None:
    name = "/".join(segments)
    with_format = name + ".jsonl"
    assert bool(re2.search(prefix_regex(params()), with_format)) == _runs_take(with_format)
    any_format = prefix_regex(params(input_format=None))
    assert bool(re2.search(any_format, name)) == _runs_take(name + ".jsonl", ""), repr(name)
