"""Plan a run before anything is created: environment, tenant, inputs, tasks, manifest, cost,
guardrails (a dry run stops after this)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gpub_runner import contract

from submit import ids, manifest, planner, synth, tenancy
from submit.errors import SubmitError
from submit.ui import say
from submit.uris import GcsPrefix, check_disjoint, parse_prefix

if TYPE_CHECKING:
    from jobs.spec import JobSpec
    from stacks.settings import EnvironmentSettings
    from submit.costing import CostEstimate, JobShape
    from submit.ownership import RunRecord


@dataclass
class Prepared:
    """Everything a submit decides before it touches Batch."""

    env: EnvironmentSettings
    spec: JobSpec
    client: str
    inp: GcsPrefix
    out: GcsPrefix
    plan: planner.Plan
    manifest_data: bytes
    manifest_hash: str
    run_base: str  # job ids of this run are `<run_base>-<attempt>`
    run_key: str
    job_json: dict[str, Any]  # filled in for attempt 1
    shape: JobShape
    cost: CostEstimate
    worst_case_usd: float | None
    record: RunRecord
    findings: list[str] = field(default_factory=list)  # "warning: ..." / "info: ..." lines

    def job_for(self, job_id: str) -> dict[str, Any]:
        """The job JSON of the attempt `job_id` (only GPUB_JOB_NAME differs)."""
        job = copy.deepcopy(self.job_json)
        job["taskGroups"][0]["taskSpec"]["environment"]["variables"][contract.JOB_NAME] = job_id
        return job

    def job_text(self, job_id: str) -> str:
        return json.dumps(self.job_for(job_id), indent=2, sort_keys=True)


def check_locations(env_name: str, job: str, client: str | None, input_uri: str,
                    output_uri: str) -> tuple[EnvironmentSettings, str, GcsPrefix, GcsPrefix]:
    """Everything about the arguments that needs no service: exit 2 before any call."""
    env = synth.load_environment(env_name)
    synth.load_spec(env, job)
    inp = parse_prefix(input_uri, "--input")
    out = parse_prefix(output_uri, "--output")
    check_disjoint(inp, out)
    client_name = tenancy.resolve_client(env, job, client)
    tenancy.check_locations(env, list(synth.environments().values()), job, client_name,
                            inp, out)
    return env, client_name, inp, out


def _parallelism_caps(
    env: EnvironmentSettings, spec: JobSpec, shape: JobShape, requested: int | None,
    budget_usd: float, price_usd_h: float,
) -> list[tuple[str, int | None]]:
    from jobs.catalog import gpu_family

    per_node = shape.tasks_per_node
    caps: list[tuple[str, int | None]] = [
        ("--parallelism", requested),
        (f"job {spec.name} max_parallelism", spec.max_parallelism),
        (f"environment {env.name} guardrail max_parallelism", env.guardrails.max_parallelism),
    ]
    if shape.gpu_type and shape.gpus_per_vm > 0:
        family = gpu_family(shape.gpu_type)
        quota = env.gpu_limit(family)  # the stack's quota preference for the family
        if quota is not None:
            caps.append((f"GPU quota {family}={quota} at {shape.gpus_per_vm} per VM",
                         quota // shape.gpus_per_vm * per_node))
    if price_usd_h > 0:
        # Burn-rate cap: at most as many VMs as the run's budget pays for during one hour, so
        # a run that misbehaves cannot spend the whole budget in its first minutes.
        caps.append((f"budget ${budget_usd:g} per VM-hour at ${price_usd_h:.4f}/h",
                     max(1, int(budget_usd // price_usd_h)) * per_node))
    return caps


def _check_name_lengths(out: GcsPrefix, plan: planner.Plan) -> None:
    """Every bookkeeping object of the run must be a legal object name (at most 1,024 bytes,
    https://cloud.google.com/storage/docs/naming-objects); refuse now rather than fail at
    upload time."""
    longest = max(plan.objects, key=lambda o: len(o.name.encode()))
    marker = out.prefix + contract.done_marker_name(longest.name, "", "")
    size = len(marker.encode())
    if size > contract.OBJECT_NAME_MAX_BYTES:
        raise SubmitError(
            f"--output: object names under it would reach {size} bytes (done marker of "
            f"{longest.name[:40]!r}...); Cloud Storage allows "
            f"{contract.OBJECT_NAME_MAX_BYTES}: use a shorter --output prefix")


def _fail_fast_on_config_errors(job: dict[str, Any]) -> None:
    """Exit codes 2 and 3 of the runner mean "retrying cannot help". Batch retries any non-zero
    exit up to maxRetryCount unless a lifecycle policy says otherwise, and takes one policy
    (https://cloud.google.com/batch/docs/reference/rest/v1/projects.locations.jobs#TaskSpec):
    - no policy and retries: add FAIL_TASK on 2 and 3 (every other code is still retried);
    - RETRY_TASK on some codes: every other code, 2 and 3 included, already fails the task
      ("fail tasks if no match is found"), unless the list names 2 or 3: refused."""
    spec = job["taskGroups"][0].setdefault("taskSpec", {})
    policies = spec.get("lifecyclePolicies") or []
    retries = int(spec.get("maxRetryCount", 0) or 0)
    if not policies:
        if retries > 0:
            spec["lifecyclePolicies"] = [{"action": "FAIL_TASK", "actionCondition": {
                "exitCodes": list(contract.NO_RETRY_EXIT_CODES)}}]
        return
    for policy in policies:
        codes = {int(c) for c in policy.get("actionCondition", {}).get("exitCodes", [])}
        if policy.get("action") == "RETRY_TASK" and codes & set(contract.NO_RETRY_EXIT_CODES):
            raise SubmitError(
                f"job: retry_exit_codes {sorted(codes)} include the runner's exit codes "
                f"{list(contract.NO_RETRY_EXIT_CODES)} (bad configuration, failure budget), "
                "which a retry cannot fix; remove them from the job declaration")


def _run_identity(job: dict[str, Any], env: EnvironmentSettings, client: str) -> None:
    """Tasks run as the client's run identity (`run-<c>`, which can touch that client's
    bucket only), an ad-hoc run as the ad-hoc identity (the data bucket's `jobs/`): Batch
    gives each VM the job's `allocationPolicy.serviceAccount`
    (https://cloud.google.com/batch/docs/create-run-job-custom-service-account)."""
    email = env.adhoc_sa_email if client == tenancy.ADHOC else env.run_sa_email(client)
    job.setdefault("allocationPolicy", {}).setdefault("serviceAccount", {})["email"] = email


def prepare(
    *, job: str, env_name: str, input_uri: str, output_uri: str, parallelism: int | None,
    max_cost: float | None, client: str | None, out_dir: str | None, storage: Any,
    submitter: str,
) -> Prepared:
    """Plan a run: pure apart from the storage listing (`storage` is a storage.Client)."""
    from jobs.billing_labels import billing_labels
    from jobs.render import fill_runtime
    from submit import costing, gcs, guard
    from submit.ownership import RunRecord

    env, client_name, inp, out = check_locations(env_name, job, client, input_uri, output_uri)
    spec = synth.load_spec(env, job)
    synthed = synth.load_job_json(synth.synth_dir(out_dir), env, spec)
    shape = costing.job_shape(synthed.data, env.region)
    static_vars = synthed.data["taskGroups"][0].get("taskSpec", {}).get(
        "environment", {}).get("variables", {})
    fmt = static_vars.get("GPUB_INPUT_FORMAT") or None
    fpt_text = static_vars.get(contract.FILES_PER_TASK) or None

    objects = planner.select_inputs(gcs.list_objects(storage, inp, "--input"), fmt)
    if not objects:
        raise SubmitError(f"--input: no {f'*.{fmt} ' if fmt else ''}objects under {inp}")

    budget = min(x for x in (max_cost, env.guardrails.max_cost_per_run_usd) if x is not None)
    price = costing.vm_price_per_hour(shape)
    plan = planner.plan_tasks(
        objects,
        files_per_task=int(fpt_text) if fpt_text else None,
        parallelism_caps=_parallelism_caps(env, spec, shape, parallelism, budget, price),
    )
    _check_name_lengths(out, plan)
    data = manifest.encode(plan.objects)
    digest = manifest.manifest_hash(data)
    base = ids.run_base(job, client_name, str(out), digest)
    key = ids.run_key(env.name, str(out))
    labels = ids.build_labels(job=job, env=env.name, client=client_name, submitter=submitter,
                              manifest_hash=digest, key=key)
    filled = fill_runtime(synthed.data, task_count=plan.task_count, parallelism=plan.parallelism,
                          variables=_runtime_variables(inp, out, base, plan, fpt_text),
                          labels=labels,
                          vm_labels=billing_labels(client=client_name, job=job, env=env.name,
                                                   run=base))
    _fail_fast_on_config_errors(filled)
    _run_identity(filled, env, client_name)
    cost = costing.estimate(shape, plan)
    _refuse_over_limits(filled, env, cost, max_cost, shape, plan)

    record = RunRecord(job=job, client=client_name, env=env.name, input=str(inp),
                       output=str(out), manifest_hash=digest)
    return Prepared(
        env=env, spec=spec, client=client_name, inp=inp, out=out, plan=plan,
        manifest_data=data, manifest_hash=digest, run_base=base, run_key=key,
        job_json=filled, shape=shape, cost=cost,
        worst_case_usd=guard.worst_case_usd(filled, env.region), record=record,
        findings=[*guard.findings(filled, env.guardrails, env.name, env.region),
                  *guard.price_warnings(filled, guard.cost_bound(filled, env.region))],
    )


def _runtime_variables(inp: GcsPrefix, out: GcsPrefix, base: str, plan: planner.Plan,
                       files_per_task: str | None) -> dict[str, str]:
    """The run's GPUB_* variables for attempt 1 (`files_per_task`: the synthesized value)."""
    variables = {
        contract.INPUT_PREFIX: str(inp),
        contract.OUTPUT_PREFIX: str(out),
        contract.MANIFEST: out.uri(manifest.MANIFEST_NAME),
        contract.JOB_NAME: ids.run_job_id(base, 1),
    }
    if plan.files_per_task is not None and str(plan.files_per_task) != files_per_task:
        variables[contract.FILES_PER_TASK] = str(plan.files_per_task)  # repacked for the limit
    return variables


def _refuse_over_limits(filled: dict[str, Any], env: EnvironmentSettings, cost: CostEstimate,
                        max_cost: float | None, shape: JobShape, plan: planner.Plan) -> None:
    """The refusals, before anything is created (a dry run reports them the same way):
    --max-cost, the environment's cost ceiling, its guardrails."""
    from submit import costing, guard

    if max_cost is not None and cost.usd > max_cost:
        raise SubmitError(f"--max-cost: the run may cost up to {costing.usd(cost.usd)}, over "
                          f"{costing.usd(max_cost)}; {cost.describe(shape, plan)}")
    limit = env.guardrails.max_cost_per_run_usd
    if cost.usd > limit:
        raise SubmitError(f"the run may cost up to {costing.usd(cost.usd)}, over environment "
                          f"{env.name}'s guardrail max_cost_per_run_usd {costing.usd(limit)}")
    violations = guard.violations(filled, env.guardrails, env.name, env.region)
    if violations:
        first = "; ".join(violations[:3])
        more = f" (+{len(violations) - 3} more)" if len(violations) > 3 else ""
        raise SubmitError(f"guardrails of environment {env.name}: {first}{more}")


def describe(p: Prepared) -> None:
    from submit import costing

    plan = p.plan
    per_task = (f"{plan.files_per_task} files per task" if plan.files_per_task
                else "size-balanced files per task")
    say(f"run {p.run_base}: {len(plan.objects)} input files ({plan.total_bytes:,} bytes) "
        f"from {p.inp} -> {p.out}")
    say(f"plan: {plan.task_count} tasks ({per_task}), parallelism {plan.parallelism} "
        f"(limited by {plan.limited_by})")
    for note in plan.notes:
        say(f"note: {note}")
    for finding in p.findings:
        say(finding)
    say(p.cost.describe(p.shape, plan))
    if p.worst_case_usd is not None:
        say(f"worst case (every task retried to its maxRunDuration): "
            f"{costing.usd(p.worst_case_usd)}; environment ceiling "
            f"{costing.usd(p.env.guardrails.max_cost_per_run_usd)}")
    say(f"manifest: {p.out.uri(manifest.MANIFEST_NAME)} (sha256 {p.manifest_hash}...)")
