"""Why tasks failed, in words: exit code, what it means, the last log lines, what to run next.

`--wait` and `status` print this for every failed task so nobody has to dig through `logs`.

Exit codes have three sources:
- Batch's reserved codes (https://cloud.google.com/batch/docs/troubleshooting#reserved-exit-codes,
  linked from TaskExecution.exit_code in
  https://cloud.google.com/python/docs/reference/batch/latest/google.cloud.batch_v1.types.TaskExecution):
  50001 Spot VM preempted, 50002 VM stopped reporting (timeout), 50003 VM rebooted during the
  task, 50004 VM unresponsive, 50005 task exceeded its maxRunDuration, 50006 VM recreated
  during the task; 50000 "failed for another reason".
- the task runtime's own codes (docs/contracts.md): 2 bad configuration, 3 failure budget
  exceeded, 4 infrastructure error;
- anything else the container exits with (137 = killed by SIGKILL, often out of memory).
A permission error is recognised from the log lines (HTTP 403 / PermissionDenied), whatever
the code, since the runtime reports it as an infrastructure error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # google-cloud-batch costs ~0.4 s to import: only where a task is read
    from google.cloud import batch_v1

PREEMPTION = "preemption"
TIMEOUT = "timeout"
APPLICATION = "application error"
PERMISSION = "permission denied"
IMAGE = "image not pulled"
INFRASTRUCTURE = "infrastructure"
CONFIGURATION = "configuration"

# code -> (category, meaning)
EXIT_CODES: dict[int, tuple[str, str]] = {
    50000: (INFRASTRUCTURE, "Batch reports a failure with no more specific code"),
    50001: (PREEMPTION, "the Spot VM was preempted"),
    50002: (INFRASTRUCTURE, "the VM stopped reporting to Batch (VM reporting timeout)"),
    50003: (INFRASTRUCTURE, "the VM rebooted while the task ran"),
    50004: (INFRASTRUCTURE, "the VM was unresponsive"),
    50005: (TIMEOUT, "the task ran longer than its maxRunDuration"),
    50006: (INFRASTRUCTURE, "the VM was recreated while the task ran"),
    2: (CONFIGURATION, "the task runtime refused its configuration (GPUB_* variables)"),
    3: (APPLICATION, "more input files failed than the job's failure budget allows"),
    4: (INFRASTRUCTURE, "the task runtime hit an infrastructure error (storage, network)"),
    137: (APPLICATION, "the container was killed (SIGKILL), often for running out of memory"),
}
# What the Batch agent / Docker log when a container image cannot be pulled (a wrong name or tag,
# or a registry the identity may not read): the task never runs, so no retry can help.
_IMAGE_RE = re.compile(
    r"manifest (for \S+ )?(not found|unknown)|pull access denied|Failed to pull image|"
    r"repository does not exist|ImagePull|Error response from daemon: .*not found", re.I)
_PERMISSION_RE = re.compile(
    r"\b403\b|Forbidden|PermissionDenied|PERMISSION_DENIED|[Pp]ermission denied|"
    r"does not have [a-z]+\.[a-zA-Z]+\.[a-zA-Z]+ access")


@dataclass(frozen=True)
class TaskFailure:
    index: int
    exit_code: int | None  # of the last attempt; None when Batch recorded none
    attempts: int
    category: str
    meaning: str
    log_tail: list[str] = field(default_factory=list)


def task_index(task: batch_v1.Task) -> int:
    # ".../taskGroups/group0/tasks/7" -> 7
    tail = task.name.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def classify(code: int | None, log_tail: Sequence[str] = ()) -> tuple[str, str]:
    """(category, meaning) of an exit code, refined by the log when it shows a 403."""
    if any(_IMAGE_RE.search(line) for line in log_tail):
        return IMAGE, (f"the container image could not be pulled (wrong name or tag, or a "
                       f"registry the task's identity may not read); exit code {code}")
    if any(_PERMISSION_RE.search(line) for line in log_tail):
        return PERMISSION, ("a Google API refused the task's identity (permission denied); "
                            f"exit code {code}")
    if code is None:
        return INFRASTRUCTURE, "Batch recorded no exit code (the task never ran?)"
    if code in EXIT_CODES:
        return EXIT_CODES[code]
    return APPLICATION, f"the container exited with {code}"


def failed_tasks(
    tasks: Sequence[batch_v1.Task], tail: Callable[[int], list[str]] | None = None,
) -> list[TaskFailure]:
    """The FAILED tasks, each with its last attempt's exit code and (via `tail`) log lines."""
    from google.cloud import batch_v1

    out: list[TaskFailure] = []
    for task in tasks:
        if batch_v1.TaskStatus.State(task.status.state).name != "FAILED":
            continue
        codes = [e.task_execution.exit_code for e in task.status.status_events
                 if "task_execution" in e]
        index = task_index(task)
        lines = tail(index) if tail is not None else []
        code = codes[-1] if codes else None
        category, meaning = classify(code, lines)
        out.append(TaskFailure(index, code, max(1, len(codes)), category, meaning, lines))
    return sorted(out, key=lambda f: f.index)


# A plain re-run of the same command resumes: a retried or resubmitted task skips the inputs
# that have a done marker (docs/contracts.md). `--overwrite` deletes every output and done
# marker first and starts from scratch, which no failure below needs.
RESUME = "run the same command again (a plain re-run resumes: done inputs are skipped)"
RERUN = "run the same command again (a job run as written starts over)"


def next_step(failure: TaskFailure, *, job_id: str, local: bool,
              output: str | None = None) -> str:
    """What to do about one failed task. `output`: the run's output prefix when it runs
    through the runner contract (done markers, `_errors/`); None for a job run as written."""
    flag = " --local" if local else ""
    logs = f"bin/submit logs {job_id} --task {failure.index}{flag}"
    again = RESUME if output else RERUN
    errors = f"read the errors under {output.rstrip('/')}/_errors/ and the log" if output else (
        "read the log")
    hint = {
        PREEMPTION: f"{again}; to survive preemptions give the job retries "
                    "(retry_on_preemption, or maxRetryCount with RETRY_TASK on 50001)",
        TIMEOUT: f"raise the job's max_run_duration_s or lower files_per_task, then {again}",
        PERMISSION: "check the run-time identity's grants (bin/submit where --client C --job J "
                    "shows it; bin/check lists the stack's grants)",
        CONFIGURATION: "fix the job's declaration, synth, and run again",
        APPLICATION: f"{errors} ({logs}), fix the cause, then {again}",
        INFRASTRUCTURE: f"often transient: {again}",
        IMAGE: "check the image name and tag (images/versions.json for the platform's images) "
               "and that the run identity may read the registry, then run again",
    }[failure.category]
    return f"next: {hint}; full log: {logs}"


def render(failures: Sequence[TaskFailure], *, job_id: str, local: bool,
           limit: int = 5, output: str | None = None) -> list[str]:
    """Lines for the terminal: one block per failed task (the first `limit` of them)."""
    lines: list[str] = []
    for f in failures[:limit]:
        code = "no exit code" if f.exit_code is None else f"exit code {f.exit_code}"
        lines.append(f"task {f.index} FAILED after {f.attempts} attempt"
                     f"{'s' if f.attempts != 1 else ''}: {code} -- {f.category}: {f.meaning}")
        lines.extend(f"    | {line.rstrip()}" for line in f.log_tail)
        lines.append(f"    {next_step(f, job_id=job_id, local=local, output=output)}")
    if len(failures) > limit:
        lines.append(f"... and {len(failures) - limit} more failed tasks "
                     f"(bin/submit status {job_id} --json)")
    return lines
