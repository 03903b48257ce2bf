"""The Cloud Workflows source (YAML) of a job's dispatcher workflow: one per job, all clients.

Pure: no provider import, so tests (and reviewers) can build and parse it without the CDK.

Tenancy v2 (docs/clients.md): every client bucket notifies one Pub/Sub topic of new objects
under `inputs/`; one Eventarc Pub/Sub trigger per job starts this workflow with the message.
The workflow maps the bucket to its client (`<project>-<client>`, the client must be one of
this job's clients, listed literally in the source), and starts a run only for the marker
`inputs/<job>/<batch>/_READY`: every other object is ignored in three steps, so 1,000 files
plus their marker make one Batch job. A run reads `inputs/<job>/<batch>/` of the client's
bucket, writes `outputs/<job>/<batch>/` there, runs as the client's run-time identity
`run-<client>` and reports to the client's results topic. Another client's bucket can never
be reached: the bucket, the identity and the topic are all derived from the same client.

The job body is the renderer's output (`BatchJob.job_json`) embedded verbatim as the `job`
variable of the `init` step. The `fill` step sets only the runtime fields
(`RUNTIME_ASSIGNMENTS`).

Ways in:
- a Pub/Sub CloudEvent (`args.data.message.attributes.{bucketId, objectId, eventType}`) of
  the uploads topic;
- `{"client": "acme", "batch": "b-7"}` (by hand), or `{"client": "acme", "input_prefix": "p/",
  "trigger": "schedule"}` (Cloud Scheduler): every input of the job's format under
  `inputs/<job>/<batch or input_prefix>`.
Then create the Batch job with `connector_params: {skip_polling: true}` (the connector
otherwise waits for the job to finish and gives up after 1,800 s, cloud.google.com/workflows/
docs/reference/googleapis/batch/v1/projects.locations.jobs/create), poll `jobs.get` until a
final state, publish the outcome on the client's results topic.

The parts: `stacks/workflow_params.py` (parameters, name patterns, the run-time contract's
names), `stacks/workflow_intake.py` (argument to inputs) and `stacks/workflow_run.py` (size,
fill, create, poll, report).
"""

from __future__ import annotations

from typing import Any

import yaml

from stacks.workflow_intake import (
    call_steps,
    client_steps,
    event_steps,
    init_steps,
    listing_steps,
    route_steps,
)
from stacks.workflow_params import (
    FINAL_STATES,
    MAX_PREFIX_OBJECTS,
    READY_MARKER,
    RUNTIME_ASSIGNMENTS,
    WORKFLOW_SOURCE_LIMIT,
    WorkflowParams,
    check_embeddable,
    check_runtime_slots,
    failure_notification,
    marker_regex,
    prefix_regex,
)
from stacks.workflow_run import fill_step, report_steps, run_steps, size_steps

__all__ = [
    "FINAL_STATES",
    "MAX_PREFIX_OBJECTS",
    "READY_MARKER",
    "RUNTIME_ASSIGNMENTS",
    "WORKFLOW_SOURCE_LIMIT",
    "WorkflowParams",
    "build_workflow",
    "embedded_job",
    "failure_notification",
    "marker_regex",
    "prefix_regex",
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
        *call_steps(),
        *client_steps(p),
        *listing_steps(p),
        *size_steps(p),
        fill_step(job),
        *run_steps(p),
        *report_steps(p),
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
            f"jobs.{p.job}: its workflow is {size} bytes for {len(p.clients)} clients; "
            f"Workflows accepts at most {WORKFLOW_SOURCE_LIMIT} (shrink the job's script or "
            "env, or split its clients over a second job)"
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
