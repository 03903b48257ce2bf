"""`bin/submit`: run a declared job on Google Batch (or the local backend) and watch it.

Start-up matters (users run this by hand, CI runs it in loops): module level imports only
typer, rich and the pure helpers. Google clients are imported by the commands that use them,
and nothing on this path imports `stacks.provider` (seconds of jsii loading).

Exit codes: 0 ok, 1 the awaited job did not succeed, 2 bad input or refused (nothing was
created), 3 the same run is already in progress, 4 a service failed.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from submit import data, ids, manifest, planner, synth, version, watch
from submit.errors import ConflictError, SubmitError
from submit.uris import GcsPrefix, check_disjoint, parse_prefix

if TYPE_CHECKING:
    from google.cloud import batch_v1

    from jobs.spec import JobSpec
    from stacks.settings import EnvironmentSettings
    from submit.batch import Connection
    from submit.costing import CostEstimate, JobShape

COMMANDS = ("run", "status", "list", "cancel", "logs", *data.DATA_COMMANDS)
err = Console(stderr=True, highlight=False, soft_wrap=True)

app = typer.Typer(
    name="submit",
    help="Run a declared job on Google Batch, or on the local backend with --local.",
    add_completion=True,  # --install-completion / --show-completion
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# One --env rule for every command: --env, else $GPUB_ENV, else dev (main()'s default_map).
ENV_HELP = "Environment (dev, prod, ...) [default: $GPUB_ENV, else dev]."
EnvOpt = Annotated[str, typer.Option("--env", "-e", envvar="GPUB_ENV", help=ENV_HELP)]
LocalOpt = Annotated[bool, typer.Option("--local", help="Use the embedded local backend.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


def _say(message: str) -> None:
    err.print(message, markup=False)


# ---------------------------------------------------------------------------------- run


@dataclass
class Prepared:
    """Everything a submit decides before it touches Batch (dry runs stop here)."""

    env: EnvironmentSettings
    spec: JobSpec
    inp: GcsPrefix
    out: GcsPrefix
    plan: planner.Plan
    manifest_data: bytes
    manifest_hash: str
    job_id: str
    run_key: str
    request_id: str
    job_json: dict[str, Any]
    job_text: str
    shape: JobShape
    cost: CostEstimate
    worst_case_usd: float | None


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
        quota = env.guardrails.gpu_quota.get(family)
        if quota is not None:
            caps.append((f"GPU quota {family}={quota} at {shape.gpus_per_vm} per VM",
                         quota // shape.gpus_per_vm * per_node))
    if price_usd_h > 0:
        # Burn-rate cap: at most as many VMs as the run's budget pays for during one hour, so
        # a run that misbehaves cannot spend the whole budget in its first minutes.
        caps.append((f"budget ${budget_usd:g} per VM-hour at ${price_usd_h:.4f}/h",
                     max(1, int(budget_usd // price_usd_h)) * per_node))
    return caps


def prepare(
    *, job: str, env_name: str, input_uri: str, output_uri: str, parallelism: int | None,
    max_cost: float | None, client: str | None, out_dir: str | None, storage: Any,
    submitter: str,
) -> Prepared:
    """Plan a run: pure apart from the storage listing (`storage` is a storage.Client)."""
    from jobs.render import fill_runtime
    from submit import costing, gcs, guard

    env = synth.load_environment(env_name)
    spec = synth.load_spec(env, job)
    inp = parse_prefix(input_uri, "--input")
    out = parse_prefix(output_uri, "--output")
    check_disjoint(inp, out)
    client_name = _client(env, job, client)
    synthed = synth.load_job_json(synth.synth_dir(out_dir), env, spec)
    shape = costing.job_shape(synthed.data)
    static_vars = synthed.data["taskGroups"][0].get("taskSpec", {}).get(
        "environment", {}).get("variables", {})
    fmt = static_vars.get("GPUB_INPUT_FORMAT") or None
    fpt_text = static_vars.get("GPUB_FILES_PER_TASK") or None

    objects = planner.select_inputs(gcs.list_objects(storage, inp, "--input"), fmt)
    if not objects:
        kind = f"*.{fmt} " if fmt else ""
        raise SubmitError(f"--input: no {kind}objects under {inp}")

    budget = min(x for x in (max_cost, env.guardrails.max_cost_per_run_usd) if x is not None)
    price = costing.vm_price_per_hour(shape)
    plan = planner.plan_tasks(
        objects,
        files_per_task=int(fpt_text) if fpt_text else None,
        parallelism_caps=_parallelism_caps(env, spec, shape, parallelism, budget, price),
    )
    data = manifest.encode(plan.objects)
    digest = manifest.manifest_hash(data)
    job_id = ids.make_job_id(job)
    key = ids.run_key(job, env.name, str(inp), str(out))
    variables = {
        "GPUB_INPUT_PREFIX": str(inp),
        "GPUB_OUTPUT_PREFIX": str(out),
        "GPUB_MANIFEST": out.uri(manifest.MANIFEST_NAME),
        "GPUB_JOB_NAME": job_id,
    }
    if plan.files_per_task is not None and str(plan.files_per_task) != fpt_text:
        variables["GPUB_FILES_PER_TASK"] = str(plan.files_per_task)  # repacked for the limit
    labels = ids.build_labels(job=job, env=env.name, client=client_name, submitter=submitter,
                              manifest_hash=digest, key=key)
    filled = fill_runtime(synthed.data, task_count=plan.task_count,
                          parallelism=plan.parallelism, variables=variables, labels=labels)
    cost = costing.estimate(shape, plan)

    # Refusals: before anything is created (a dry run reports them the same way).
    if max_cost is not None and cost.usd > max_cost:
        raise SubmitError(f"--max-cost: the run may cost up to {costing.usd(cost.usd)}, over "
                          f"{costing.usd(max_cost)}; {cost.describe(shape, plan)}")
    limit = env.guardrails.max_cost_per_run_usd
    if cost.usd > limit:
        raise SubmitError(f"the run may cost up to {costing.usd(cost.usd)}, over environment "
                          f"{env.name}'s guardrail max_cost_per_run_usd {costing.usd(limit)}")
    violations = guard.violations(filled, env.guardrails, env.name)
    if violations:
        first = "; ".join(violations[:3])
        more = f" (+{len(violations) - 3} more)" if len(violations) > 3 else ""
        raise SubmitError(f"guardrails of environment {env.name}: {first}{more}")

    return Prepared(
        env=env, spec=spec, inp=inp, out=out, plan=plan, manifest_data=data,
        manifest_hash=digest, job_id=job_id, run_key=key,
        request_id=ids.request_id(job, str(inp), str(out), digest),
        job_json=filled, job_text=json.dumps(filled, indent=2, sort_keys=True),
        shape=shape, cost=cost, worst_case_usd=guard.worst_case_usd(filled),
    )


def _client(env: EnvironmentSettings, job: str, client: str | None) -> str:
    if client is None:
        return "adhoc"  # a platform engineer's own run, not on behalf of a client
    known = {c.name: c for c in env.clients}
    if client not in known:
        names = ", ".join(sorted(known)) or "none"
        raise SubmitError(f"--client: unknown client {client!r} in {env.name} (known: {names})")
    if job not in known[client].jobs:
        raise SubmitError(f"--client: client {client!r} is not onboarded for job {job!r}")
    return client


def _describe(p: Prepared) -> None:
    from submit import costing

    plan = p.plan
    per_task = (f"{plan.files_per_task} files per task" if plan.files_per_task
                else "size-balanced files per task")
    _say(f"job {p.job_id}: {len(plan.objects)} input files ({plan.total_bytes:,} bytes) "
         f"from {p.inp} -> {p.out}")
    _say(f"plan: {plan.task_count} tasks ({per_task}), parallelism {plan.parallelism} "
         f"(limited by {plan.limited_by})")
    for note in plan.notes:
        _say(f"note: {note}")
    _say(p.cost.describe(p.shape, plan))
    if p.worst_case_usd is not None:
        _say(f"worst case (every task retried to its maxRunDuration): "
             f"{costing.usd(p.worst_case_usd)}; environment ceiling "
             f"{costing.usd(p.env.guardrails.max_cost_per_run_usd)}")
    _say(f"manifest: {p.out.uri(manifest.MANIFEST_NAME)} (sha256 {p.manifest_hash}...)")


@app.command("run")
def run_cmd(
    job: Annotated[str, typer.Argument(help="Declared job name (see jobs/registry.py).")],
    env: EnvOpt,
    input_uri: Annotated[str, typer.Option("--input", "-i", help="gs://BUCKET/PREFIX/ to read.")],
    output_uri: Annotated[str, typer.Option("--output", "-o",
                                            help="gs://BUCKET/PREFIX/ to write.")],
    local: LocalOpt = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the job JSON; create nothing.")
                       ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until the job ends.")
                    ] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Allow a non-empty output prefix (done inputs are skipped).")] = False,
    max_cost: Annotated[float | None, typer.Option(
        "--max-cost", min=0.0, help="Refuse when the estimate exceeds USD.")] = None,
    parallelism: Annotated[int | None, typer.Option(
        "--parallelism", "-p", min=1, help="Most tasks at once.")] = None,
    json_out: JsonOpt = False,
    client: Annotated[str | None, typer.Option("--client", help="Client the run is for.")
                      ] = None,
    out_dir: Annotated[str | None, typer.Option(
        "--out", help="Synth output dir [default: cdktf.out, or $GPUB_SYNTH_DIR].")] = None,
    poll_s: Annotated[float, typer.Option("--poll", min=0.1, hidden=True)] = 2.0,
) -> int:
    """Submit JOB on the objects under --input (the `run` word may be left out)."""
    # Validate what needs no service first: bad input must fail fast and create nothing.
    env_settings = synth.load_environment(env)
    spec = synth.load_spec(env_settings, job)
    check_disjoint(parse_prefix(input_uri, "--input"), parse_prefix(output_uri, "--output"))
    _client(env_settings, job, client)
    synth.load_job_json(synth.synth_dir(out_dir), env_settings, spec)

    from submit import gcs, localmode

    if local:
        localmode.start()
    storage = gcs.make_client(env_settings.project_id)
    p = prepare(job=job, env_name=env, input_uri=input_uri, output_uri=output_uri,
                parallelism=parallelism, max_cost=max_cost, client=client, out_dir=out_dir,
                storage=storage, submitter=_submitter())
    _describe(p)
    conn: Connection | None = None
    if not dry_run:
        from submit import batch

        conn = batch.connect(local=local, project=p.env.project_id, region=p.env.region)
        # Checked before the output: a running job's output is never empty, and the more
        # useful answer is which job is running. Its manifest must never be rewritten.
        active = batch.find_active(conn, job=job, run_key=p.run_key, input_uri=str(p.inp),
                                   output_uri=str(p.out))
        if active is not None:
            name = batch.short_id(active.name)
            raise ConflictError(f"job {name} is already running {job} on {p.inp} -> {p.out}; "
                                f"wait for it or cancel it (bin/submit cancel {name})")
    if not overwrite and (found := gcs.first_object(storage, p.out, "--output")) is not None:
        raise SubmitError(f"--output: {p.out} is not empty (e.g. gs://{p.out.bucket}/{found}); "
                          "use a new prefix or --overwrite")
    if conn is None:
        _say("dry run: nothing created")
        sys.stdout.write(p.job_text + "\n")
        return 0

    from submit import batch

    gcs.write_manifest(storage, p.out, manifest.MANIFEST_NAME, p.manifest_data,
                       overwrite=overwrite)
    from google.cloud import batch_v1

    created, is_new = batch.create_job(
        conn, job_id=p.job_id, job=batch_v1.Job.from_json(p.job_text),
        request_id=p.request_id, run_key=p.run_key, manifest_hash=p.manifest_hash)
    job_id = batch.short_id(created.name)
    if is_new:
        _say(f"created job {job_id} (request {p.request_id})")
    else:
        _say(f"this request was already submitted as job {job_id}; not creating another")
    result: dict[str, Any] = {
        "job_id": job_id, "name": created.name, "new": is_new,
        # One type for `created` in every JSON output: the job's creation time (listing.py).
        "created": created.create_time.isoformat() if created.create_time else None,
        "task_count": p.plan.task_count, "parallelism": p.plan.parallelism,
        "files": len(p.plan.objects), "estimated_cost_usd": round(p.cost.usd, 4),
        "manifest": p.out.uri(manifest.MANIFEST_NAME), "request_id": p.request_id,
    }
    code = 0
    if wait:
        code = _wait_and_summarise(conn, job_id, p.plan.task_count, poll_s, p.cost.usd, result)
    if json_out:
        sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    else:
        sys.stdout.write(job_id + "\n")  # for scripts: id=$(bin/submit ...)
    return code


def _wait_and_summarise(conn: Connection, job_id: str, task_count: int, poll_s: float,
                        cost_usd: float | None, result: dict[str, Any]) -> int:
    from submit import progress
    from submit.costing import usd

    job, stats = progress.wait(conn, job_id, task_count=task_count, poll_s=poll_s, console=err)
    state = progress.job_state(job)
    duration = progress.job_duration_s(job)
    _say(f"job {job_id} {state}: tasks {stats.counts.get('SUCCEEDED', 0)}/{task_count} "
         f"succeeded, {stats.counts.get('FAILED', 0)} failed; retries {stats.retries}, "
         f"preemptions {stats.preemptions}; duration "
         f"{'unknown' if duration is None else f'{duration:.0f}s'}"
         + ("" if cost_usd is None else f"; estimated cost at most {usd(cost_usd)}"))
    result.update(state=state, tasks=stats.counts, retries=stats.retries,
                  preemptions=stats.preemptions, duration_s=duration)
    if stats.counts.get("FAILED"):  # why, in words, with the next command (submit/watch.py)
        from submit import batch

        result["failures"] = watch.explain(conn, job, batch.list_tasks(conn, job))
    return 0 if state == "SUCCEEDED" else 1


def _submitter() -> str:
    try:
        who = os.environ.get("GPUB_SUBMITTER") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        who = "unknown"
    return who


# ------------------------------------------------------------ status / list / cancel / logs


def _connect(env: str, local: bool) -> Connection:
    from submit import batch

    settings = synth.load_environment(env)
    return batch.connect(local=local, project=settings.project_id, region=settings.region)


def _job_summary(job: batch_v1.Job) -> dict[str, Any]:
    from submit import batch, progress

    group = job.task_groups[0] if job.task_groups else None
    return {
        "job_id": batch.short_id(job.name), "name": job.name, "state": progress.job_state(job),
        "labels": dict(job.labels), "task_count": int(group.task_count) if group else 0,
        "input": batch.variables(job).get("GPUB_INPUT_PREFIX"),
        "output": batch.variables(job).get("GPUB_OUTPUT_PREFIX"),
        "created": job.create_time.isoformat() if job.create_time else None,
        "duration_s": progress.job_duration_s(job),
    }


EnvDefault = Annotated[str, typer.Option("--env", "-e", envvar="GPUB_ENV", help=ENV_HELP)]


@app.command("status")
def status_cmd(
    job_id: Annotated[str, typer.Argument(help="Job id as printed by `run`.")],
    env: EnvDefault = "dev", local: LocalOpt = False, json_out: JsonOpt = False,
) -> int:
    """Show a job's state and its tasks."""
    from submit import batch, progress

    conn = _connect(env, local)
    job = batch.get_job(conn, job_id)
    tasks = batch.list_tasks(conn, job)
    stats = progress.task_stats(tasks)
    info = _job_summary(job) | {"tasks": stats.counts, "retries": stats.retries,
                                "preemptions": stats.preemptions}
    if stats.counts.get("FAILED"):
        info["failures"] = watch.explain(conn, job, tasks)
    if json_out:
        sys.stdout.write(json.dumps(info, sort_keys=True) + "\n")
    else:
        states = ", ".join(f"{k.lower()} {v}" for k, v in sorted(stats.counts.items()))
        sys.stdout.write(
            f"{info['job_id']}  {info['state']}  tasks: {states or 'none yet'}  "
            f"retries {stats.retries}  preemptions {stats.preemptions}\n"
            f"  {info['input']} -> {info['output']}\n")
    return 0


@app.command("list")
def list_cmd(
    env: EnvDefault = "dev", local: LocalOpt = False, json_out: JsonOpt = False,
    client: Annotated[str | None, typer.Option("--client", help="Only this client's jobs.")
                      ] = None,
    job: Annotated[str | None, typer.Option("--job", help="Only runs of this job.")] = None,
    state: Annotated[str | None, typer.Option(
        "--state", help="Only jobs in this state (running, failed, ...).")] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="Only jobs created since: 12h, 7d, or an ISO date.")] = None,
) -> int:
    """List the environment's jobs, newest first."""
    from submit import batch, listing

    wanted = listing.check_state(state)
    after = listing.parse_since(since) if since is not None else None
    conn = _connect(env, local)
    jobs = sorted(batch.list_jobs(conn), key=lambda j: j.create_time.timestamp()
                  if j.create_time else 0.0, reverse=True)
    rows = listing.filter_jobs([_job_summary(j) for j in jobs], client=client, job=job,
                               state=wanted, since=after)
    if json_out:
        sys.stdout.write(json.dumps(rows, sort_keys=True) + "\n")
    else:
        for r in rows:
            sys.stdout.write(f"{r['job_id']}\t{r['state']}\t{r['task_count']} tasks\t"
                             f"{r['labels'].get('client', '-')}\t{r['output']}\n")
    return 0


@app.command("cancel")
def cancel_cmd(
    job_id: Annotated[str, typer.Argument(help="Job id as printed by `run`.")],
    env: EnvDefault = "dev", local: LocalOpt = False, json_out: JsonOpt = False,
) -> int:
    """Cancel a job (tasks stop; outputs already written stay)."""
    from submit import batch

    conn = _connect(env, local)
    batch.cancel_job(conn, job_id)
    _say(f"cancel requested for {batch.short_id(job_id)}")
    if json_out:
        job = batch.get_job(conn, job_id)
        sys.stdout.write(json.dumps(_job_summary(job) | {"cancel_requested": True},
                                    sort_keys=True) + "\n")
    return 0


data.register(app)  # where, upload, ls, cat (submit/data.py)
watch.register(app)  # logs (submit/watch.py)
version.add_version_option(app)  # --version


# ------------------------------------------------------------------------------- entry


def _one_line(exc: typer.TyperException) -> str:
    format_message = getattr(exc, "format_message", None)
    text = " ".join((format_message() if format_message else str(exc)).split())
    ctx = getattr(exc, "ctx", None)
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    return f"{text}{hint}"


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    # The form `submit JOB --env ...` is `submit run JOB --env ...`.
    if args and not args[0].startswith("-") and args[0] not in COMMANDS:
        args.insert(0, "run")
    try:
        # The one --env rule's last step: --env, else $GPUB_ENV, else dev (click reads
        # default_map after the environment variable).
        code = app(args=args, prog_name="submit", standalone_mode=False,
                   default_map={name: {"env": "dev"} for name in COMMANDS})
    except SubmitError as exc:
        _say(f"submit: error: {exc}")
        code = exc.exit_code
    except typer.Abort:
        code = 130
    except typer.TyperException as exc:  # typer's (vendored) click usage errors
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            _say(ctx.get_help())
        else:
            _say(f"submit: error: {_one_line(exc)}")
        code = int(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        _say("submit: interrupted")
        code = 130
    except Exception as exc:  # JobSpecError and friends are user errors too: one line
        from jobs.errors import JobSpecError

        if not isinstance(exc, JobSpecError):
            raise
        _say(f"submit: error: {exc}")
        code = 2
    sys.stdout.flush()
    sys.exit(code if isinstance(code, int) else 0)
