"""The one registry of job rules (`GPUB_JOB_n`): id, severity, scope, what, why, source page and
a passing and a failing fixture, declared once. The checks (`policies/guardrails.py`,
`policies/image_versions.py`), `bin/import-job`, `bin/check`, `bin/submit` and the table in
docs/policies.md all read it (tests/test_job_rules.py keeps the docs' table equal to
`markdown_table()` and runs every rule on its two fixtures).

Severity, the same in every command:
- error: refused everywhere (`bin/import-job` for job-scope rules, `bin/check`, `bin/submit`);
- warning: printed everywhere; fails `bin/check` only with `--strict` or the environment's
  `guardrails.warnings_fail_check`;
- info: printed, never fails.
Scope: `job` rules are about the job itself (every command checks them); `environment` rules
compare the job with one environment's ceilings and identities (`bin/check`, `bin/submit`;
`bin/import-job` has no environment); `declared` rules need the platform's build records
(`bin/check` on synthesized jobs).

An id is never reused for another meaning: a new meaning gets the next number.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Severity = Literal["error", "warning", "info"]
Scope = Literal["job", "environment", "declared"]
FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "asis" / "rules"

_BATCH = "https://cloud.google.com/batch/docs"
_REST = f"{_BATCH}/reference/rest/v1/projects.locations.jobs"


@dataclass(frozen=True)
class JobRule:
    id: str
    severity: Severity
    scope: Scope
    what: str  # what a passing job does
    why: str
    source: str  # the page that says how Batch behaves
    passing: str  # fixture file names under tests/fixtures/asis/rules/
    failing: str

    def fixture(self, which: Literal["passing", "failing"]) -> Path:
        return FIXTURES / (self.passing if which == "passing" else self.failing)


def _rule(n: int, severity: Severity, scope: Scope, what: str, why: str, source: str) -> JobRule:
    rid = f"GPUB_JOB_{n}"
    return JobRule(rid, severity, scope, what, why, source, f"{rid}.pass.json",
                   f"{rid}.fail.json")


RULES: tuple[JobRule, ...] = (
    _rule(1, "error", "job",
          "accelerators fit the machine type: built-in GPUs (G2, G4, A2, A3, A4, A4X) match "
          "type and count; attached GPUs (T4, V100, P100, P4) attach to N1 in an allowed count "
          "with enough vCPU headroom",
          "Compute Engine refuses other combinations, so every task would fail to start",
          "https://cloud.google.com/compute/docs/gpus"),
    _rule(2, "warning", "job",
          "a SPOT/PREEMPTIBLE job retries (maxRetryCount >= 1)",
          "without retries a preempted task fails (exit code 50001) and so does the job",
          f"{_BATCH}/automate-task-retries"),
    _rule(3, "error", "environment",
          "maxRunDuration is at most the environment's `max_run_duration_s` (a job that sets "
          "none gets the ceiling from bin/submit, as a printed change)",
          "a hung task runs and bills until maxRunDuration (Batch's own limit is 14 days)",
          f"{_BATCH}/set-timeouts"),
    _rule(4, "error", "environment",
          "every `regions/R` or `zones/R-x` in allowedLocations is in `allowed_regions`",
          "data residency, and the GPU quota is asked for there",
          f"{_REST}#LocationPolicy"),
    _rule(5, "error", "environment",
          "GPUs per VM at most `max_gpus_per_job`",
          "keeps a typo from asking for 8 H100s",
          "https://cloud.google.com/compute/docs/gpus"),
    _rule(6, "error", "environment",
          "parallelism at most `max_parallelism`",
          "VMs in flight, quota and blast radius",
          f"{_REST}#TaskGroup"),
    _rule(7, "error", "environment",
          "the worst-case cost of a run is at most `max_cost_per_run_usd`",
          "the budget of one run, checked before anything is created",
          "https://cloud.google.com/compute/vm-instance-pricing"),
    _rule(8, "warning", "job",
          "no variable named like a secret in plain `variables` (task, runnables, "
          "taskEnvironments); see the name families below",
          "plain variables are visible in the job's JSON and logs; secretVariables read "
          "Secret Manager",
          f"{_BATCH}/create-run-job-secret-manager"),
    _rule(9, "error", "environment",
          "the job runs as an identity of the environment (a client's run identity or the ad-hoc "
          "identity), never the default compute service account",
          "without serviceAccount Batch uses the default compute account, which often holds "
          "project Editor",
          f"{_BATCH}/create-run-job-custom-service-account"),
    _rule(10, "warning", "job",
          "VMs with GPUs set bootDisk.sizeGb >= 100",
          "CUDA images are large and the default boot disk fills up",
          f"{_BATCH}/create-run-job-gpus"),
    _rule(11, "warning", "job",
          "logsPolicy.destination is CLOUD_LOGGING",
          "otherwise task output is lost with the VM",
          f"{_BATCH}/analyze-job-using-logs"),
    _rule(12, "error", "declared",
          "each platform registry image names a version (or digest) a build recorded in "
          "images/versions.json",
          "a tag nobody pushed fails the first task in production; the local backend ignores "
          "tags, so only this check can catch it",
          "https://cloud.google.com/artifact-registry/docs/docker/names"),
    _rule(13, "error", "job",
          "the job has a task group (taskGroups is required)",
          "Batch refuses a job without one",
          f"{_REST}#Job"),
    _rule(14, "warning", "job",
          "every instance policy names a machine type the catalog knows "
          "(jobs/machine_families.yaml)",
          "without one Batch picks a type from computeResource, so GPUs and cost cannot be "
          "checked",
          f"{_REST}#InstancePolicy"),
    _rule(15, "error", "job",
          "a GCS volume's remotePath is a bucket name or bucket/folder, without `gs://`",
          "Batch mounts `remotePath` with Cloud Storage FUSE and wants the bucket name",
          f"{_REST}#GCS"),
    _rule(16, "warning", "job",
          "VMs with GPUs set installGpuDrivers: true (or use an image that has drivers)",
          "without drivers the GPUs are invisible to the container",
          f"{_BATCH}/create-run-job-gpus"),
    _rule(17, "info", "job",
          "a Spot job that retries limits the retries to preemption (a RETRY_TASK lifecycle "
          "policy on exit code 50001)",
          "maxRetryCount retries every non-zero exit, so a failing application is also rerun "
          "(and billed) up to maxRetryCount times",
          f"{_BATCH}/automate-task-retries"),
    _rule(18, "warning", "job",
          "every task group sets maxRunDuration",
          "Batch sets no task timeout, so a hung task may run for up to 14 days",
          f"{_BATCH}/set-timeouts"),
    _rule(19, "info", "job",
          "allowedLocations is set",
          "without it the job may run in any zone of the job's region (bin/submit pins it to "
          "the environment's region, as a printed change)",
          f"{_REST}#LocationPolicy"),
    _rule(20, "error", "environment",
          "the worst-case cost can be bounded: a priced machine type in the job's region, "
          "no instance template",
          "a cost ceiling cannot hold a run whose price is unknown",
          "https://cloud.google.com/compute/vm-instance-pricing"),
)

BY_ID: dict[str, JobRule] = {r.id: r for r in RULES}
TITLES: dict[str, str] = {r.id: r.what for r in RULES}


def rule(rule_id: str) -> JobRule:
    return BY_ID[rule_id]


def severity(rule_id: str) -> Severity:
    return BY_ID[rule_id].severity


def ids(*, scope: Scope | None = None, severity_: Severity | None = None) -> tuple[str, ...]:
    return tuple(r.id for r in RULES
                 if (scope is None or r.scope == scope)
                 and (severity_ is None or r.severity == severity_))


def markdown_table() -> str:
    """The job-rule table of docs/policies.md (a test keeps the two equal)."""
    lines = ["| id | severity | scope | what | why | source |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in RULES:
        lines.append(f"| {r.id} | {r.severity} | {r.scope} | {r.what} | {r.why} | "
                     f"{r.source} |")
    return "\n".join(lines) + "\n"
