"""`logs` (readable, `--follow`, `--task`) and the failure summary `--wait`/`status` print.

Registered on `bin/submit` by `register`; the summary helpers are called by `submit/cli.py`.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from submit import failures

if TYPE_CHECKING:
    from google.cloud import batch_v1

    from submit.batch import Connection

err = Console(stderr=True, highlight=False, soft_wrap=True)

EnvOpt = Annotated[str, typer.Option("--env", "-e", envvar="GPUB_ENV",
                                     help="Environment (dev, prod, ...).")]
LocalOpt = Annotated[bool, typer.Option("--local", help="Use the embedded local backend.")]
TAIL_LINES = 5


def connect(project: str, region: str, *, local: bool) -> Connection:
    """A Batch connection: Google's endpoint with ADC, or the local backend's."""
    from google.cloud import batch_v1

    from submit import localmode
    from submit.batch import Connection, api_errors

    parent = f"projects/{project}/locations/{region}"
    if local:
        from local.client import batch_client

        return Connection(batch_client(localmode.start().batch_target), parent, local=True)
    with api_errors("Batch"):  # ADC is looked up here
        return Connection(batch_v1.BatchServiceClient(), parent, local=False)


def _project(conn: Connection) -> str:
    return conn.parent.split("/")[1]


def failed(conn: Connection, job: batch_v1.Job,
           tasks: list[batch_v1.Task]) -> list[failures.TaskFailure]:
    """Each failed task with its exit code, meaning and last log lines."""
    from submit import batch, localmode, logs

    job_id = batch.short_id(job.name)
    if conn.local:
        backend = localmode.backend()
        return failures.failed_tasks(
            tasks, lambda i: logs.local_tail(backend, job_id, i, TAIL_LINES))
    project = _project(conn)

    def tail(index: int) -> list[str]:
        try:
            return logs.cloud_tail(project, job.uid, index, TAIL_LINES)
        except Exception as exc:  # the summary must not hide the failure behind a log error
            return [f"(log unavailable: {str(exc).splitlines()[0][:160]})"]

    return failures.failed_tasks(tasks, tail)


def explain(conn: Connection, job: batch_v1.Job,
            tasks: list[batch_v1.Task]) -> list[dict[str, object]]:
    """Print the failure summary on stderr; return it for --json output."""
    from submit import batch

    found = failed(conn, job, tasks)
    for line in failures.render(found, job_id=batch.short_id(job.name), local=conn.local):
        err.print(line, markup=False)
    return [{"task": f.index, "exit_code": f.exit_code, "attempts": f.attempts,
             "category": f.category, "meaning": f.meaning, "log_tail": f.log_tail}
            for f in found]


def logs_cmd(
    job_id: Annotated[str, typer.Argument(help="Job id as printed by `run`.")],
    env: EnvOpt = "dev", local: LocalOpt = False,
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
    from submit import batch, localmode, logs, synth

    if raw and json_out:
        raise typer.BadParameter("use one of --raw and --json", param_hint="--raw")
    fmt = "json" if json_out else "raw" if raw else "text"
    settings = synth.load_environment(env)
    conn = connect(settings.project_id, settings.region, local=local)
    job = batch.get_job(conn, job_id)
    short = batch.short_id(job.name)

    def done() -> bool:
        return batch.get_job(conn, short).status.state in batch.FINAL_STATES

    write = sys.stdout.write
    if local:
        backend = localmode.backend()
        lines = (logs.local_follow(backend, short, done, task=task, fmt=fmt, poll_s=poll_s)
                 if follow else logs.local_lines(backend, short, task=task, fmt=fmt))
        for line in lines:
            write(line)
            sys.stdout.flush()
        return 0
    recs = (logs.cloud_follow(_project(conn), job.uid, done, task=task, poll_s=max(poll_s, 5.0))
            if follow else logs.cloud_entries(_project(conn), job.uid, limit=limit, task=task))
    for rec in recs:
        if fmt == "json":
            write(json.dumps(rec, sort_keys=True, default=str) + "\n")
        elif fmt == "raw":
            write(json.dumps(rec, default=str) + "\n")
        else:
            write(logs.readable(rec) + "\n")
        sys.stdout.flush()
    return 0


def register(app: typer.Typer) -> None:
    app.command("logs")(logs_cmd)
