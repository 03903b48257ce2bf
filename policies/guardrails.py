"""Job rules on rendered Batch job JSON: run by `bin/check` on every synthesized job, by
`bin/submit` before it creates anything and by `bin/import-job` (job-scope rules only).

Pure and fast: plain dict in, list of violations out. Each rule's id, severity, scope, text and
source page live in `policies/job_rules.py` (the one registry); this module holds the checks.
The limits are the environment's `stacks.settings.Guardrails` (the one guardrails model);
the cost bound is `jobs.cost_bound.job_cost_bound`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jobs.cost_bound import as_int, as_seconds, job_cost_bound
from policies import job_rules
from policies.job_rules import Scope, Severity
from policies.secret_names import looks_secret as looks_secret
from stacks.settings import Guardrails

GuardrailLimits = Guardrails  # the one model of an environment's ceilings (former name)
PREEMPTION_EXIT_CODE = 50001
SPOT_MODELS = {"SPOT", "PREEMPTIBLE"}
GPU_MIN_BOOT_DISK_GB = 100  # CUDA images are large (same figure as jobs.spec)
DEFAULT_COMPUTE_SA_RE = re.compile(r"-compute@developer\.gserviceaccount\.com$")
RULES: dict[str, str] = dict(job_rules.TITLES)
ALL_SCOPES: tuple[Scope, ...] = ("job", "environment")


@dataclass(frozen=True)
class Violation:
    rule_id: str
    path: str  # JSON path in the job, e.g. "taskGroups[0].taskSpec.maxRunDuration"
    message: str

    @property
    def severity(self) -> Severity:
        return job_rules.severity(self.rule_id)

    def __str__(self) -> str:
        return f"{self.rule_id} {self.path}: {self.message}"


@dataclass
class _Ctx:
    env_name: str
    limits: Guardrails
    scopes: tuple[Scope, ...]
    out: list[Violation] = field(default_factory=list)

    def add(self, rule_id: str, path: str, message: str) -> None:
        if job_rules.rule(rule_id).scope in self.scopes:
            self.out.append(Violation(rule_id, path, message))


def errors(found: Iterable[Violation]) -> list[Violation]:
    return [v for v in found if v.severity == "error"]


def _instances(job: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    instances = (job.get("allocationPolicy") or {}).get("instances") or []
    return [i for i in instances if isinstance(i, Mapping)]


def check_job(
    job_json: Mapping[str, Any], limits: Guardrails | None = None, *, env_name: str,
    region: str | None = None, scopes: tuple[Scope, ...] = ALL_SCOPES,
) -> list[Violation]:
    """Every rule violation of one rendered Batch job (camelCase JSON) for the environment
    `env_name` with ceilings `limits` (default: the default Guardrails). `region`: where a job
    without allowedLocations runs (default: the first allowed region)."""
    ctx = _Ctx(env_name, limits or Guardrails(), scopes)
    groups = [g for g in job_json.get("taskGroups") or [] if isinstance(g, Mapping)]
    if not groups:
        ctx.add("GPUB_JOB_13", "taskGroups", "the job has no task group: add one under "
                "taskGroups (Batch requires it)")
        return ctx.out
    _machine_and_gpus(job_json, ctx)
    spot = any(str((i.get("policy") or {}).get("provisioningModel", "")).upper() in SPOT_MODELS
               for i in _instances(job_json))
    for gi, group in enumerate(groups):
        base = f"taskGroups[{gi}]"
        spec = group.get("taskSpec") or {}
        if spot:
            _spot_retry(spec, f"{base}.taskSpec", ctx)
        _run_duration(spec, f"{base}.taskSpec", ctx)
        _parallelism(group, base, ctx)
        _secret_variables(group, base, ctx)
        _volumes(spec, f"{base}.taskSpec", ctx)
    _locations(job_json, ctx)
    _identity(job_json, ctx)
    _cost(job_json, region or ctx.limits.allowed_regions[0], ctx)
    _logging(job_json, ctx)
    return ctx.out


def _boot_disk(policy: Mapping[str, Any], base: str, ctx: _Ctx) -> None:
    size = as_int((policy.get("bootDisk") or {}).get("sizeGb"))
    if size is None:
        ctx.add("GPUB_JOB_10", f"{base}.policy.bootDisk.sizeGb",
                "GPU job without a boot disk size (the default is too small for CUDA images): "
                f"add bootDisk.sizeGb >= {GPU_MIN_BOOT_DISK_GB}")
    elif size < GPU_MIN_BOOT_DISK_GB:
        ctx.add("GPUB_JOB_10", f"{base}.policy.bootDisk.sizeGb",
                f"{size} GB is small for CUDA images: set bootDisk.sizeGb >= "
                f"{GPU_MIN_BOOT_DISK_GB}")


def _logging(job: Mapping[str, Any], ctx: _Ctx) -> None:
    destination = (job.get("logsPolicy") or {}).get("destination")
    if destination != "CLOUD_LOGGING":
        ctx.add("GPUB_JOB_11", "logsPolicy.destination",
                f"logs go to {destination or 'nowhere'} (task output is lost with the VM): add "
                "logsPolicy.destination: CLOUD_LOGGING")


def _machine_and_gpus(job: Mapping[str, Any], ctx: _Ctx) -> None:
    from jobs.catalog import gpu_fit_problem, machine_shape  # data files read once, cached

    for ii, inst in enumerate(_instances(job)):
        base = f"allocationPolicy.instances[{ii}]"
        policy = inst.get("policy") or {}
        machine_name = str(policy.get("machineType") or "")
        accs = [a for a in policy.get("accelerators") or [] if isinstance(a, Mapping)]
        gpus = sum(as_int(a.get("count"), 0) or 0 for a in accs)
        machine = machine_shape(machine_name) if machine_name else None
        if not machine_name:
            if "instanceTemplate" not in inst:
                ctx.add("GPUB_JOB_14", f"{base}.policy.machineType",
                        "no machine type: Batch picks one from computeResource, so GPUs and "
                        "cost cannot be checked; set policy.machineType")
            continue
        if machine is None:
            ctx.add("GPUB_JOB_14", f"{base}.policy.machineType",
                    f"{machine_name} is not a machine type the catalog knows (jobs/"
                    "machine_families.yaml), so its GPUs and cost cannot be checked; check the "
                    "name or add its shape to the catalog")
            continue
        for ai, acc in enumerate(accs):
            a_type, a_count = str(acc.get("type")), as_int(acc.get("count"), 0) or 0
            problem = gpu_fit_problem(machine, a_type, a_count)
            if problem:
                ctx.add("GPUB_JOB_1", f"{base}.policy.accelerators[{ai}]", problem)
        if machine.gpu_type:
            gpus = machine.gpu_count
        if gpus:
            _boot_disk(policy, base, ctx)
            if inst.get("installGpuDrivers") is not True:
                ctx.add("GPUB_JOB_16", f"{base}.installGpuDrivers",
                        "GPU VMs need drivers: add installGpuDrivers: true (or use a boot image "
                        "that has them)")
        if gpus > ctx.limits.max_gpus_per_job:
            ctx.add("GPUB_JOB_5", f"{base}.policy",
                    f"{gpus} GPUs per VM exceed the {ctx.env_name} ceiling of "
                    f"{ctx.limits.max_gpus_per_job}: use a machine type with fewer GPUs")


def _retries_only_preemption(spec: Mapping[str, Any]) -> bool:
    return any(
        str(p.get("action", "")).upper() == "RETRY_TASK"
        and PREEMPTION_EXIT_CODE
        in {as_int(c) for c in (p.get("actionCondition") or {}).get("exitCodes", [])}
        for p in spec.get("lifecyclePolicies") or [] if isinstance(p, Mapping))


def _spot_retry(spec: Mapping[str, Any], base: str, ctx: _Ctx) -> None:
    """Batch retries a failed task up to maxRetryCount times whatever its exit code; a RETRY_TASK
    lifecycle policy retries only the codes it lists and fails the rest
    (https://cloud.google.com/batch/docs/automate-task-retries)."""
    retries = as_int(spec.get("maxRetryCount"), 0) or 0
    if retries <= 0:
        ctx.add("GPUB_JOB_2", f"{base}.maxRetryCount",
                "Spot VMs get preempted and this job never retries, so a preemption (exit code "
                "50001) fails the task: set maxRetryCount >= 1, with a RETRY_TASK lifecycle "
                "policy on exit code 50001 to retry preemptions only")
    elif not _retries_only_preemption(spec):
        ctx.add("GPUB_JOB_17", f"{base}.lifecyclePolicies",
                f"maxRetryCount {retries} retries every failure, so an application error is "
                f"also rerun (and billed) up to {retries} times: add a RETRY_TASK lifecycle "
                "policy on exit code 50001 to retry preemptions only")


def _run_duration(spec: Mapping[str, Any], base: str, ctx: _Ctx) -> None:
    seconds = as_seconds(spec.get("maxRunDuration"))
    ceiling = ctx.limits.max_run_duration_s
    if seconds is None:
        ctx.add("GPUB_JOB_18", f"{base}.maxRunDuration",
                "no maxRunDuration: Batch sets no task timeout, so a hung task may run (and "
                "bill) for up to 14 days; set one (bin/submit applies the environment's "
                "ceiling)")
    elif seconds > ceiling:
        ctx.add("GPUB_JOB_3", f"{base}.maxRunDuration",
                f"{seconds:.0f}s exceeds the {ctx.env_name} ceiling of {ceiling}s: set "
                f"maxRunDuration to at most {ceiling}s, or leave it out to get the ceiling")


def _parallelism(group: Mapping[str, Any], base: str, ctx: _Ctx) -> None:
    parallelism = as_int(group.get("parallelism"))
    ceiling = ctx.limits.max_parallelism
    if parallelism is not None and parallelism > ceiling:
        ctx.add("GPUB_JOB_6", f"{base}.parallelism",
                f"{parallelism} exceeds the {ctx.env_name} ceiling of {ceiling}: set "
                f"parallelism to at most {ceiling} (or pass --parallelism)")


def _variables(env: Any) -> Iterable[str]:
    if isinstance(env, Mapping) and isinstance(env.get("variables"), Mapping):
        yield from (str(k) for k in env["variables"])


def _secret_variables(group: Mapping[str, Any], base: str, ctx: _Ctx) -> None:
    spec = group.get("taskSpec") or {}
    places: list[tuple[str, Any]] = [(f"{base}.taskSpec.environment", spec.get("environment"))]
    for ri, runnable in enumerate(spec.get("runnables") or []):
        if isinstance(runnable, Mapping):
            places.append(
                (f"{base}.taskSpec.runnables[{ri}].environment", runnable.get("environment")))
    for ei, env in enumerate(group.get("taskEnvironments") or []):
        places.append((f"{base}.taskEnvironments[{ei}]", env))
    for path, env in places:
        for name in _variables(env):
            if looks_secret(name):
                ctx.add("GPUB_JOB_8", f"{path}.variables.{name}",
                        f"{name} looks like a secret: pass it in secretVariables (Secret "
                        "Manager)")


def _volumes(spec: Mapping[str, Any], base: str, ctx: _Ctx) -> None:
    for vi, volume in enumerate(spec.get("volumes") or []):
        gcs = (volume or {}).get("gcs") if isinstance(volume, Mapping) else None
        remote = str((gcs or {}).get("remotePath") or "")
        if remote.startswith("gs://"):
            ctx.add("GPUB_JOB_15", f"{base}.volumes[{vi}].gcs.remotePath",
                    f"{remote!r}: Batch wants a bucket name or bucket/folder; write "
                    f"{remote.removeprefix('gs://')!r}")


def _locations(job: Mapping[str, Any], ctx: _Ctx) -> None:
    path = "allocationPolicy.location.allowedLocations"
    locations = ((job.get("allocationPolicy") or {}).get("location") or {}).get("allowedLocations")
    allowed = ", ".join(ctx.limits.allowed_regions)
    if not locations:
        ctx.add("GPUB_JOB_19", path, "no allowedLocations: the job may run in any zone of its "
                "region; add allowedLocations: [regions/R] (bin/submit pins it to the "
                "environment's region)")
        return
    for loc in locations:
        kind, _, name = str(loc).partition("/")
        region = name if kind == "regions" else name.rsplit("-", 1)[0] if kind == "zones" else ""
        if region not in ctx.limits.allowed_regions:
            ctx.add("GPUB_JOB_4", path, f"{loc} is outside the allowed regions of "
                    f"{ctx.env_name}: use regions/R or zones/R-x with R in {allowed}")


def _identity(job: Mapping[str, Any], ctx: _Ctx) -> None:
    email = str(((job.get("allocationPolicy") or {}).get("serviceAccount") or {}).get("email")
                or "")
    path = "allocationPolicy.serviceAccount.email"
    if not email:
        ctx.add("GPUB_JOB_9", path, "no service account: the job would run as the default "
                "compute service account (often project Editor); bin/submit sets the "
                "environment's identity")
    elif DEFAULT_COMPUTE_SA_RE.search(email):
        ctx.add("GPUB_JOB_9", path, f"{email} is the default compute service account: remove "
                "the field (bin/submit sets the environment's identity)")


def run_cost_bound_usd(job: Mapping[str, Any], region: str = "europe-west4") -> float | None:
    """The worst-case cost of one run; None when it cannot be bounded (GPUB_JOB_20 says why)."""
    return job_cost_bound(job, region).usd


def _cost(job: Mapping[str, Any], region: str, ctx: _Ctx) -> None:
    bound = job_cost_bound(job, region)
    ceiling = ctx.limits.max_cost_per_run_usd
    if bound.usd is None:
        ctx.add("GPUB_JOB_20", bound.path or "allocationPolicy",
                f"cannot bound the cost ({bound.why}), so the {ctx.env_name} ceiling of "
                f"{ceiling:.2f} USD cannot hold")
    elif bound.usd > ceiling:
        ctx.add("GPUB_JOB_7", "taskGroups[0]",
                f"{bound.describe()} exceeds the {ctx.env_name} ceiling of {ceiling:.2f} USD: "
                "lower taskCount, maxRetryCount or maxRunDuration")
