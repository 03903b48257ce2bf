"""`bin/submit run`: plan, claim the output location, create the job, optionally watch it."""

from __future__ import annotations

import getpass
import json
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from submit import manifest, synth
from submit.prepare import Prepared, check_locations, describe, prepare
from submit.ui import EnvOpt, JsonOpt, LocalOpt, say

if TYPE_CHECKING:
    from google.cloud import storage  # type: ignore[attr-defined]

    from stacks.settings import EnvironmentSettings
    from submit.backend import Backend
    from submit.batch import Connection
    from submit.ownership import Decision


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
    """Submit JOB on the objects under --input (the `run` word may be left out)."""
    from submit.backend import backend_for

    # Validate what needs no service first: bad input must fail fast and create nothing.
    env_settings, _, _, _ = check_locations(env, job, client, input_uri, output_uri)
    synth.load_job_json(synth.synth_dir(out_dir), env_settings,
                        synth.load_spec(env_settings, job))

    _use_local_stack(env_settings, out_dir)
    backend = backend_for(local, env_settings.operator_sa_email)
    storage = backend.storage(env_settings.project_id)
    p = prepare(job=job, env_name=env, input_uri=input_uri, output_uri=output_uri,
                parallelism=parallelism, max_cost=max_cost, client=client, out_dir=out_dir,
                storage=storage, submitter=_submitter())
    describe(p)
    if dry_run:
        _dry_run_checks(p, storage, overwrite)
        say("dry run: nothing created")
        sys.stdout.write(p.job_text(f"{p.run_base}-1") + "\n")
        return 0

    conn = backend.batch(p.env.project_id, p.env.region)
    job_id, is_new, created = _claim_and_create(p, conn, storage, overwrite)
    result: dict[str, Any] = {
        "job_id": job_id, "name": f"{conn.parent}/jobs/{job_id}", "new": is_new,
        # One type for `created` in every JSON output: the job's creation time (listing.py).
        "created": created,
        "task_count": p.plan.task_count, "parallelism": p.plan.parallelism,
        "files": len(p.plan.objects), "estimated_cost_usd": round(p.cost.usd, 4),
        "manifest": p.out.uri(manifest.MANIFEST_NAME), "request_id": _request_id(job_id),
    }
    code = 0
    if wait:
        code = _wait_and_summarise(backend, conn, job_id, p.plan.task_count, poll_s,
                                   p.cost.usd, result)
    if json_out:
        sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    else:
        sys.stdout.write(job_id + "\n")  # for scripts: id=$(bin/submit ...)
    return code


def _use_local_stack(env: EnvironmentSettings, out_dir: str | None) -> None:
    """With --local, the local cloud enforces the IAM (and runs the topics and workflows) of
    the environment's synthesized stack, as Google Cloud would after a deploy (no effect on
    Google)."""
    from submit import localmode

    stack = synth.synth_dir(out_dir) / "stacks" / env.stack_name / "cdk.tf.json"
    localmode.use_stacks([stack.resolve()] if stack.is_file() else [])


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
    last_state = _state(conn, previous) if previous else None
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
    claim = p.record.model_copy(update={"attempts": attempts}).encode()
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


def _state(conn: Connection, job_id: str) -> str | None:
    from google.api_core import exceptions as gexc

    try:
        return str(conn.client.get_job(name=f"{conn.parent}/jobs/{job_id}").status.state.name)
    except gexc.NotFound:
        return None


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
        f"preemptions {stats.preemptions}; duration "
        f"{'unknown' if duration is None else f'{duration:.0f}s'}"
        + ("" if cost_usd is None else f"; estimated cost at most {usd(cost_usd)}"))
    result.update(state=state, tasks=stats.counts, retries=stats.retries,
                  preemptions=stats.preemptions, duration_s=duration)
    if stats.counts.get("FAILED"):  # why, in words, with the next command (submit/watch.py)
        result["failures"] = watch.explain(conn, job, batch.list_tasks(conn, job), backend)
    return 0 if state == "SUCCEEDED" else 1


def _submitter() -> str:
    try:
        who = os.environ.get("GPUB_SUBMITTER") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        who = "unknown"
    return who
