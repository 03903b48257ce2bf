"""The failure summary `run --wait` and `status` print: each failed task's exit code, what it
means, the last lines of its log and the next command (submit/failures.py has the rules).

The log lines come through the command's Backend (submit/backend.py), so the same code serves
the local backend's files and Cloud Logging.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from submit import failures
from submit.ui import say

if TYPE_CHECKING:
    from google.cloud import batch_v1

    from submit.backend import Backend
    from submit.batch import Connection

TAIL_LINES = 5


def failed(backend: Backend, conn: Connection, job: batch_v1.Job,
           tasks: list[batch_v1.Task]) -> list[failures.TaskFailure]:
    """Each failed task with its exit code, meaning and last log lines."""
    return failures.failed_tasks(tasks, lambda i: backend.log_tail(conn, job, i, TAIL_LINES))


def explain(conn: Connection, job: batch_v1.Job, tasks: list[batch_v1.Task],
            backend: Backend | None = None) -> list[dict[str, object]]:
    """Print the failure summary on stderr; return it for --json output. `backend`: the
    command's (default: the one `conn` belongs to)."""
    from submit import batch
    from submit.backend import backend_for

    found = failed(backend or backend_for(conn.local), conn, job, tasks)
    groups = job.task_groups
    variables = groups[0].task_spec.environment.variables if groups else {}
    output = variables.get("GPUB_OUTPUT_PREFIX") or None  # runner contract runs only
    for line in failures.render(found, job_id=batch.short_id(job.name), local=conn.local,
                                output=output):
        say(line)
    return [{"task": f.index, "exit_code": f.exit_code, "attempts": f.attempts,
             "category": f.category, "meaning": f.meaning, "log_tail": f.log_tail}
            for f in found]
