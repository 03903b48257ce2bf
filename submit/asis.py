"""Run a job as it is written: an existing Batch job file (`run --config FILE`, JSON or the YAML
`gcloud batch jobs submit --config` reads), or a declared job that reads no inputs through the
runner contract (no `input_format`/`handler`: typically an imported job).

Such a run keeps the job's shape: its task count, parallelism and labels stay as written. What
submit must change anyway is said on screen and listed under `changes` in `--json`:
- labels `env`, `client`, `job`, `submitter`, `manifest-hash` (what `list`, `status` and the
  duplicate check read);
- `parallelism` when `--parallelism` asks for another one;
- `allocationPolicy.serviceAccount.email`, when unset: the ad-hoc identity, or with `--client`
  that client's run identity (a file naming any other account is refused, exit 2, with the fix;
  an instance-template job must already name it, since Batch requires the template's account);
- `allocationPolicy.location.allowedLocations`, when unset: the environment's region;
- `taskSpec.maxRunDuration`, when unset: the environment's ceiling `max_run_duration_s`.
Only what the job explicitly asks beyond a ceiling is refused. The job rules apply as to every
run (policies/job_rules.py): errors refuse (exit 2) naming field, limit and fix; warnings and
info are printed. The worst-case cost is always printed, or "cannot bound: <why>" (which the
environment's cost ceiling and `--max-cost` refuse).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.cost_bound import CostBound
from submit import ids
from submit.errors import ConflictError, SubmitError
from submit.ui import say

if TYPE_CHECKING:
    from stacks.settings import EnvironmentSettings
    from submit.backend import Backend
    from submit.batch import Connection

_NAME_BAD = re.compile(r"[^a-z0-9-]+")
_NAME_MAX = ids.JOB_ID_MAX - 15  # room for "-<10 hex>-<attempt>"


@dataclass
class AsIs:
    """A job about to run as written, and every change submit made to it."""

    env: EnvironmentSettings
    name: str
    client: str | None
    job: dict[str, Any]
    base: str  # job ids of this run are `<base>-<attempt>`
    changes: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)  # "warning: ..." / "info: ..." lines
    cost: CostBound = field(default_factory=lambda: CostBound(None, "not computed"))

    @property
    def parallelism(self) -> int | None:
        value = self.job["taskGroups"][0].get("parallelism")
        return int(value) if value else None

    @property
    def task_count(self) -> int:
        group = self.job["taskGroups"][0]  # taskEnvironments overrides taskCount
        return len(group.get("taskEnvironments") or []) or int(group.get("taskCount") or 1)

    def job_text(self, job_id: str) -> str:
        del job_id  # the job's own name never depends on the attempt
        return json.dumps(self.job, indent=2, sort_keys=True)


def name_from_file(path: Path) -> str:
    """A Batch-id-safe job name from a file name: `Spot L4 finetune.yaml` -> `spot-l4-finetune`."""
    stem = _NAME_BAD.sub("-", path.stem.lower()).strip("-")
    stem = stem if stem[:1].isalpha() else f"job-{stem}".rstrip("-")
    return stem[:_NAME_MAX].rstrip("-") or "job"


def load_config(path: Path) -> dict[str, Any]:
    """The Batch job JSON of `path`, through the importer: refused (exit 2, with the JSON
    path) only when Batch itself would refuse it; output-only fields are dropped."""
    from jobs import from_batch_json, to_batch_json

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SubmitError(f"--config: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SubmitError(f"--config: {path} is not UTF-8 text") from None
    return to_batch_json(from_batch_json(text, name=name_from_file(path)))


def declared_job(env: EnvironmentSettings, job: str, out_dir: str | None) -> dict[str, Any]:
    """The synthesized JSON of a declared job that reads no inputs through the runner."""
    from submit import synth

    spec = synth.load_spec(env, job)
    if spec.input_format is not None or spec.handler is not None:
        raise SubmitError(
            f"--input/--output: job {job!r} reads its inputs through the runner "
            f"(input_format {spec.input_format!r}); give both --input and --output")
    return copy.deepcopy(synth.load_job_json(synth.synth_dir(out_dir), env, spec).data)


def _set_label(job: dict[str, Any], key: str, value: str, changes: list[str]) -> None:
    labels = job.setdefault("labels", {})
    old = labels.get(key)
    if old is not None and old != value:
        changes.append(f"label {key}: {old!r} -> {value!r}")
    labels[key] = value


def _pin_region(env: EnvironmentSettings, job: dict[str, Any], changes: list[str]) -> None:
    location = job.setdefault("allocationPolicy", {}).setdefault("location", {})
    if not location.get("allowedLocations"):
        # The job is created in the environment's region; pinning it there says so.
        location["allowedLocations"] = [f"regions/{env.region}"]
        changes.append(f"allocationPolicy.location.allowedLocations: unset -> "
                       f"['regions/{env.region}'] (the environment's region)")


def _cap_run_duration(env: EnvironmentSettings, job: dict[str, Any], changes: list[str]) -> None:
    """A task group without maxRunDuration gets the environment's ceiling (Batch itself sets no
    task timeout, https://cloud.google.com/batch/docs/set-timeouts); one that asks for more
    than the ceiling is refused by GPUB_JOB_3, never silently lowered."""
    ceiling = env.guardrails.max_run_duration_s
    for gi, group in enumerate(job["taskGroups"]):
        spec = group.setdefault("taskSpec", {})
        if not spec.get("maxRunDuration"):
            spec["maxRunDuration"] = f"{ceiling}s"
            changes.append(f"taskGroups[{gi}].taskSpec.maxRunDuration: unset -> '{ceiling}s' "
                           f"(environment {env.name}'s ceiling max_run_duration_s)")


def _identity(env: EnvironmentSettings, job: dict[str, Any], client: str | None,
              changes: list[str]) -> None:
    """Tasks run as an identity of the environment only: the client's run identity with
    --client, else the ad-hoc identity (both from `env.layout`). Batch gives each VM the job's
    serviceAccount; with an instance template the template and the job must name the same account
    (https://cloud.google.com/batch/docs/create-run-job-custom-service-account), and submit
    neither reads nor changes templates."""
    target = env.run_sa_email(client) if client is not None else env.adhoc_sa_email
    who = (f"client {client}'s run identity" if client is not None
           else "the ad-hoc identity of runs without --client")
    field_ = "allocationPolicy.serviceAccount.email"
    sa = job.setdefault("allocationPolicy", {}).setdefault("serviceAccount", {})
    email = sa.get("email")
    templates = [i.get("instanceTemplate") for i in job["allocationPolicy"].get("instances") or []
                 if isinstance(i, dict) and i.get("instanceTemplate")]
    if templates and email != target:
        raise SubmitError(
            f"{field_}: this job uses instance template {templates[0]!r}, whose service account "
            f"Batch requires the job to name, and this run must run as {target} ({who}); submit "
            f"cannot change a template: create the template with {target} and set {field_} to "
            "it, or replace instanceTemplate with policy.machineType")
    if email in (None, "") or (email == env.adhoc_sa_email and not templates):
        # Unset, or the ad-hoc identity a declared job is synthesized with: --client moves it
        # to that client's run identity.
        sa["email"] = target
        if email != target:
            was = repr(email) if email else "unset"
            changes.append(f"{field_}: {was} -> {target!r} ({who})")
    elif email != target:
        other = (f"--client C to run as {env.layout.run_sa_id('C')}@" if client is None
                 else "the client whose run identity it is as --client")
        raise SubmitError(
            f"{field_}: {email!r} is not an identity this run may use; it runs as {target} "
            f"({who}): remove the field, or pass {other}")


def adapt(env: EnvironmentSettings, name: str, job: dict[str, Any], *, client: str | None,
          parallelism: int | None, submitter: str) -> AsIs:
    """Apply what submit must change, recording each change; check the job rules: errors
    refuse (exit 2), warnings and info become findings."""
    from submit import guard

    job = copy.deepcopy(job)
    job.pop("name", None)
    changes: list[str] = []
    if not job.get("taskGroups"):
        raise SubmitError("taskGroups: the job has no task group; add one (GPUB_JOB_13)")
    group = job["taskGroups"][0]
    if parallelism is not None and int(group.get("parallelism") or 0) != parallelism:
        changes.append(f"parallelism: {group.get('parallelism', 'unset')} -> {parallelism} "
                       "(--parallelism)")
        group["parallelism"] = parallelism
    _pin_region(env, job, changes)
    _cap_run_duration(env, job, changes)
    _identity(env, job, client, changes)
    digest = hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()
    for key, value in (("job", name), ("env", env.name), ("client", client or "none"),
                       ("submitter", submitter), ("manifest-hash", digest[:16])):
        _set_label(job, key, ids.sanitize_label(value), changes)

    refusals = guard.violations(job, env.guardrails, env.name, env.region)
    if refusals:
        more = f" (+{len(refusals) - 3} more)" if len(refusals) > 3 else ""
        raise SubmitError(
            f"guardrails of environment {env.name}: {'; '.join(refusals[:3])}{more}")
    findings = guard.findings(job, env.guardrails, env.name, env.region)
    cost = guard.cost_bound(job, env.region)
    findings += guard.price_warnings(job, cost)
    base = ids.run_base(name, client or "none", "as-declared", digest)
    from jobs import billing_labels  # what billing sees: on the VMs, GPUs and disks

    billing_labels.apply(job, billing_labels.billing_labels(
        client=client or "none", job=name, env=env.name, run=base))
    return AsIs(env=env, name=name, client=client, job=job, base=base, changes=changes,
                findings=findings, cost=cost)


def describe(a: AsIs) -> None:
    say(f"run {a.base}: job {a.name} as written: {a.task_count} tasks, parallelism "
        f"{a.job['taskGroups'][0].get('parallelism', 'unset (Batch decides)')}")
    for change in a.changes:
        say(f"changed: {change}")
    for finding in a.findings:
        say(finding)
    say(f"cost: {a.cost.describe()}; environment ceiling "
        f"${a.env.guardrails.max_cost_per_run_usd:,.2f}")


def create(a: AsIs, conn: Connection) -> tuple[str, bool, str | None]:
    """Create the next attempt; an attempt of the same job that is still active: exit 3."""
    from google.cloud import batch_v1
    from gpub_runner import contract

    from submit import batch, ownership

    jobs = batch.list_jobs(conn)
    for existing in jobs:
        short = batch.short_id(existing.name)
        if (ids.attempt_of(short, a.base) is not None
                and existing.status.state.name not in contract.JOB_FINAL_STATES):
            raise ConflictError(f"this job is already running as {short} "
                                f"({existing.status.state.name}); not creating another")
    job_id = ids.run_job_id(a.base, ownership.next_attempt(jobs, a.base))
    created, is_new = batch.create_job(conn, job_id=job_id,
                                       job=batch_v1.Job.from_json(a.job_text(job_id)),
                                       request_id=ids.request_id(job_id))
    say(f"created job {batch.short_id(created.name)}")
    return (batch.short_id(created.name), is_new,
            created.create_time.isoformat() if created.create_time else None)


def run_as_written(
    *, job: str | None, config: Path | None, env: EnvironmentSettings, backend: Backend,
    client: str | None, parallelism: int | None, max_cost: float | None, out_dir: str | None,
    submitter: str, dry_run: bool,
) -> tuple[AsIs, Connection | None, tuple[str, bool, str | None] | None]:
    """Plan (and unless `dry_run`, create) a run of a job as written."""
    from submit import tenancy
    from submit.costing import usd

    if config is not None:
        source = load_config(config)
        name = job or name_from_file(config)
    elif job is not None:
        source = declared_job(env, job, out_dir)
        name = job
    else:
        raise SubmitError("JOB: give a declared job name, or --config FILE to run a Batch job "
                          "file as it is written")
    if client is not None and config is None:
        tenancy.resolve_client(env, name, client)  # onboarded for this declared job
    elif client is not None and client not in {c.name for c in env.clients}:
        known = ", ".join(sorted(c.name for c in env.clients)) or "none"
        raise SubmitError(f"--client: unknown client {client!r} in {env.name} (known: {known})")
    a = adapt(env, name, source, client=client, parallelism=parallelism, submitter=submitter)
    if max_cost is not None:
        if a.cost.usd is None:
            raise SubmitError(f"--max-cost: cannot bound the cost of this run: {a.cost.why}")
        if a.cost.usd > max_cost:
            raise SubmitError(f"--max-cost: the run may cost up to {usd(a.cost.usd)} (every "
                              f"task retried to its maxRunDuration: {a.cost.why}), over "
                              f"{usd(max_cost)}")
    describe(a)
    if dry_run:
        return a, None, None
    conn = backend.batch(env.project_id, env.region)
    return a, conn, create(a, conn)
