"""Which exit codes Batch retries: the one lifecycle policy of a rendered task spec and its
maxRetryCount (`lifecycle_policy`), for the renderer (jobs/render.py) and each rung of the
capacity ladder (submit/capacity.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobs.errors import JobSpecError
from jobs.spec import PREEMPTION_EXIT_CODE, EnvKind

if TYPE_CHECKING:
    from jobs.spec import JobSpec

# Batch's reserved exit codes (https://cloud.google.com/batch/docs/troubleshooting#reserved-exit-codes,
# also gpub_runner.contract.BATCH_RESERVED_EXIT_CODES): the ones that mean the VM was lost,
# so the task never failed on its own: 50001 Spot VM preempted, 50002 VM reporting timeout,
# 50003 VM rebooted during the task, 50004 VM unresponsive, 50006 VM recreated during the task.
VM_LOST_EXIT_CODES = (50001, 50002, 50003, 50004, 50006)
MAX_RUN_DURATION_EXIT_CODE = 50005  # the task ran too long: a retry would run too long again
# The runner's 2 (bad configuration) and 3 (failure budget exceeded), gpub_runner.contract
# NO_RETRY_EXIT_CODES, and 50005: never retried, in jobs from bin/submit and from workflows.
NEVER_RETRIED_EXIT_CODES = (2, 3, MAX_RUN_DURATION_EXIT_CODE)


def lifecycle_policy(spec: JobSpec, kind: EnvKind | None) -> tuple[int | None, dict[str, Any]]:
    """(maxRetryCount, the one lifecycle policy or {}) of `spec` in an environment of `kind`
    (None: no environment).

    Batch takes one lifecycle policy per task spec ("Currently we only support one lifecycle
    policy"; an exit code it does not name gets the default: retry while maxRetryCount lasts,
    https://cloud.google.com/batch/docs/reference/rest/v1/projects.locations.jobs#TaskSpec),
    and RETRY_TASK "will retry failed tasks if we notice any exit code match and fail tasks if
    no match is found" (.../rest/v1/projects.locations.jobs#LifecyclePolicy). So one policy
    says both things, and in an environment:
    - retrying on preemption means RETRY_TASK on every code for a lost VM (VM_LOST_EXIT_CODES)
      plus the job's own retry_exit_codes; every other code, an application failure, the
      runner's 2 and 3 and 50005 (maxRunDuration exceeded) included, fails the task;
    - retries without RETRY_TASK codes: FAIL_TASK on NEVER_RETRIED_EXIT_CODES, the rest retried;
    - retry_exit_codes naming 2, 3 or 50005 is refused (a retry cannot fix them).
    Application failures inside a task (a bad input file) are the runner's business: it
    records them and fails the task with exit 3 only past the job's failure_budget, so they
    have their own budget and never spend maxRetryCount. Without an environment (an import
    round trip) exactly what the spec says is rendered.
    """
    retries, codes = spec.retry_policy_for(kind)
    if kind is None:
        return retries, _policy("RETRY_TASK", codes)
    bad = [c for c in codes if c in NEVER_RETRIED_EXIT_CODES]
    if bad:
        raise JobSpecError(
            f"retry_exit_codes: {bad} can never be retried (2: bad configuration, 3: failure "
            f"budget exceeded, 50005: maxRunDuration exceeded); allowed: any other code",
            "retry_exit_codes",
        )
    if PREEMPTION_EXIT_CODE in codes:
        codes = [*VM_LOST_EXIT_CODES, *(c for c in codes if c not in VM_LOST_EXIT_CODES)]
    if codes:
        return retries, _policy("RETRY_TASK", codes)
    if retries:
        return retries, _policy("FAIL_TASK", list(NEVER_RETRIED_EXIT_CODES))
    return retries, {}


def _policy(action: str, codes: list[int]) -> dict[str, Any]:
    return {"action": action, "actionCondition": {"exitCodes": codes}} if codes else {}
