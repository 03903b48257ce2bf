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

from stacks import layout
from stacks.layout import TenancyLayout
from stacks.names import CLIENT_NAME_MAX, CLIENT_NAME_MIN, CLIENT_NAME_RE2

# Workflows rejects sources over 128 KB.
WORKFLOW_SOURCE_LIMIT = 128 * 1024
# Terminal Batch job states: the workflow stops polling at these (JobStatus.State,
# cloud.google.com/batch/docs/reference/rest/v1/projects.locations.jobs#State); CANCELLED
# included, or a cancelled job's workflow polls forever.
FINAL_STATES = tuple(sorted(contract.JOB_FINAL_STATES))
# The number of inputs the marker announces (the intake contract; the runner checks
# its listing against it). The runner's contract names it once the plan-in-job mode lands.
EXPECTED_INPUTS = contract.EXPECTED_INPUTS
# The paths of the job body the workflow sets at run time (and nothing else).
VARS = "job.taskGroups[0].taskSpec.environment.variables"
# Runtime variable -> the workflow variable that holds its value. No GPUB_INPUT_OBJECTS and no
# manifest: the job lists its input prefix itself (the workflow never enumerates inputs).
RUNTIME_VARIABLE_VALUES = {
    contract.INPUT_PREFIX: "input_prefix",
    contract.OUTPUT_PREFIX: "output_prefix",
    EXPECTED_INPUTS: "string(expected)",
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
    'job.labels["marker-generation"]',
    "job.notifications",
)
# Retries on every connector call: the predicate of `http.default_retry` (429, 502, 503, 504,
# connection errors and timeouts; cloud.google.com/workflows/docs/reference/syntax/retrying
# "default retry policy"), with more attempts and a longer backoff than its 5 x 1-60 s, since a
# lost jobs.get or publish would lose a batch's outcome. Connectors retry only 429/503 on their
# own (cloud.google.com/workflows/docs/reference/googleapis "Understand connectors").
RETRY = {
    "predicate": "${http.default_retry_predicate}",
    "max_retries": 8,
    "backoff": {"initial_delay": 2, "max_delay": 120, "multiplier": 2},
}


@dataclass(frozen=True)
class WorkflowParams:
    """Everything the source needs; all literals, resolved at synth."""

    job: str
    env: str
    project_id: str
    job_region: str  # where the Batch job is created
    job_json: Mapping[str, Any]  # the rendered job, runtime fields empty
    files_per_task: int | None
    max_parallelism: int
    fixed_task_count: int | None = None  # jobs with taskEnvironments
    poll_interval_s: int = 60

    @property
    def layout(self) -> TenancyLayout:
        return TenancyLayout(self.project_id)

    @property
    def bucket_prefix(self) -> str:
        return self.layout.client_bucket_prefix

    @property
    def markers_root(self) -> str:
        """Where this job's batch markers live: `inputs/_ready/<job>/`."""
        return self.layout.job_markers(self.job)

    @property
    def topic_prefix(self) -> str:
        return self.layout.topic_path(layout.TOPIC_PREFIX)

    @property
    def intake_topic(self) -> str:
        return self.layout.topic_path(self.layout.intake_topic(self.job))

    @property
    def dead_letter_topic(self) -> str:
        return self.layout.topic_path(layout.INTAKE_DEAD_LETTER_TOPIC)


def failure_notification(results_topic: str) -> dict[str, Any]:
    """Batch itself reports a failed job on the client's results topic."""
    return {
        "pubsubTopic": results_topic,
        "message": {"type": "JOB_STATE_CHANGED", "newJobState": "FAILED"},
    }


def lit(text: str) -> str:
    """A Workflows expression string literal (JSON quoting is valid there)."""
    return json.dumps(text)


# A client name as the workflow checks it (the bucket name's tail; stacks/names.py).
CLIENT_PATTERN = CLIENT_NAME_RE2


def client_name_condition(var: str) -> str:
    """A Workflows condition: `var` has a client name's shape and length."""
    return (f"${{text.match_regex({var}, {json.dumps(CLIENT_PATTERN)}) and "
            f"len({var}) >= {CLIENT_NAME_MIN} and len({var}) <= {CLIENT_NAME_MAX}}}")

# A batch name: one path segment of letters, digits, ".", "_", "-" (submit/where.py).
BATCH_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


def re_escape(text: str) -> str:
    # Escape only RE2 metacharacters, so the patterns in the source stay readable.
    return re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", text)


def call_step(name: str, call: str, args: dict[str, Any], result: str,
              on_error: list[dict[str, Any]] | None) -> dict[str, Any]:
    """One connector call with the RETRY policy; once retries are exhausted, `on_error` runs
    with the error as `e` (None: the error ends the execution)."""
    step: dict[str, Any] = {"try": {"call": call, "args": args, "result": result}, "retry": RETRY}
    if on_error is not None:
        step["except"] = {"as": "e", "steps": on_error}
    return {name: step}


def error_text(what: str) -> str:
    """`<what>: <the error's message>` as an expression (e is the caught error map)."""
    return f'{lit(what + ": ")} + default(map.get(e, "message"), json.encode_to_string(e))'


def fail(reason_expr: str, step: str = "failed_call") -> list[dict[str, Any]]:
    """Except-steps: the run FAILED with `reason_expr` (an expression); go report it."""
    return [{step: {"assign": [{"state": "FAILED"}, {"reason": reason_expr}], "next": "outcome"}}]


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
