"""The dispatcher workflow and the run-time contract (gpub_runner.contract) agree.

The workflow kept its own copies of the final states (without CANCELLED), the
runtime variable names and the task splitting. Now it reads them from the contract; these
tests fail if the two ever disagree again, whichever side changes. (The
workflow applies no input-name rule: the job lists and refuses names itself, and
`bin/submit upload` refuses them up front with `contract.input_name_problem`.)
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from gpub_runner import contract

from bench.workflow_fake import params
from stacks.workflow_params import EXPECTED_INPUTS, RUNTIME_ASSIGNMENTS, VARS
from stacks.workflow_run import size_steps
from tests._helpers.workflow_source import emulator, steps


def test_polling_stops_at_exactly_the_contracts_final_states() -> None:
    condition = steps(params())["done"]["switch"][0]["condition"]
    assert set(re.findall(r'state == "([A-Z_]+)"', condition)) == contract.JOB_FINAL_STATES


def test_fill_sets_the_contracts_runtime_variables() -> None:
    fill = {k for a in steps(params())["fill"]["assign"] for k in a}
    assert fill == set(RUNTIME_ASSIGNMENTS)
    filled = {k.removeprefix(f"{VARS}.") for k in fill if k.startswith(f"{VARS}.")}
    # Issue 20: the job plans itself from its input prefix and the marker's count; the
    # workflow passes neither a list of inputs (GPUB_INPUT_OBJECTS) nor a manifest.
    expected = (set(contract.RUNTIME_VARIABLES) - {contract.MANIFEST}) | {EXPECTED_INPUTS}
    assert filled == expected


def _sized(n: int, **kw: Any) -> tuple[int, int]:
    """Task count and parallelism the workflow's `size` step computes for n inputs, evaluated
    by workflows-emulator (the expressions as deployed, not a Python copy of them)."""
    (size,) = size_steps(params(**kw))
    size["size"].pop("next")
    doc = {"main": {"params": ["args"], "steps": [
        {"init": {"assign": [{"expected": "${args.n}"}]}},
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
