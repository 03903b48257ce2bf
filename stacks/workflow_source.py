"""The Cloud Workflows source (YAML) of a job's dispatcher workflow: one per job, all clients.

Pure: no provider import, so tests (and reviewers) can build and parse it without the CDK.

Intake (docs/clients.md "Intake"): each client bucket the job serves notifies the job's intake
topic `batch-intake-<job>` of new objects under `inputs/_ready/<job>/` only (data objects
notify nothing); one Eventarc Pub/Sub trigger per job starts one execution per marker. The
workflow maps the bucket to its client (`<project>-<client>`; the source lists no clients, so
its size does not grow with them), reads the marker's `{"count": N}`, claims the output's run
record, creates ONE Batch job whose id derives from (client, job, batch, marker generation),
follows it, and publishes one outcome on the client's results topic. The workflow never lists
inputs: the job plans itself from `GPUB_INPUT_PREFIX` and checks `GPUB_EXPECTED_INPUTS`, so
the steps of a run do not grow with the batch.

The job body is the renderer's output (`BatchJob.job_json`) embedded verbatim as the `job`
variable of the `init` step. The `fill` step sets only the runtime fields
(`RUNTIME_ASSIGNMENTS`).

Ways in: a Pub/Sub CloudEvent of the intake topic (`args.data.message.attributes.{bucketId,
objectId, eventType, objectGeneration}`); `{"client": "acme", "batch": "b-7"}` (by hand: the
marker's current generation); `{"client": "acme", "trigger": "schedule"[, "input_prefix":
"p"]}` (Cloud Scheduler: a sweep that re-publishes every marker without a run record).

The parts: `stacks/workflow_params.py` (parameters, retry policy, the run-time contract's
names), `stacks/workflow_intake.py` (argument to batch and ids, the sweep),
`stacks/workflow_run.py` (claim, size, fill, create, poll) and `stacks/workflow_report.py`
(facts, outcome, publish once).
"""

from __future__ import annotations

from typing import Any

import yaml

from stacks.workflow_intake import (
    client_steps,
    event_steps,
    id_steps,
    init_steps,
    marker_regex,
    marker_steps,
    route_steps,
    sweep_steps,
)
from stacks.workflow_params import (
    FINAL_STATES,
    RUNTIME_ASSIGNMENTS,
    WORKFLOW_SOURCE_LIMIT,
    WorkflowParams,
    check_embeddable,
    check_runtime_slots,
    failure_notification,
)
from stacks.workflow_report import fact_steps, report_steps
from stacks.workflow_run import claim_steps, fill_step, run_steps, size_steps

__all__ = [
    "FINAL_STATES",
    "RUNTIME_ASSIGNMENTS",
    "WORKFLOW_SOURCE_LIMIT",
    "WorkflowParams",
    "build_workflow",
    "embedded_job",
    "failure_notification",
    "marker_regex",
    "runtime_assignments",
    "terraform_literal",
    "workflow_source",
]


def build_workflow(p: WorkflowParams) -> dict[str, Any]:
    """The workflow definition as data (what `workflow_source` dumps as YAML)."""
    job = dict(p.job_json)
    check_embeddable(job)
    check_runtime_slots(job, p)
    steps: list[dict[str, Any]] = [
        *init_steps(p, job),
        *route_steps(),
        *event_steps(p),
        *client_steps(p),
        *marker_steps(p),
        *id_steps(p),
        *claim_steps(p),
        *size_steps(p),
        fill_step(job),
        *run_steps(p),
        *fact_steps(p),
        *report_steps(p),
        *sweep_steps(p),
    ]
    return {"main": {"params": ["args"], "steps": steps}}


# libyaml's emitter when PyYAML was built with it: the same text, ~5x faster (the pure-Python
# emitter was over half of construct time at 100 clients; see bench/RESULTS.md).
_SafeDumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _NoAliases(_SafeDumper):  # type: ignore[misc]
    # The same dict used twice must be written out twice, not as a YAML anchor.
    def ignore_aliases(self, data: Any) -> bool:
        return True


def workflow_source(p: WorkflowParams) -> str:
    """The YAML source; raises if it exceeds the Workflows size limit."""
    text = yaml.dump(
        build_workflow(p), Dumper=_NoAliases, sort_keys=False, width=4096, allow_unicode=True
    )
    _check_size(p, text)
    return text


def _check_size(p: WorkflowParams, text: str) -> None:
    size = len(text.encode("utf-8"))
    if size > WORKFLOW_SOURCE_LIMIT:
        raise ValueError(
            f"jobs.{p.job}: its workflow is {size} bytes; Workflows accepts at most "
            f"{WORKFLOW_SOURCE_LIMIT} (shrink the job's script or env)"
        )


def embedded_job(source: str) -> dict[str, Any]:
    """The job body a source embeds (the `job` variable of its `init` step)."""
    doc = yaml.safe_load(source)
    for step in doc["main"]["steps"]:
        if "init" in step:
            for assignment in step["init"]["assign"]:
                if "job" in assignment:
                    return dict(assignment["job"])
    raise ValueError("no job body in this workflow source")


def runtime_assignments(source: str) -> dict[str, Any]:
    """What the `fill` step assigns, path -> value."""
    doc = yaml.safe_load(source)
    for step in doc["main"]["steps"]:
        if "fill" in step:
            out: dict[str, Any] = {}
            for assignment in step["fill"]["assign"]:
                out.update(assignment)
            return out
    raise ValueError("no fill step in this workflow source")


def terraform_literal(text: str) -> str:
    """`text` as a Terraform string literal: `${` and `%{` (Workflows syntax) escaped."""
    return text.replace("${", "$${").replace("%{", "%%{")
