"""Guardrails on rendered Batch job JSON: run in CI on every `cdktf.out/jobs/**.json` and by the
submit helper before it creates anything.

Pure and fast: plain dict in, list of violations out; imports only the machine catalog (a YAML
file read once), never checkov nor the provider bindings.

Cost bound (GPUB_JOB_7), documented in docs/policies.md: every task attempt occupies one VM for
at most `maxRunDuration`, and a task runs at most `maxRetryCount + 1` times, so a run costs at
most

    taskCount x (maxRetryCount + 1) x maxRunDuration[h] x price per VM-hour / taskCountPerNode

with the Spot price for SPOT jobs and the on-demand price otherwise (catalog prices, VM + GPU).
Parallelism changes the wall time, not the VM-hours, so it is not a factor. In synthesized
templates the task count is not known yet (1); the submit helper checks again with the real
count filled in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PREEMPTION_EXIT_CODE = 50001
SPOT_MODELS = {"SPOT", "PREEMPTIBLE"}
GPU_MIN_BOOT_DISK_GB = 100  # CUDA images are large (same figure as jobs.spec)
# A name part (split on _ - . or case change) that says "this holds a secret": a short word
# on its own (DB_PASS, GH_PAT), or a long one, alone or glued to a prefix (PRIVATEKEY,
# APITOKEN, DBPASSWORD). Families, not a list of names: see tests/test_policies_guardrails.py.
SECRET_TOKENS = frozenset(
    ["PASS", "PWD", "PW", "KEY", "KEYS", "PAT", "BEARER", "JWT", "CRED", "CREDS", "OTP", "PSK"]
)
SECRET_SUFFIX_RE = re.compile(
    r"^[A-Z0-9]*(PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|CREDENTIAL|APIKEY|PRIVATEKEY|"
    r"ACCESSKEY|SECRETKEY|SIGNINGKEY|AUTHKEY|PASS|PAT|KEY)S?$"
)
SECRET_PREFIXES = ("API", "PRIVATE", "ACCESS", "SECRET", "SIGNING", "AUTH", "DB", "GH", "GIT")
DEFAULT_COMPUTE_SA_RE = re.compile(r"-compute@developer\.gserviceaccount\.com$")
DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)s$")

RULES: dict[str, str] = {
    "GPUB_JOB_1": "GPU type and count match the machine type (catalog); GPU VMs install drivers",
    "GPUB_JOB_2": "Spot jobs retry on preemption (maxRetryCount > 0, RETRY_TASK on 50001)",
    "GPUB_JOB_3": "maxRunDuration is set and under the environment's ceiling",
    "GPUB_JOB_4": "allowedLocations only name allowed regions (or their zones)",
    "GPUB_JOB_5": "GPUs per VM under the environment's ceiling",
    "GPUB_JOB_6": "parallelism under the environment's ceiling",
    "GPUB_JOB_7": "worst-case cost per run under the environment's ceiling",
    "GPUB_JOB_8": "no secret-looking variable outside secretVariables",
    "GPUB_JOB_9": "the job runs as its own service account, not the default compute one",
    "GPUB_JOB_10": "GPU VMs get a boot disk of at least 100 GB (CUDA images are large)",
    "GPUB_JOB_11": "the job sends its logs to Cloud Logging",
}
# Rules about the job itself, not an environment's ceilings: what `bin/import-job` reports.
JOB_RULES = ("GPUB_JOB_1", "GPUB_JOB_2", "GPUB_JOB_3", "GPUB_JOB_8", "GPUB_JOB_10", "GPUB_JOB_11")
# The import refusals of old, kept by `bin/import-job --strict`.
STRICT_RULES = ("GPUB_JOB_1", "GPUB_JOB_2", "GPUB_JOB_10")


@dataclass(frozen=True)
class GuardrailLimits:
    """The ceilings of one environment (same fields and defaults as stacks.settings.Guardrails)."""

    max_run_duration_s: int = 24 * 3600
    allowed_regions: tuple[str, ...] = ("europe-west4",)
    max_gpus_per_job: int = 8
    max_parallelism: int = 100
    max_cost_per_run_usd: float = 500.0

    @classmethod
    def from_settings(cls, guardrails: Any) -> GuardrailLimits:
        """From a `stacks.settings.Guardrails` (or anything with the same attributes)."""
        return cls(
            max_run_duration_s=int(guardrails.max_run_duration_s),
            allowed_regions=tuple(guardrails.allowed_regions),
            max_gpus_per_job=int(guardrails.max_gpus_per_job),
            max_parallelism=int(guardrails.max_parallelism),
            max_cost_per_run_usd=float(guardrails.max_cost_per_run_usd),
        )


@dataclass(frozen=True)
class Violation:
    rule_id: str
    path: str  # JSON path in the job, e.g. "taskGroups[0].taskSpec.maxRunDuration"
    message: str

    def __str__(self) -> str:
        return f"{self.rule_id} {self.path}: {self.message}"


@dataclass
class _Ctx:
    env_name: str
    out: list[Violation] = field(default_factory=list)

    def add(self, rule_id: str, path: str, message: str) -> None:
        self.out.append(Violation(rule_id, path, message))


def _int(raw: Any, default: int | None = None) -> int | None:
    # int64 fields serialise as strings in Batch JSON.
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except (TypeError, ValueError):
        return default


def _seconds(raw: Any) -> float | None:
    if isinstance(raw, int | float):
        return float(raw)
    m = DURATION_RE.match(str(raw or ""))
    return float(m.group(1)) if m else None


def looks_secret(name: str) -> bool:
    """API_KEY, dbPassword, DB_PASS, PRIVATEKEY, GH_PAT, BEARER: yes. KEYBOARD_LAYOUT,
    TOKENIZER_NAME, PASSAGE_COUNT, PATH: no."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    for part in (p.upper() for p in re.split(r"[_\-.\s]+", spaced) if p):
        if part in SECRET_TOKENS:
            return True
        m = SECRET_SUFFIX_RE.match(part)
        # PASS, PAT and KEY count glued only to a known prefix (DBPASS, GHPAT), not COMPASS.
        if m and (m[1] not in ("PASS", "PAT", "KEY") or part[: m.start(1)] in SECRET_PREFIXES):
            return True
    return False


def _instances(job: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    instances = (job.get("allocationPolicy") or {}).get("instances") or []
    return [i for i in instances if isinstance(i, Mapping)]


def check_job(
    job_json: Mapping[str, Any], limits: GuardrailLimits | Any, *, env_name: str
) -> list[Violation]:
    """Every guardrail violation of one rendered Batch job (camelCase JSON).

    `limits` is a GuardrailLimits or a `stacks.settings.Guardrails`.
    """
    if not isinstance(limits, GuardrailLimits):
        limits = GuardrailLimits.from_settings(limits)
    ctx = _Ctx(env_name)
    groups = [g for g in job_json.get("taskGroups") or [] if isinstance(g, Mapping)]
    if not groups:
        ctx.add("GPUB_JOB_3", "taskGroups", "the job has no task group")
        return ctx.out
    _machine_and_gpus(job_json, limits, ctx)
    for gi, group in enumerate(groups):
        base = f"taskGroups[{gi}]"
        spec = group.get("taskSpec") or {}
        _spot_retry(job_json, spec, f"{base}.taskSpec", ctx)
        _run_duration(spec, limits, f"{base}.taskSpec", ctx)
        _parallelism(group, limits, base, ctx)
        _secret_variables(group, base, ctx)
    _locations(job_json, limits, ctx)
    _identity(job_json, ctx)
    _cost(job_json, limits, ctx)
    _logging(job_json, ctx)
    return ctx.out


def _boot_disk(policy: Mapping[str, Any], machine: Any, gpus: int, base: str, ctx: _Ctx) -> None:
    if not (gpus or (machine is not None and machine.gpu_count)):
        return
    size = _int((policy.get("bootDisk") or {}).get("sizeGb"))
    if size is None:
        ctx.add(
            "GPUB_JOB_10",
            f"{base}.policy.bootDisk.sizeGb",
            f"GPU job without a boot disk size (the default is too small for CUDA images): add "
            f"bootDisk.sizeGb >= {GPU_MIN_BOOT_DISK_GB}",
        )
    elif size < GPU_MIN_BOOT_DISK_GB:
        ctx.add(
            "GPUB_JOB_10",
            f"{base}.policy.bootDisk.sizeGb",
            f"{size} GB is small for CUDA images: set bootDisk.sizeGb >= {GPU_MIN_BOOT_DISK_GB}",
        )


def _logging(job: Mapping[str, Any], ctx: _Ctx) -> None:
    destination = (job.get("logsPolicy") or {}).get("destination")
    if destination != "CLOUD_LOGGING":
        ctx.add(
            "GPUB_JOB_11",
            "logsPolicy.destination",
            f"logs go to {destination or 'nowhere'} (task output is lost with the VM): add "
            "logsPolicy.destination: CLOUD_LOGGING",
        )


def _machine_and_gpus(job: Mapping[str, Any], limits: GuardrailLimits, ctx: _Ctx) -> None:
    from jobs.catalog import gpu_fit_problem, machine_shape  # data files read once, cached

    for ii, inst in enumerate(_instances(job)):
        base = f"allocationPolicy.instances[{ii}]"
        policy = inst.get("policy") or {}
        machine_name = str(policy.get("machineType") or "")
        accs = [a for a in policy.get("accelerators") or [] if isinstance(a, Mapping)]
        gpus = sum(_int(a.get("count"), 0) or 0 for a in accs)
        machine = machine_shape(machine_name) if machine_name else None
        _boot_disk(policy, machine, gpus, base, ctx)
        if not machine_name:
            if "instanceTemplate" not in inst:
                ctx.add(
                    "GPUB_JOB_1",
                    f"{base}.policy.machineType",
                    "no machine type: Batch picks one from computeResource, so GPUs and cost "
                    "cannot be checked; set policy.machineType",
                )
            continue
        if machine is None:
            ctx.add(
                "GPUB_JOB_1",
                f"{base}.policy.machineType",
                f"{machine_name} is not a machine type the catalog knows (jobs/"
                "machine_families.yaml), so its GPUs and cost cannot be checked; check the "
                "name or add its shape to the catalog",
            )
            continue
        for ai, acc in enumerate(accs):
            a_type, a_count = str(acc.get("type")), _int(acc.get("count"), 0) or 0
            problem = gpu_fit_problem(machine, a_type, a_count)
            if problem:
                ctx.add("GPUB_JOB_1", f"{base}.policy.accelerators[{ai}]", problem)
        if machine.gpu_type:
            gpus = machine.gpu_count
        if gpus and inst.get("installGpuDrivers") is not True:
            ctx.add(
                "GPUB_JOB_1",
                f"{base}.installGpuDrivers",
                "GPU VMs need drivers: add installGpuDrivers: true",
            )
        if gpus > limits.max_gpus_per_job:
            ctx.add(
                "GPUB_JOB_5",
                f"{base}.policy",
                f"{gpus} GPUs per VM exceed the {ctx.env_name} ceiling of "
                f"{limits.max_gpus_per_job}",
            )


def _spot_retry(job: Mapping[str, Any], spec: Mapping[str, Any], base: str, ctx: _Ctx) -> None:
    spot = any(
        str((i.get("policy") or {}).get("provisioningModel", "")).upper() in SPOT_MODELS
        for i in _instances(job)
    )
    if not spot:
        return
    if (_int(spec.get("maxRetryCount"), 0) or 0) <= 0:
        ctx.add(
            "GPUB_JOB_2",
            f"{base}.maxRetryCount",
            "Spot VMs get preempted: set maxRetryCount >= 1",
        )
    retries_50001 = any(
        str(p.get("action", "")).upper() == "RETRY_TASK"
        and PREEMPTION_EXIT_CODE
        in {_int(c) for c in (p.get("actionCondition") or {}).get("exitCodes", [])}
        for p in spec.get("lifecyclePolicies") or []
        if isinstance(p, Mapping)
    )
    if not retries_50001:
        ctx.add(
            "GPUB_JOB_2",
            f"{base}.lifecyclePolicies",
            "Spot job without a retry on preemption: add a RETRY_TASK lifecycle policy on "
            "exit code 50001",
        )


def _run_duration(spec: Mapping[str, Any], limits: GuardrailLimits, base: str, ctx: _Ctx) -> None:
    seconds = _seconds(spec.get("maxRunDuration"))
    if seconds is None:
        ctx.add(
            "GPUB_JOB_3",
            f"{base}.maxRunDuration",
            "maxRunDuration is missing; a hung task would run (and bill) for days",
        )
    elif seconds > limits.max_run_duration_s:
        ctx.add(
            "GPUB_JOB_3",
            f"{base}.maxRunDuration",
            f"{seconds:.0f}s exceeds the {ctx.env_name} ceiling of {limits.max_run_duration_s}s",
        )


def _parallelism(group: Mapping[str, Any], limits: GuardrailLimits, base: str, ctx: _Ctx) -> None:
    parallelism = _int(group.get("parallelism"))
    if parallelism is not None and parallelism > limits.max_parallelism:
        ctx.add(
            "GPUB_JOB_6",
            f"{base}.parallelism",
            f"{parallelism} exceeds the {ctx.env_name} ceiling of {limits.max_parallelism}",
        )


def _variables(env: Any) -> Iterable[str]:
    if isinstance(env, Mapping) and isinstance(env.get("variables"), Mapping):
        yield from (str(k) for k in env["variables"])


def _secret_variables(group: Mapping[str, Any], base: str, ctx: _Ctx) -> None:
    spec = group.get("taskSpec") or {}
    places: list[tuple[str, Any]] = [(f"{base}.taskSpec.environment", spec.get("environment"))]
    for ri, runnable in enumerate(spec.get("runnables") or []):
        if isinstance(runnable, Mapping):
            places.append(
                (f"{base}.taskSpec.runnables[{ri}].environment", runnable.get("environment"))
            )
    for ei, env in enumerate(group.get("taskEnvironments") or []):
        places.append((f"{base}.taskEnvironments[{ei}]", env))
    for path, env in places:
        for name in _variables(env):
            if looks_secret(name):
                ctx.add(
                    "GPUB_JOB_8",
                    f"{path}.variables.{name}",
                    f"{name} looks like a secret: pass it in secretVariables (Secret Manager)",
                )


def _locations(job: Mapping[str, Any], limits: GuardrailLimits, ctx: _Ctx) -> None:
    path = "allocationPolicy.location.allowedLocations"
    locations = ((job.get("allocationPolicy") or {}).get("location") or {}).get("allowedLocations")
    if not locations:
        ctx.add(
            "GPUB_JOB_4",
            path,
            "no allowedLocations: the job may run in any zone of the "
            "API region; pin it to " + ", ".join(limits.allowed_regions),
        )
        return
    for loc in locations:
        kind, _, name = str(loc).partition("/")
        region = name if kind == "regions" else name.rsplit("-", 1)[0] if kind == "zones" else ""
        if region not in limits.allowed_regions:
            ctx.add(
                "GPUB_JOB_4",
                path,
                f"{loc} is outside the allowed regions of "
                f"{ctx.env_name}: {', '.join(limits.allowed_regions)}",
            )


def _identity(job: Mapping[str, Any], ctx: _Ctx) -> None:
    email = str(
        ((job.get("allocationPolicy") or {}).get("serviceAccount") or {}).get("email") or ""
    )
    path = "allocationPolicy.serviceAccount.email"
    if not email:
        ctx.add(
            "GPUB_JOB_9",
            path,
            "no service account: the job would run as the default "
            "compute service account (project Editor)",
        )
    elif DEFAULT_COMPUTE_SA_RE.search(email):
        ctx.add("GPUB_JOB_9", path, f"{email} is the default compute service account")


def run_cost_bound_usd(job: Mapping[str, Any]) -> float | None:
    """The worst-case cost of one run (see the module docstring); None if not computable."""
    from jobs.catalog import get_machine
    from jobs.cost import vm_hours_bound

    total = 0.0
    instances = _instances(job)
    if not instances:
        return None
    policy = instances[0].get("policy") or {}
    machine = get_machine(str(policy.get("machineType") or ""))
    if machine is None:
        return None
    spot = str(policy.get("provisioningModel", "")).upper() in SPOT_MODELS
    price = machine.price_usd_h(spot)
    for group in job.get("taskGroups") or []:
        spec = group.get("taskSpec") or {}
        seconds = _seconds(spec.get("maxRunDuration"))
        if seconds is None:
            return None
        tasks = len(group.get("taskEnvironments") or []) or _int(group.get("taskCount"), 1) or 1
        per_node = max(_int(group.get("taskCountPerNode"), 1) or 1, 1)
        attempts = (_int(spec.get("maxRetryCount"), 0) or 0) + 1
        total += vm_hours_bound(tasks * seconds, per_node, attempts) * price
    return total


def _cost(job: Mapping[str, Any], limits: GuardrailLimits, ctx: _Ctx) -> None:
    bound = run_cost_bound_usd(job)
    if bound is not None and bound > limits.max_cost_per_run_usd:
        ctx.add(
            "GPUB_JOB_7",
            "taskGroups[0]",
            f"worst case {bound:.2f} USD per run (tasks x attempts x maxRunDuration x VM "
            f"price) exceeds the {ctx.env_name} ceiling of {limits.max_cost_per_run_usd:.2f} USD",
        )
