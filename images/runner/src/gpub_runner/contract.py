"""The run-time contract shared by the submit planner, the workflow and the task runner.

One home for each rule: job and task states, reserved exit codes, how a task's share
of the manifest is chosen, the runtime variable names and which input object names a run
accepts. The runner image installs this package, so the container gets the very same module;
the planner (`submit/`) imports it from here, and the workflow generator reads its constants.

Pure standard library: importable anywhere, in well under a millisecond.
"""

from __future__ import annotations

import hashlib
import re

# ---- job ids -------------------------------------------------------------------------------
# Batch job ids: `^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`, at most 63 chars
# (https://cloud.google.com/batch/docs/reference/rest/v1/projects.locations.jobs/create).
# Both producers append to the job's declared name, so the name keeps room for the longer:
# - bin/submit: "-<10 hex>-<attempt, up to 3 digits>" (submit/ids.py);
# - the workflow: "-<yyyymmddthhmmss>-<8 chars of the execution id>" (stacks/workflow_intake.py).
JOB_ID_MAX = 63
SUBMIT_JOB_ID_SUFFIX_LEN = len("-0123456789-999")
WORKFLOW_JOB_ID_SUFFIX_LEN = len("-20250131t120000-01234567")
JOB_NAME_MAX = JOB_ID_MAX - max(SUBMIT_JOB_ID_SUFFIX_LEN, WORKFLOW_JOB_ID_SUFFIX_LEN)


# ---- job and task states ------------------------------------------------------------------
# Batch JobStatus.State / TaskStatus.State names
# (https://cloud.google.com/batch/docs/reference/rest/v1/projects.locations.jobs#State).
# CANCELLED is final: a workflow that polls until a final state must stop on it too.
JOB_FINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "DELETION_IN_PROGRESS"})
# STATE_UNSPECIFIED: just created, no status yet. CANCELLATION_IN_PROGRESS: tasks may still be
# writing outputs, so the output location is still owned by that job.
JOB_ACTIVE_STATES = frozenset({
    "STATE_UNSPECIFIED", "QUEUED", "SCHEDULED", "RUNNING", "CANCELLATION_IN_PROGRESS",
})
# A finished run that may be resumed by re-running the same command.
JOB_RESUMABLE_STATES = frozenset({"FAILED", "CANCELLED"})
# UNEXECUTED: the task will never run (its job ended first).
TASK_FINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "UNEXECUTED"})
TASK_ACTIVE_STATES = frozenset({"PENDING", "ASSIGNED", "RUNNING"})

# ---- exit codes ---------------------------------------------------------------------------
EXIT_OK = 0
EXIT_CONFIG = 2  # bad configuration: retrying cannot help
EXIT_BUDGET = 3  # more files failed than the job's failure budget allows
EXIT_INFRA = 4  # a service failed; a retry may help
# Exit codes a retry cannot fix: the rendered job must fail the task on them (FAIL_TASK).
NO_RETRY_EXIT_CODES = (EXIT_CONFIG, EXIT_BUDGET)
# Batch's reserved exit codes (https://cloud.google.com/batch/docs/troubleshooting#reserved-exit-codes).
PREEMPTION_EXIT_CODE = 50001
BATCH_RESERVED_EXIT_CODES = {
    50001: "Spot VM preempted",
    50002: "VM reporting timeout",
    50003: "VM rebooted during the task",
    50004: "VM unresponsive",
    50005: "task exceeded maxRunDuration",
    50006: "VM recreated during the task",
}

# ---- runtime variables --------------------------------------------------------------------
# Filled per run by the submit helper or the workflow (empty in the synthesized job JSON).
INPUT_PREFIX = "GPUB_INPUT_PREFIX"
OUTPUT_PREFIX = "GPUB_OUTPUT_PREFIX"
MANIFEST = "GPUB_MANIFEST"
JOB_NAME = "GPUB_JOB_NAME"
RUNTIME_VARIABLES = (INPUT_PREFIX, OUTPUT_PREFIX, MANIFEST, JOB_NAME)
INPUT_OBJECTS = "GPUB_INPUT_OBJECTS"
FILES_PER_TASK = "GPUB_FILES_PER_TASK"
# Set by Batch on every task.
TASK_INDEX = "BATCH_TASK_INDEX"
TASK_COUNT = "BATCH_TASK_COUNT"
TASK_RETRY_ATTEMPT = "BATCH_TASK_RETRY_ATTEMPT"

# ---- output layout ------------------------------------------------------------------------
MANIFEST_NAME = "_manifest.jsonl"
DONE_DIR = "_done/"
ERRORS_DIR = "_errors/"
TASKS_DIR = "_tasks/"
# Names the runner writes under the output prefix; handlers may not use them.
RESERVED_OUTPUT_PREFIXES = (DONE_DIR, ERRORS_DIR, TASKS_DIR, "_manifest", "_callback")

# Cloud Storage object names are at most 1,024 bytes of UTF-8 and may not contain carriage
# return or line feed (https://cloud.google.com/storage/docs/naming-objects).
OBJECT_NAME_MAX_BYTES = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def task_share(n: int, index: int, count: int, files_per_task: int | None) -> range:
    """Manifest lines task `index` of `count` processes out of `n`: `[k*F, (k+1)*F)` with
    files per task F, else the even split `[k*n//c, (k+1)*n//c)`."""
    if files_per_task is not None:
        start = min(n, index * files_per_task)
        return range(start, min(n, start + files_per_task))
    return range(index * n // count, (index + 1) * n // count)


def input_name_problem(rel: object) -> str | None:
    """Why `rel` (an object name relative to the input prefix) cannot be an input, or None.

    GCS accepts names such as `b1/sub/../x.jsonl`, but a run keys outputs, done markers and
    error records by the relative name, so "." and ".." segments, empty segments, a leading
    "/" and control characters would escape or alias the output folder."""
    if not isinstance(rel, str) or not rel:
        return "empty name"
    if rel.startswith("/"):
        return "starts with '/'"
    segments = rel.split("/")
    if any(s in (".", "..") for s in segments):
        return "has a '.' or '..' path segment"
    if "" in segments[:-1]:
        return "has an empty path segment ('//')"
    if _CONTROL.search(rel):
        return "has a control character"
    return None


def done_marker_name(rel: str, input_uri: str, generation: str | None) -> str:
    """Done marker of input `rel` at `generation`, relative to the output prefix.

    The marker names the input object's generation (a short hash of its URI and generation),
    so a new version of an input, or the same name under another input folder, is never
    mistaken for work already done."""
    tag = hashlib.sha256(f"{input_uri}#{generation or ''}".encode()).hexdigest()[:12]
    return f"{DONE_DIR}{rel}.{tag}.done"
