"""The Batch proto helpers: output-only fields, validation paths, merge and comparison."""

# ruff: noqa: E501  (one validation case per line reads better than wrapped tables)

from __future__ import annotations

import inspect

import pytest
from google.cloud.batch_v1.types import job as job_types

from jobs.batch_proto import OUTPUT_ONLY, OUTPUT_ONLY_TASK_GROUP, merge, problems, same_job


def _documented_output_only(cls: type) -> set[str]:
    """Fields whose client docstring starts with "Output only." (what the REST reference
    says at https://cloud.google.com/batch/docs/reference/rest/v1/projects.locations.jobs)."""
    doc = inspect.getdoc(cls) or ""
    found: set[str] = set()
    lines = doc.splitlines()
    for i, line in enumerate(lines[:-1]):
        name = line.strip().split(" (", 1)[0]
        if (
            line.startswith("    ")
            and " (" in line
            and lines[i + 1].strip().startswith("Output only.")
        ):
            found.add(name)
    return found


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def test_output_only_fields_match_the_client_documentation() -> None:
    assert {_camel(n) for n in _documented_output_only(job_types.Job)} == set(OUTPUT_ONLY)
    assert {_camel(n) for n in _documented_output_only(job_types.TaskGroup)} == set(
        OUTPUT_ONLY_TASK_GROUP
    )


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        ({"taskGroups": {}}, [("taskGroups", "must be a list; got an object")]),
        ({"taskGroups": [{"taskCount": "x"}]}, [("taskGroups[0].taskCount", "must be an integer; got 'x'")]),
        ({"labels": {"a": 1}}, [("labels.a", "must be a string; got 1")]),
        ({"logsPolicy": {"destination": "S3"}}, [("logsPolicy.destination", "must be one of DESTINATION_UNSPECIFIED, CLOUD_LOGGING, PATH; got 'S3'")]),
        ({"taskGroups": [{"taskSpec": {"maxRunDuration": "1h"}}]}, [("taskGroups[0].taskSpec.maxRunDuration", 'must be a duration like "3600s"; got \'1h\'')]),
        ({"taskGroups": [{"taskSpec": {"runnables": [{"script": {"text": "a", "path": "b"}}]}}]}, [("taskGroups[0].taskSpec.runnables[0].script", "sets text and path; Batch takes one (command)")]),
        ({"alocationPolicy": {}}, [("alocationPolicy", "not a field of Batch Job; did you mean 'allocationPolicy'?")]),
        ({"task_groups": [{"task_count": 2}]}, []),  # proto field names are accepted too
    ],
)  # fmt: skip
def test_problems_name_camel_case_paths_with_indexes(
    job: dict[str, object], expected: list[tuple[str, str]]
) -> None:
    assert problems(job) == expected


def test_merge_lays_lists_over_by_index() -> None:
    base = {"a": [{"x": 1}, {"y": 2}], "b": {"c": 1}, "s": [1, 2]}
    extra = {"a": [{}, {"z": 3}, {"w": 4}], "b": {"d": 2}, "s": [5]}
    assert merge(base, extra) == {
        "a": [{"x": 1}, {"y": 2, "z": 3}, {"w": 4}],
        "b": {"c": 1, "d": 2},
        "s": [5, 2],
    }
    assert base == {"a": [{"x": 1}, {"y": 2}], "b": {"c": 1}, "s": [1, 2]}  # untouched


def test_same_job_ignores_exit_code_order_only() -> None:
    def job(codes: list[int], count: int = 1) -> dict[str, object]:
        policy = {"action": "RETRY_TASK", "actionCondition": {"exitCodes": codes}}
        return {"taskGroups": [{"taskCount": count, "taskSpec": {"lifecyclePolicies": [policy]}}]}

    assert same_job(job([1, 2, 50001]), job([50001, 1, 2]))
    assert not same_job(job([1, 2]), job([1, 2, 50001]))
    assert not same_job(job([1]), job([1], count=2))
    assert same_job({"taskGroups": [{"taskCount": "3"}]}, {"taskGroups": [{"taskCount": 3}]})


def _doc(cls: type) -> str:
    return " ".join((inspect.getdoc(cls) or "").split())


def test_facts_the_model_relies_on_match_the_client_documentation() -> None:
    """Each fact below is in the google-cloud-batch docstrings (the REST reference's text);
    a client upgrade that changes one fails here."""
    from typing import get_args

    from google.cloud import batch_v1
    from google.cloud.batch_v1.types import task as task_types

    from jobs.spec import Provisioning

    # Exit codes are a set: any code in the list meets the condition (order is irrelevant).
    assert "with any of the exit code in the list, the condition is met" in _doc(
        task_types.LifecyclePolicy.ActionCondition
    )
    # maxRetryCount is 0-10 (JobSpec refuses 11 as Batch does).
    assert "The valid value range is [0, 10]." in _doc(task_types.TaskSpec)
    # reservation: unset = any, "NO_RESERVATION" = none, else that reservation.
    assert 'If "NO_RESERVATION" is specified, VMs will not consume any reservation' in _doc(
        job_types.AllocationPolicy.InstancePolicy
    )
    # The provisioning models JobSpec types are exactly Batch's.
    enum = batch_v1.AllocationPolicy.pb().DESCRIPTOR.enum_types_by_name["ProvisioningModel"]
    names = {v.name for v in enum.values} - {"PROVISIONING_MODEL_UNSPECIFIED"}
    assert {p.upper() for p in get_args(Provisioning)} == names
