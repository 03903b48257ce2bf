"""`bin/submit run`: plan, claim the output location, create the job, optionally watch it."""

from __future__ import annotations

import getpass
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from submit import manifest, synth
from submit.errors import SubmitError
from submit.prepare import Prepared, check_locations, describe, prepare
from submit.ui import EnvOpt, JsonOpt, LocalOpt, say

if TYPE_CHECKING:
    from google.cloud import storage  # type: ignore[attr-defined]

    from stacks.settings import EnvironmentSettings
    from submit.backend import Backend
    from submit.batch import Connection
    from submit.capacity import Ladder
    from submit.ownership import Decision


def run_cmd(
    env: EnvOpt,
    job: Annotated[str | None, typer.Argument(
        help="Declared job name (see jobs/registry.py); with --config, the run's name.")] = None,
    input_uri: Annotated[str | None, typer.Option(
        "--input", "-i", help="gs://BUCKET/PREFIX/ to read (jobs that read inputs).")] = None,
    output_uri: Annotated[str | None, typer.Option(
        "--output", "-o", help="gs://BUCKET/PREFIX/ to write (jobs that read inputs).")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", help="Run this Batch job file (JSON or YAML, as `gcloud batch jobs submit "
        "--config` takes) as it is written, through the same guardrails.")] = None,
    local: LocalOpt = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the job JSON; create nothing.")
                       ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until the job ends.")
                    ] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Remove what the output holds first, then run from scratch.")
    ] = False,
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
    """Submit JOB on the objects under --input (the `run` word may be left out); or run a job
    as it is written: `--config FILE`, or a declared job that reads no inputs."""
    from submit.backend import backend_for

    o = _Run(env=env, job=job, client=client, out_dir=out_dir, backend=partial(backend_for, local),
             dry_run=dry_run, wait=wait, max_cost=max_cost, parallelism=parallelism,
             json_out=json_out, poll_s=poll_s)
    if config is not None or (input_uri is None and output_uri is None):
        if config is not None and (input_uri or output_uri):
            raise SubmitError("--config: the job runs as written; --input/--output apply to "
                              "declared jobs that read inputs through the runner")
        return _run_as_written(o, config)
    if job is None:
        raise SubmitError("JOB: missing the declared job name (bin/submit JOB --input ... "
                          "--output ...)")
    if input_uri is None or output_uri is None:
        missing = "--output" if input_uri is not None else "--input"
        raise SubmitError(f"{missing}: give both --input and --output (or neither, for a job "
                          "that reads no inputs)")
    return _run_declared(o, job, input_uri, output_uri, overwrite)


@dataclass(frozen=True)
class _Run:
    """The options of one `run` that both ways of running (declared, as written) take."""

    env: str
    job: str | None
    client: str | None
    out_dir: str | None
    # The backend for an operator identity: Google Cloud or the local cloud, as --local chose.
    # Creating it starts nothing: a dry run or a refusal never touches a service.
    backend: Callable[[str], Backend]
    dry_run: bool
    wait: bool
    max_cost: float | None
    parallelism: int | None
    json_out: bool
    poll_s: float


def _run_declared(o: _Run, job: str, input_uri: str, output_uri: str, overwrite: bool) -> int:
    """A declared job on the objects under --input: plan, climb the capacity ladder, report."""
    # Validate what needs no service first: bad input must fail fast and create nothing.
    env_settings, _, _, _ = check_locations(o.env, job, o.client, input_uri, output_uri)
    synth.load_job_json(synth.synth_dir(o.out_dir), env_settings,
                        synth.load_spec(env_settings, job))

    _use_local_stack(env_settings, o.out_dir)
    backend = o.backend(env_settings.operator_sa_email)
    storage = backend.storage(env_settings.project_id)
    p = prepare(job=job, env_name=o.env, input_uri=input_uri, output_uri=output_uri,
                parallelism=o.parallelism, max_cost=o.max_cost, client=o.client,
                out_dir=o.out_dir, storage=storage, submitter=_submitter())
    describe(p)
    from submit import capacity  # the ladder: quota preflight, then rung by rung (docs/capacity.md)

    ladder = capacity.plan_ladder(p, backend)
    p.job_json = capacity.job_on(p, ladder.current)
    if o.dry_run:
        _dry_run_checks(p, storage, overwrite)
        say("dry run: nothing created")
        sys.stdout.write(p.job_text(f"{p.run_base}-1") + "\n")
        return 0

    conn, result = _submit_on_ladder(p, backend, storage, ladder, overwrite, o)
    code = 0
    if o.wait:
        say(f"waiting on {ladder.current.label()} (job {result['job_id']})")
        code = _wait_and_summarise(backend, conn, result["job_id"], p.plan.task_count,
                                   o.poll_s, p.cost.usd, result)
        result["files_failed"] = capacity.files_failed(storage, p.out)
        say(f"files failed {result['files_failed']} (the runner's failure budget, never "
            "retried by Batch)")
    if o.json_out:
        sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    else:
        sys.stdout.write(result["job_id"] + "\n")  # for scripts: id=$(bin/submit ...)
    return code


def _submit_on_ladder(p: Prepared, backend: Backend, storage: storage.Client, ladder: Ladder,
                      overwrite: bool, o: _Run) -> tuple[Connection, dict[str, Any]]:
    """Claim the output and create the job on the ladder's current rung, then climb it; the
    connection of the job that runs the batch, and the run's result (`--json`)."""
    from submit import capacity

    conn = backend.batch(p.env.project_id, ladder.current.region)
    capacity.refuse_if_active_elsewhere(p, backend, ladder)
    job_id, is_new, created = _claim_and_create(p, conn, storage, overwrite)
    if is_new:
        first = job_id
        conn, job_id = capacity.climb(p, backend, storage, ladder, conn, job_id, o.poll_s,
                                       watch_last=o.wait)
        if job_id != first:  # the ladder moved the run: report the job that runs it
            created = _create_time(conn, job_id)
    return conn, {
        "job_id": job_id, "name": f"{conn.parent}/jobs/{job_id}", "new": is_new,
        # One type for `created` in every JSON output: the job's creation time (listing.py).
        "created": created,
        "task_count": p.plan.task_count, "parallelism": p.plan.parallelism,
        "files": len(p.plan.objects), "estimated_cost_usd": round(p.cost.usd, 4),
        "manifest": p.out.uri(manifest.MANIFEST_NAME), "request_id": _request_id(job_id),
        "rung": ladder.current.label(), "region": ladder.current.region, "ladder": ladder.trail,
    }


def _run_as_written(o: _Run, config: Path | None) -> int:
    """`run --config FILE`, or a declared job without inputs: its shape kept (submit/asis.py)."""
    from submit import asis

    env = synth.load_environment(o.env)
    _use_local_stack(env, o.out_dir)
    backend = o.backend(env.operator_sa_email)
    a, conn, created = asis.run_as_written(
        job=o.job, config=config, env=env, client=o.client, parallelism=o.parallelism,
        max_cost=o.max_cost, out_dir=o.out_dir, submitter=_submitter(), dry_run=o.dry_run,
        backend=backend)
    if created is None or conn is None:
        say("dry run: nothing created")
        sys.stdout.write(a.job_text(a.base) + "\n")
        return 0
    job_id, is_new, created_at = created
    result: dict[str, Any] = {
        "job_id": job_id, "name": f"{conn.parent}/jobs/{job_id}", "new": is_new,
        "created": created_at, "task_count": a.task_count,
        "parallelism": a.parallelism, "changes": a.changes,
        "findings": a.findings, "request_id": _request_id(job_id),
        "worst_case_usd": a.cost.usd, "cost": a.cost.describe(),
    }
    code = 0
    if o.wait:
        code = _wait_and_summarise(backend, conn, job_id, a.task_count, o.poll_s, None, result)
    sys.stdout.write((json.dumps(result, sort_keys=True) if o.json_out else job_id) + "\n")
    return code


def _use_local_stack(env: EnvironmentSettings, out_dir: str | None) -> None:
    """With --local, the local cloud enforces the IAM (and runs the topics and workflows) of
    the environment's synthesized stacks (the platform stack and its client shards), as
    Google Cloud would after a deploy (no effect on Google)."""
    from submit import localmode

    localmode.use_stacks(synth.stack_files(env, out_dir))


def _request_id(job_id: str) -> str:
    from submit import ids

    return ids.request_id(job_id)


def _dry_run_checks(p: Prepared, storage: storage.Client, overwrite: bool) -> None:
    """What a dry run can tell without Batch: whether the output location would be refused."""
    from submit import gcs, ownership

    first = gcs.first_object(storage, p.out, "--output")
    data, _ = gcs.read_object(storage, p.out, ownership.RUN_RECORD, "--output")
    record = ownership.RunRecord.decode(data)
    ownership.decide(ours=p.record, record=record, first_object=first, last_state=None,
                     overwrite=overwrite)


def _claim_and_create(p: Prepared, conn: Connection, storage: storage.Client,
                      overwrite: bool) -> tuple[str, bool, str | None]:
    """Apply the output-ownership rules (submit/ownership.py), then create the attempt.
    Returns the job id, whether this call created it, and its creation time."""
    from google.cloud import batch_v1

    from submit import batch, gcs, ids, ownership

    jobs = batch.list_jobs(conn)
    # Checked before the output's contents: a running job's output is never empty, and the
    # useful answer is which job is running. Its manifest must never be rewritten.
    ownership.refuse_if_active(jobs, p.out)
    data, generation = gcs.read_object(storage, p.out, ownership.RUN_RECORD, "--output")
    record = ownership.RunRecord.decode(data)
    previous = record.attempts[-1] if record and record.attempts else None
    from submit.capacity import attempt_state  # in the region the ladder put it in

    last_state = attempt_state(conn, record, previous) if record and previous else None
    decision = ownership.decide(
        ours=p.record, record=record, first_object=gcs.first_object(storage, p.out, "--output"),
        last_state=last_state, overwrite=overwrite)
    if decision.action == "done":
        say(f"job {decision.previous} already completed this run (SUCCEEDED); not creating "
            "another (use --overwrite to recompute)")
        return str(decision.previous), False, _create_time(conn, str(decision.previous))

    # The run record is the lock of the output location: every change to it is conditional
    # on the generation read above, so of two racing submits exactly one goes on (the other
    # gets exit 3 before it deleted or wrote anything).
    _say_decision(decision, p, last_state)
    job_id = ids.run_job_id(p.run_base, ownership.next_attempt(
        jobs, p.run_base, record.attempts if record else ()))
    attempts = [*(record.attempts if record and decision.action == "resume" else []), job_id]
    claim = p.record.model_copy(update={"attempts": attempts,
                                        "claimed_at": time.time()}).encode()
    if decision.action == "overwrite":
        if data is not None:
            gcs.delete_object(storage, p.out, ownership.RUN_RECORD, "--output",
                              if_generation_match=generation)
        gcs.put_object(storage, p.out, ownership.RUN_RECORD, claim, "--output",
                       if_generation_match=0)
        removed = gcs.delete_prefix(storage, p.out, "--output", keep=(ownership.RUN_RECORD,),
                                    first=(manifest.MANIFEST_NAME,))
        say(f"--overwrite: removed {removed} objects under {p.out}")
    else:  # new: the record must not exist yet; resume: it must be the one we read
        gcs.put_object(storage, p.out, ownership.RUN_RECORD, claim, "--output",
                       if_generation_match=generation)
    existing, _ = gcs.read_object(storage, p.out, manifest.MANIFEST_NAME, "--output")
    if existing != p.manifest_data:
        gcs.write_manifest(storage, p.out, manifest.MANIFEST_NAME, p.manifest_data,
                           overwrite=True)
    created, is_new = batch.create_job(
        conn, job_id=job_id, job=batch_v1.Job.from_json(p.job_text(job_id)),
        request_id=ids.request_id(job_id))
    job_id = batch.short_id(created.name)
    say(f"created job {job_id} (request {ids.request_id(job_id)})" if is_new
        else f"this request was already submitted as job {job_id}; not creating another")
    return job_id, is_new, created.create_time.isoformat() if created.create_time else None


def _say_decision(decision: Decision, p: Prepared, last_state: str | None) -> None:
    if decision.action == "resume":
        say(f"resuming the run of job {decision.previous} "
            f"({last_state or 'no longer known to Batch'}) in {p.out}: inputs with a done "
            "marker are skipped")


def _create_time(conn: Connection, job_id: str) -> str | None:
    from google.api_core import exceptions as gexc

    try:
        job = conn.client.get_job(name=f"{conn.parent}/jobs/{job_id}")
    except gexc.NotFound:
        return None
    return job.create_time.isoformat() if job.create_time else None


def _wait_and_summarise(backend: Backend, conn: Connection, job_id: str, task_count: int,
                        poll_s: float, cost_usd: float | None, result: dict[str, Any]) -> int:
    from submit import batch, progress, watch
    from submit.costing import usd
    from submit.ui import err

    job, stats = progress.wait(conn, job_id, task_count=task_count, poll_s=poll_s, console=err)
    state = progress.job_state(job)
    duration = progress.job_duration_s(job)
    say(f"job {job_id} {state}: tasks {stats.counts.get('SUCCEEDED', 0)}/{task_count} "
        f"succeeded, {stats.counts.get('FAILED', 0)} failed; retries {stats.retries}, "
        f"preemptions {stats.preemptions} (lost VMs), application failures "
        f"{stats.app_failures}"
        + ("" if stats.last_exit_code is None else
           f", exit code {stats.last_exit_code} (last attempt)") + "; duration "
        f"{'unknown' if duration is None else f'{duration:.0f}s'}"
        + ("" if cost_usd is None else f"; estimated cost at most {usd(cost_usd)}"))
    result.update(state=state, tasks=stats.counts, retries=stats.retries,
                  preemptions=stats.preemptions, application_failures=stats.app_failures,
                  exit_code=stats.last_exit_code, duration_s=duration)
    if stats.counts.get("FAILED"):  # why, in words, with the next command (submit/watch.py)
        result["failures"] = watch.explain(conn, job, batch.list_tasks(conn, job), backend)
    return 0 if state == "SUCCEEDED" else 1


def _submitter() -> str:
    try:
        who = os.environ.get("GPUB_SUBMITTER") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        who = "unknown"
    return who
