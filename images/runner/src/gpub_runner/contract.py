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
from dataclasses import dataclass

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
# The job's own plan failed: fewer inputs listed than the marker declared, after re-listing
# for GPUB_LISTING_WAIT_S (the reason is in `_plan.json`). A retry re-lists (more files may
# have arrived), so it is not in NO_RETRY_EXIT_CODES.
EXIT_PLAN = 5
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
INPUT_FORMAT = "GPUB_INPUT_FORMAT"  # static (rendered from the job spec): "jsonl" -> *.jsonl
# Plan-in-job mode (GPUB_INPUT_PREFIX set, no GPUB_MANIFEST, no GPUB_INPUT_OBJECTS): the job
# lists the prefix itself. The intake workflow sets EXPECTED_INPUTS to the marker's count.
EXPECTED_INPUTS = "GPUB_EXPECTED_INPUTS"
LISTING_WAIT_S = "GPUB_LISTING_WAIT_S"  # how long a short listing is re-listed (default 600)
PLAN_WAIT_S = "GPUB_PLAN_WAIT_S"  # how long a task waits for the plan (default 3600)
PLAN_VARIABLES = (EXPECTED_INPUTS, LISTING_WAIT_S, PLAN_WAIT_S)
# Set by Batch on every task.
TASK_INDEX = "BATCH_TASK_INDEX"
TASK_COUNT = "BATCH_TASK_COUNT"
TASK_RETRY_ATTEMPT = "BATCH_TASK_RETRY_ATTEMPT"

# ---- output layout ------------------------------------------------------------------------
MANIFEST_NAME = "_manifest.jsonl"
DONE_DIR = "_done/"
ERRORS_DIR = "_errors/"
TASKS_DIR = "_tasks/"
# Plan-in-job mode: the plan (one JSON object, the commit point of the planning) and one
# manifest shard per task under MANIFEST_DIR.
PLAN_NAME = "_plan.json"
MANIFEST_DIR = "_manifest/"
# `_plan.json` keys every reader may rely on (the intake workflow reads the first three).
PLAN_KEYS = ("listed", "accepted", "refused", "expected", "reason")
# Names the runner writes under the output prefix; handlers may not use them.
RESERVED_OUTPUT_PREFIXES = (DONE_DIR, ERRORS_DIR, TASKS_DIR, "_manifest", "_callback", "_plan")
# Custom metadata on every output object (https://cloud.google.com/storage/docs/metadata#custom-metadata):
# the output is its input's done marker. An input at a generation is done when all
# META_OUTPUTS outputs carrying its URI and generation exist.
META_INPUT = "gpub-input"
META_GENERATION = "gpub-input-generation"
META_OUTPUTS = "gpub-outputs"

# ---- Batch limits ---------------------------------------------------------------------------
# Google Batch system limits (https://cloud.google.com/batch/quotas): fixed, cannot be raised.
BATCH_MAX_TASKS = 100_000
BATCH_MAX_PARALLELISM = 5_000

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


@dataclass(frozen=True)
class TaskSplit:
    task_count: int
    parallelism: int
    files_per_task: int | None  # None: even split over task_count


def task_split(n: int, files_per_task: int | None, max_parallelism: int | None = None,
               max_tasks: int = BATCH_MAX_TASKS) -> TaskSplit:
    """How many tasks `n` inputs get (bin/submit and the intake workflow both size jobs so).

    With F files per task: ceil(n/F) tasks, F repacked to ceil(n/max_tasks) when that exceeds
    Batch's task limit. Without: one wave of min(n, max_tasks, max_parallelism) tasks (every
    VM boots once). Never fewer than one task (an empty batch still plans and reports)."""
    cap = min(BATCH_MAX_PARALLELISM, max_parallelism or BATCH_MAX_PARALLELISM)
    n = max(n, 1)
    if files_per_task is not None:
        count = -(-n // files_per_task)
        if count > max_tasks:
            files_per_task = -(-n // max_tasks)
            count = -(-n // files_per_task)
        return TaskSplit(count, min(cap, count), files_per_task)
    count = min(n, max_tasks, cap)
    return TaskSplit(count, count, None)


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


def error_record_name(rel: object) -> str:
    """Where a failed or refused input's error record goes, relative to the output prefix:
    `_errors/<rel>.json`, or `_errors/_bad-names/<hash>.json` when the name itself is unsafe
    as a path (it must not become one)."""
    if isinstance(rel, str) and input_name_problem(rel) is None:
        return f"{ERRORS_DIR}{rel}.json"
    digest = hashlib.sha256(repr(rel).encode()).hexdigest()[:16]
    return f"{ERRORS_DIR}_bad-names/{digest}.json"


def manifest_shard_name(plan_id: str, index: int) -> str:
    """Task `index`'s manifest shard of plan `plan_id`, relative to the output prefix."""
    return f"{MANIFEST_DIR}{plan_id}/{index:05d}.jsonl"
