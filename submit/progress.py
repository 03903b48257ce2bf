"""`--wait`: a live progress bar of task states, then a summary of the finished job."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from google.cloud import batch_v1
from gpub_runner.contract import BATCH_RESERVED_EXIT_CODES
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from submit import batch
from submit.batch import Connection

_TASK_FINAL = ("SUCCEEDED", "FAILED")
# The reserved codes for a lost VM (all but 50005, maxRunDuration exceeded), jobs/render.py.
VM_LOST_EXIT_CODES = frozenset(c for c in BATCH_RESERVED_EXIT_CODES if c != 50005)


@dataclass(frozen=True)
class TaskStats:
    counts: dict[str, int]  # task state name -> tasks
    retries: int
    preemptions: int  # attempts that ended because the VM was lost (not the task's fault)
    app_failures: int = 0  # attempts that ended with any other non-zero exit code
    last_exit_code: int | None = None  # of the last ended attempt of a FAILED task

    @property
    def finished(self) -> int:
        return sum(self.counts.get(s, 0) for s in _TASK_FINAL)


def task_stats(tasks: list[batch_v1.Task]) -> TaskStats:
    """Counts per state, plus retries and preemptions read from the tasks' status events
    (every ended attempt is an event with an exit code; a non-zero one on a task that ran
    again was retried)."""
    counts: Counter[str] = Counter()
    retries = preemptions = app_failures = 0
    last: int | None = None
    for task in tasks:
        state = batch_v1.TaskStatus.State(task.status.state).name
        counts[state] += 1
        failed = 0
        code = 0
        for event in task.status.status_events:
            if "task_execution" not in event:
                continue
            code = event.task_execution.exit_code
            if code in VM_LOST_EXIT_CODES:
                preemptions += 1
            elif code != 0:
                app_failures += 1
            if code != 0:
                failed += 1
        if state == "FAILED" and failed:
            last = code  # the reported exit code is the last attempt's
        retries += failed - 1 if state == "FAILED" and failed else failed
    return TaskStats(dict(counts), retries, preemptions, app_failures, last)


def job_state(job: batch_v1.Job) -> str:
    return batch_v1.JobStatus.State(job.status.state).name


def job_duration_s(job: batch_v1.Job) -> float | None:
    run = job.status.run_duration
    if run and run.total_seconds() > 0:
        return float(run.total_seconds())
    start, end = job.create_time, job.update_time
    if isinstance(start, datetime) and isinstance(end, datetime) and end > start:
        return (end - start).total_seconds()
    return None


def wait(conn: Connection, job_id: str, *, task_count: int, poll_s: float,
         console: Console) -> tuple[batch_v1.Job, TaskStats]:
    """Poll GetJob/ListTasks until the job is final, drawing task states on stderr."""
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[states]}"), TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(job_id, total=task_count, states="QUEUED")
        while True:
            job = batch.get_job(conn, job_id)
            stats = task_stats(batch.list_tasks(conn, job))
            states = " ".join(f"{k.lower()}={v}" for k, v in sorted(stats.counts.items()))
            progress.update(bar, completed=stats.finished,
                            states=f"{job_state(job).lower()}  {states}".strip())
            if job.status.state in batch.FINAL_STATES:
                return job, stats
            time.sleep(poll_s)
