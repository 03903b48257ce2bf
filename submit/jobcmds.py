"""`bin/submit status | list | cancel | logs`: look at and stop jobs of one environment."""

from __future__ import annotations

import json
import re
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from gpub_runner import contract

from submit import ids, synth
from submit.errors import SubmitError
from submit.ui import EnvDefault, JsonOpt, LocalOpt, say

if TYPE_CHECKING:
    from google.cloud import batch_v1

    from submit.backend import Backend
    from submit.batch import Connection

JobIdArg = Annotated[str, typer.Argument(help="Job id as printed by `run` (or its full name).")]
_FULL_NAME = re.compile(r"^projects/([^/]+)/locations/([^/]+)/jobs/([^/]+)$")


def job_id_in_env(value: str, project: str, region: str, env: str) -> str:
    """The short job id of `value` (an id or `projects/P/locations/R/jobs/ID`), refusing
    anything else, and any full name outside the environment's project and region."""
    job_id = value
    if (m := _FULL_NAME.match(value)) is not None:
        if (m.group(1), m.group(2)) != (project, region):
            raise SubmitError(f"JOB_ID: {value!r} is in projects/{m.group(1)}/locations/"
                              f"{m.group(2)}, not in environment {env} (projects/{project}/"
                              f"locations/{region}); give the right --env")
        job_id = m.group(3)
    if not ids.JOB_ID_RE.match(job_id):
        raise SubmitError(f"JOB_ID: {value[:80]!r} is not a Batch job id (lowercase letters, "
                          "digits and '-', starting with a letter, at most 63 chars)")
    return job_id


def _open(env: str, local: bool, job_id: str | None = None
          ) -> tuple[Backend, Connection, str]:
    """The backend, a Batch connection and the checked short job id (validated first: a bad
    id is refused before any service is started or called)."""
    from submit.backend import backend_for

    settings = synth.load_environment(env)
    short = "" if job_id is None else job_id_in_env(job_id, settings.project_id,
                                                     settings.region, env)
    backend = backend_for(local, settings.operator_sa_email)
    return backend, backend.batch(settings.project_id, settings.region), short


def _job_summary(job: batch_v1.Job) -> dict[str, Any]:
    from submit import batch, progress

    group = job.task_groups[0] if job.task_groups else None
    return {
        "job_id": batch.short_id(job.name), "name": job.name, "state": progress.job_state(job),
        "labels": dict(job.labels), "task_count": int(group.task_count) if group else 0,
        "input": batch.variables(job).get(contract.INPUT_PREFIX),
        "output": batch.variables(job).get(contract.OUTPUT_PREFIX),
        "created": job.create_time.isoformat() if job.create_time else None,
        "duration_s": progress.job_duration_s(job),
    }


def status_cmd(job_id: JobIdArg, env: EnvDefault = "dev", local: LocalOpt = False,
               json_out: JsonOpt = False) -> int:
    """Show a job's state and its tasks."""
    from submit import batch, progress

    _, conn, short = _open(env, local, job_id)
    job = batch.get_job(conn, short)
    stats = progress.task_stats(batch.list_tasks(conn, job))
    info = _job_summary(job) | {"tasks": stats.counts, "retries": stats.retries,
                                "preemptions": stats.preemptions}
    if json_out:
        sys.stdout.write(json.dumps(info, sort_keys=True) + "\n")
    else:
        states = ", ".join(f"{k.lower()} {v}" for k, v in sorted(stats.counts.items()))
        sys.stdout.write(
            f"{info['job_id']}  {info['state']}  tasks: {states or 'none yet'}  "
            f"retries {stats.retries}  preemptions {stats.preemptions}\n"
            f"  {info['input']} -> {info['output']}\n")
    return 0


def list_cmd(env: EnvDefault = "dev", local: LocalOpt = False, json_out: JsonOpt = False) -> int:
    """List the environment's jobs, newest first."""
    from submit import batch

    _, conn, _ = _open(env, local)
    jobs = sorted(batch.list_jobs(conn), key=lambda j: j.create_time.timestamp()
                  if j.create_time else 0.0, reverse=True)
    rows = [_job_summary(j) for j in jobs]
    if json_out:
        sys.stdout.write(json.dumps(rows, sort_keys=True) + "\n")
    else:
        for r in rows:
            sys.stdout.write(f"{r['job_id']}\t{r['state']}\t{r['task_count']} tasks\t"
                             f"{r['labels'].get('client', '-')}\t{r['output']}\n")
    return 0


def cancel_cmd(job_id: JobIdArg, env: EnvDefault = "dev", local: LocalOpt = False) -> int:
    """Cancel a job (tasks stop; outputs already written stay). A job that already ended is
    left as it is: exit 0 with a note."""
    from submit import batch

    _, conn, short = _open(env, local, job_id)
    state = batch.get_job(conn, short).status.state.name
    if state in contract.JOB_FINAL_STATES:
        say(f"job {short} already ended ({state}); nothing to cancel")
        return 0
    batch.cancel_job(conn, short)
    say(f"cancel requested for {short}")
    return 0


def logs_cmd(
    job_id: JobIdArg, env: EnvDefault = "dev", local: LocalOpt = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Most entries (production).")
                     ] = 1000,
) -> int:
    """Print a job's task logs (local files, or Cloud Logging in production)."""
    from submit import batch

    backend, conn, short = _open(env, local, job_id)
    job = batch.get_job(conn, short)
    for line in backend.log_lines(conn, job, limit=limit):
        sys.stdout.write(line)
    return 0
