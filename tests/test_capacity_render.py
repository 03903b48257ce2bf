"""Preemption semantics of the rendered job (docs/capacity.md; exit codes 2 and 3).

The decisions are checked with the local backend's `should_retry` (local/task_process.py),
which implements Batch's documented LifecyclePolicy semantics, so a policy that reads right
but acts wrong fails here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.cloud import batch_v1
from gpub_runner import contract

from jobs import JobSpec, RenderContext, render_job
from jobs.errors import JobSpecError
from jobs.registry import ALL_JOBS
from jobs.retries import NEVER_RETRIED_EXIT_CODES, VM_LOST_EXIT_CODES
from local.task_process import should_retry as _should_retry


def ctx(env: str = "dev") -> RenderContext:
    project = f"example-ml-{env}"
    return RenderContext(
        env_name=env, env_kind=env, project_id=project, region="europe-west4",
        registry_host=f"europe-west4-docker.pkg.dev/{project}/batch-images",
        job_service_account_email=f"job-x@{project}.iam.gserviceaccount.com",
    )


def _retried(job: dict[str, Any], code: int, attempt: int = 0) -> bool:
    spec = batch_v1.Job.from_json(json.dumps(job)).task_groups[0].task_spec
    return _should_retry(code, attempt, int(spec.max_retry_count), list(spec.lifecycle_policies))


def test_codes_match_the_runner_contract() -> None:
    reserved = set(contract.BATCH_RESERVED_EXIT_CODES)
    assert set(VM_LOST_EXIT_CODES) == reserved - {50005}
    assert set(contract.NO_RETRY_EXIT_CODES) | {50005} == set(NEVER_RETRIED_EXIT_CODES)


def test_spot_job_retries_every_lost_vm_code_and_nothing_else() -> None:
    job = render_job(ALL_JOBS["embed"], ctx("dev"))  # spot in dev
    task = job["taskGroups"][0]["taskSpec"]
    assert len(task["lifecyclePolicies"]) == 1  # Batch takes one
    for code in VM_LOST_EXIT_CODES:
        assert _retried(job, code), code
    for code in (1, 2, 3, 4, 50005, 137):
        assert not _retried(job, code), code  # application failures and timeouts fail the task
    assert not _retried(job, 50001, attempt=int(task["maxRetryCount"]))  # budget spent


def test_retries_without_codes_never_retry_2_3_or_a_timeout() -> None:
    """The workflow-created job is this synthesized JSON: the renderer (not only bin/submit)
    must make 2 and 3 final (docs/submit.md)."""
    job = render_job(ALL_JOBS["uppercase"], ctx("dev"))  # max_retry_count=1, standard
    policies = job["taskGroups"][0]["taskSpec"]["lifecyclePolicies"]
    assert policies == [{"action": "FAIL_TASK", "actionCondition": {"exitCodes": [2, 3, 50005]}}]
    for code in (2, 3, 50005):
        assert not _retried(job, code), code
    for code in (1, 4, 50001):
        assert _retried(job, code), code


def test_own_retry_codes_join_the_lost_vm_codes() -> None:
    spec = ALL_JOBS["embed"].model_copy(update={"retry_exit_codes": [75]})
    job = render_job(spec, ctx("dev"))
    codes = job["taskGroups"][0]["taskSpec"]["lifecyclePolicies"][0]["actionCondition"]
    assert codes == {"exitCodes": [*VM_LOST_EXIT_CODES, 75]}
    assert _retried(job, 75) and not _retried(job, 3)


@pytest.mark.parametrize("code", [2, 3, 50005])
def test_retrying_a_never_retried_code_is_refused(code: int) -> None:
    spec = JobSpec.model_validate(
        ALL_JOBS["uppercase"].model_dump() | {"retry_exit_codes": [code]})
    with pytest.raises(JobSpecError, match="retry_exit_codes"):
        render_job(spec, ctx("dev"))


def test_no_retries_no_policy_and_import_round_trip_unchanged() -> None:
    job = render_job(ALL_JOBS["embed"], ctx("prod"))  # standard, no retries
    assert "lifecyclePolicies" not in job["taskGroups"][0]["taskSpec"]
    bare = render_job(ALL_JOBS["uppercase"])  # no environment: only what the spec says
    assert "lifecyclePolicies" not in bare["taskGroups"][0]["taskSpec"]


def test_the_job_moved_to_each_rung_carries_that_rungs_model_region_and_retries() -> None:
    """submit/capacity.py `job_on`: the synthesized job (SPOT in dev, RETRY_TASK) moved to
    another rung and region, with the retry policy the renderer gives that rung."""
    import copy
    from types import SimpleNamespace

    from jobs.parts import Rung
    from jobs.render import fill_runtime
    from submit.capacity import Candidate, job_on

    spec = ALL_JOBS["embed"]
    synthed = fill_runtime(render_job(spec, ctx("dev")), task_count=2, parallelism=2,
                           variables={"GPUB_JOB_NAME": "embed-x-1"})
    p: Any = SimpleNamespace(spec=spec, env=SimpleNamespace(name="dev", kind="dev"),
                             run_base="embed-x", job_for=lambda _id: copy.deepcopy(synthed))

    def on(rung: Rung, region: str) -> tuple[dict[str, Any], dict[str, Any]]:
        job = job_on(p, Candidate(0, rung, region))
        return job["allocationPolicy"], job["taskGroups"][0]["taskSpec"]

    alloc, task = on(Rung(provisioning="standard"), "us-central1")
    assert alloc["instances"][0]["policy"]["provisioningModel"] == "STANDARD"
    assert alloc["location"] == {"allowedLocations": ["regions/us-central1"]}
    assert "lifecyclePolicies" not in task and "maxRetryCount" not in task
    assert task["environment"]["variables"]["GPUB_JOB_NAME"] == "embed-x-1"

    alloc, task = on(Rung(provisioning="spot", deadline_s=600), "europe-west4")
    assert alloc["instances"][0]["policy"]["provisioningModel"] == "SPOT"
    assert task["lifecyclePolicies"][0]["actionCondition"]["exitCodes"] == list(
        VM_LOST_EXIT_CODES)

    alloc, _ = on(Rung(provisioning="reservation_bound", reservation="r-l4"), "europe-west4")
    policy = alloc["instances"][0]["policy"]
    assert (policy["provisioningModel"], policy["reservation"]) == ("RESERVATION_BOUND", "r-l4")
    alloc, _ = on(Rung(provisioning="flex_start"), "europe-west4")
    assert alloc["instances"][0]["policy"]["provisioningModel"] == "FLEX_START"
    assert "reservation" not in alloc["instances"][0]["policy"]
    assert synthed["allocationPolicy"]["instances"][0]["policy"]["provisioningModel"] == "SPOT"
