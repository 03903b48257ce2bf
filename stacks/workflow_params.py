"""What a job's dispatcher workflow is made of: its parameters, the object-name patterns it
matches, and the run-time contract it shares with the submit planner and the task runner.

The contract's names come from `gpub_runner.contract` (one home for each rule): the
final job states the workflow stops polling at, the runtime variables it fills, and which
input names a run accepts. Nothing here repeats them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpub_runner import contract

# Workflows rejects sources over 128 KB.
WORKFLOW_SOURCE_LIMIT = 128 * 1024
# Terminal Batch job states: the workflow stops polling at these (JobStatus.State,
# cloud.google.com/batch/docs/reference/rest/v1/projects.locations.jobs#State); CANCELLED
# included, or a cancelled job's workflow polls forever.
FINAL_STATES = tuple(sorted(contract.JOB_FINAL_STATES))
# The marker object whose upload starts a run of a batch (docs/contracts.md "Tenancy v2").
READY_MARKER = "_READY"
# A prefix run passes its inputs in GPUB_INPUT_OBJECTS (comma-separated): cap it so the env
# variable and the workflow's 512 KB of variables stay well within limits. Bigger sets go
# through `bin/submit`, which writes a manifest.
MAX_PREFIX_OBJECTS = 1000
# The paths of the job body the workflow sets at run time (and nothing else).
VARS = "job.taskGroups[0].taskSpec.environment.variables"
# Runtime variable -> the workflow variable that holds its value.
RUNTIME_VARIABLE_VALUES = {
    contract.INPUT_OBJECTS: "input_objects",
    contract.INPUT_PREFIX: "input_prefix",
    contract.OUTPUT_PREFIX: "output_prefix",
    contract.JOB_NAME: "job_id",
}
RUNTIME_ASSIGNMENTS = (
    "job.taskGroups[0].taskCount",
    "job.taskGroups[0].parallelism",
    *(f"{VARS}.{name}" for name in RUNTIME_VARIABLE_VALUES),
    "job.allocationPolicy.serviceAccount.email",
    "job.labels.client",
    "job.labels.trigger",
    "job.labels.submitter",
    # What billing sees (jobs/billing_labels.py); the rendered job carries env and job.
    "job.allocationPolicy.labels.client",
    "job.allocationPolicy.labels.run",
    "job.notifications",
)


@dataclass(frozen=True)
class WorkflowParams:
    """Everything the source needs; all literals, resolved at synth."""

    job: str
    project_id: str
    job_region: str  # where the Batch job is created
    clients: tuple[str, ...]  # the clients this job serves
    job_json: Mapping[str, Any]  # the rendered job, runtime fields empty
    input_format: str | None
    files_per_task: int | None
    max_parallelism: int
    fixed_task_count: int | None = None  # jobs with taskEnvironments
    poll_interval_s: int = 60

    @property
    def bucket_prefix(self) -> str:
        """A client bucket is `<project>-<client>` (settings.client_bucket)."""
        return f"{self.project_id}-"

    @property
    def inputs_root(self) -> str:
        return f"inputs/{self.job}/"

    @property
    def outputs_root(self) -> str:
        return f"outputs/{self.job}/"

    @property
    def topic_prefix(self) -> str:
        """The client's results topic is `<topic_prefix><client>-results`."""
        return f"projects/{self.project_id}/topics/batch-"

    @property
    def run_sa_domain(self) -> str:
        """The client's run identity is `run-<client><run_sa_domain>`."""
        return f"@{self.project_id}.iam.gserviceaccount.com"


def failure_notification(results_topic: str) -> dict[str, Any]:
    """Batch itself reports a failed job on the client's results topic."""
    return {
        "pubsubTopic": results_topic,
        "message": {"type": "JOB_STATE_CHANGED", "newJobState": "FAILED"},
    }


def lit(text: str) -> str:
    """A Workflows expression string literal (JSON quoting is valid there)."""
    return json.dumps(text)


def re_escape(text: str) -> str:
    # Escape only RE2 metacharacters, so the patterns in the source stay readable.
    return re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", text)


def _ext_re(input_format: str) -> str:
    # Same rule as the submit planner: the format's extension, case-insensitively.
    return rf"\.(?i:{re_escape(input_format)})$"


def marker_regex(p: WorkflowParams) -> str:
    """Object names that start a run: `inputs/<job>/<batch>/_READY`, one folder level."""
    return f"^{re_escape(p.inputs_root)}[^/_,][^/,]*/{re_escape(READY_MARKER)}$"


# Object-name characters a run accepts: no "/" (the separator), no "," (GPUB_INPUT_OBJECTS is
# comma-separated) and no control character (contract.input_name_problem refuses them).
_CHAR = r"[^/,\x00-\x1f\x7f]"
# A path segment: not empty, not "." or "..", and not bookkeeping ("_done/", "_READY", ...).
# RE2 has no lookahead, so: a first character that is neither "_" nor "."; or "." then a
# character that is not "."; or ".." then at least one more character.
_FIRST = r"[^/_,\x00-\x1f\x7f]"  # a name's first character: not bookkeeping ("_...")
_SEGMENT = (
    r"(?:[^/_,.\x00-\x1f\x7f]" + _CHAR + "*"
    r"|\.[^/,.\x00-\x1f\x7f]" + _CHAR + "*"
    r"|\.\." + _CHAR + "+)"
)


def prefix_regex(p: WorkflowParams) -> str:
    """Names (relative to the listed prefix) a run takes as inputs: the names
    `contract.input_name_problem` accepts, less bookkeeping (`_...`, the marker included) and
    commas (GPUB_INPUT_OBJECTS is comma-separated); with a format, its extension (the file
    name before it may be empty: ".jsonl" is a name like any other)."""
    if not p.input_format:
        return f"^({_SEGMENT}/)*{_SEGMENT}$"
    return f"^({_SEGMENT}/)*(?:{_FIRST}{_CHAR}*)?{_ext_re(p.input_format)}"


def check_embeddable(value: Any, path: str = "job") -> None:
    # Workflows evaluates any string that is a whole `${...}`: the job body must stay literal.
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        raise ValueError(
            f"{path}: {value!r} would be evaluated as a Workflows expression; "
            "the job JSON cannot be embedded in a workflow"
        )
    if isinstance(value, Mapping):
        for k, v in value.items():
            check_embeddable(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_embeddable(v, f"{path}[{i}]")


def check_runtime_slots(job: Mapping[str, Any], p: WorkflowParams) -> None:
    groups = job.get("taskGroups") or []
    variables = (
        groups[0].get("taskSpec", {}).get("environment", {}).get("variables") if groups else None
    )
    if not isinstance(variables, Mapping) or not isinstance(job.get("labels"), Mapping):
        raise ValueError(
            f"jobs.{p.job}: the rendered job has no task environment variables or labels; "
            "render it with the environment's RenderContext"
        )
