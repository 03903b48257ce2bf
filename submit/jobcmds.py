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
    """Show a job's state and its tasks (and why failed tasks failed)."""
    from submit import batch, progress, watch

    backend, conn, short = _open(env, local, job_id)
    job = batch.get_job(conn, short)
    tasks = batch.list_tasks(conn, job)
    stats = progress.task_stats(tasks)
    info = _job_summary(job) | {"tasks": stats.counts, "retries": stats.retries,
                                "preemptions": stats.preemptions}
    if stats.counts.get("FAILED"):  # why, in words, with the next command (submit/watch.py)
        info["failures"] = watch.explain(conn, job, tasks, backend)
    if json_out:
        sys.stdout.write(json.dumps(info, sort_keys=True) + "\n")
    else:
        states = ", ".join(f"{k.lower()} {v}" for k, v in sorted(stats.counts.items()))
        sys.stdout.write(
            f"{info['job_id']}  {info['state']}  tasks: {states or 'none yet'}  "
            f"retries {stats.retries}  preemptions {stats.preemptions}\n"
            f"  {info['input']} -> {info['output']}\n")
    return 0


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
    """List the environment's jobs, newest first (filters: submit/listing.py)."""
    from submit import batch, listing

    # Filters are checked before any service is started: bad input creates nothing.
    wanted = listing.check_state(state)
    after = listing.parse_since(since) if since is not None else None
    _, conn, _ = _open(env, local)
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


def cancel_cmd(job_id: JobIdArg, env: EnvDefault = "dev", local: LocalOpt = False,
               json_out: JsonOpt = False) -> int:
    """Cancel a job (tasks stop; outputs already written stay). A job that already ended is
    left as it is: exit 0 with a note."""
    from submit import batch

    _, conn, short = _open(env, local, job_id)
    state = batch.get_job(conn, short).status.state.name
    requested = state not in contract.JOB_FINAL_STATES
    if requested:
        batch.cancel_job(conn, short)
        say(f"cancel requested for {short}")
    else:
        say(f"job {short} already ended ({state}); nothing to cancel")
    if json_out:  # the job's one JSON shape (submit/listing.py) plus what this command did
        sys.stdout.write(json.dumps(_job_summary(batch.get_job(conn, short))
                                    | {"cancel_requested": requested}, sort_keys=True) + "\n")
    return 0


def logs_cmd(
    job_id: JobIdArg, env: EnvDefault = "dev", local: LocalOpt = False,
    task: Annotated[int | None, typer.Option("--task", "-t", min=0,
                                             help="Only this task's log.")] = None,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep printing new lines until the job ends.")] = False,
    raw: Annotated[bool, typer.Option("--raw", help="The lines exactly as logged.")] = False,
    json_out: Annotated[bool, typer.Option(
        "--json", help="One JSON object per line on stdout.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Most entries (production).")
                     ] = 1000,
    poll_s: Annotated[float, typer.Option("--poll", min=0.1, hidden=True)] = 1.0,
) -> int:
    """Print a job's task logs as readable lines (local files, or Cloud Logging)."""
    from submit import batch

    if raw and json_out:
        raise SubmitError("--raw: use one of --raw and --json")
    fmt = "json" if json_out else "raw" if raw else "text"
    backend, conn, short = _open(env, local, job_id)
    job = batch.get_job(conn, short)

    def done() -> bool:
        return batch.get_job(conn, short).status.state in batch.FINAL_STATES

    for line in backend.log_lines(conn, job, limit=limit, task=task, fmt=fmt,
                                  done=done if follow else None, poll_s=poll_s):
        sys.stdout.write(line)
        sys.stdout.flush()
    return 0
