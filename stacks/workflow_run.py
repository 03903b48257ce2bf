"""The second half of a job's dispatcher workflow: size, fill, create, poll, report.

Step builders, in workflow order; `stacks/workflow_source.py` puts them together. Task sizing
follows the run-time contract (`gpub_runner.contract.task_share`: task k of a job with F files
per task takes inputs [k*F, (k+1)*F), else an even split), the variables filled are the
contract's runtime variables, and polling stops at the contract's final job states.
"""

# ruff: noqa: E501  (workflow expressions are long string literals; split, the YAML reads worse)

from __future__ import annotations

from typing import Any

from stacks.monitoring_specs import RUN_OUTCOME, RUN_STATE
from stacks.workflow_params import (
    FINAL_STATES,
    RUNTIME_VARIABLE_VALUES,
    VARS,
    WorkflowParams,
    lit,
)


def run_log(step: str, p: WorkflowParams, fields: dict[str, Any]) -> dict[str, Any]:
    """A `sys.log` JSON entry the environment's log-based metrics count (stacks/
    monitoring_specs.py): `gpub: run-state` at each poll, `gpub: run-outcome` at the end."""
    kind = RUN_STATE if step == "log_state" else RUN_OUTCOME
    payload = {"gpub": kind, "client": "${client}", "job": p.job, "job_id": "${job_id}",
               **fields}
    return {step: {"call": "sys.log", "args": {"json": payload, "severity": "INFO"}}}


def size_steps(p: WorkflowParams) -> list[dict[str, Any]]:
    """Task count and parallelism for `n_objects` inputs (as the submit planner sizes them):
    with F files per task, ceil(n/F) tasks, so `task_share` gives every input to one task."""
    cap = p.max_parallelism
    if p.fixed_task_count is not None:
        count = str(p.fixed_task_count)
        par = f"${{math.min({p.fixed_task_count}, {cap})}}"
    elif p.files_per_task is not None:
        f = p.files_per_task
        count = f"${{(n_objects + {f - 1}) // {f}}}"
        par = f"${{math.min((n_objects + {f - 1}) // {f}, {cap})}}"
    else:
        # One wave: every VM boots once, done markers make retries cheap.
        count = f"${{math.min(n_objects, {cap})}}"
        par = count
    return [{"size": {"assign": [{"task_count": count}, {"parallelism": par}], "next": "fill"}}]


def fill_step(job: dict[str, Any]) -> dict[str, Any]:
    """Set the runtime fields of the job body (RUNTIME_ASSIGNMENTS), nothing else."""
    notifications: Any = (
        "${list.concat(job.notifications, failure_notification)}"
        if job.get("notifications")
        else ["${failure_notification}"]
    )
    return {
        "fill": {
            "assign": [
                {"job.taskGroups[0].taskCount": "${string(task_count)}"},
                {"job.taskGroups[0].parallelism": "${string(parallelism)}"},
                *({f"{VARS}.{name}": f"${{{value}}}"}
                  for name, value in RUNTIME_VARIABLE_VALUES.items()),
                {"job.allocationPolicy.serviceAccount.email": "${run_sa}"},
                {"job.labels.client": "${client}"},
                {"job.labels.trigger": "${trigger}"},
                {"job.labels.submitter": "workflow"},
                # Client names and Batch job ids are valid label values as they are.
                {"job.allocationPolicy.labels.client": "${client}"},
                {"job.allocationPolicy.labels.run": "${job_id}"},
                {"job.notifications": notifications},
            ]
        }
    }


def run_steps(p: WorkflowParams) -> list[dict[str, Any]]:
    """Create the Batch job, then poll it until a final state."""
    finals = " or ".join(f"state == {lit(s)}" for s in FINAL_STATES)
    return [
        {
            "create": {
                "try": {
                    "call": "googleapis.batch.v1.projects.locations.jobs.create",
                    "args": {
                        "parent": "${parent}",
                        "jobId": "${job_id}",
                        "requestId": "${execution_id}",  # a retried create is not a second job
                        "body": "${job}",
                        # Return at creation; without it the connector waits for the job and
                        # fails after 1,800 s while the job still runs.
                        "connector_params": {"skip_polling": True},
                    },
                    "result": "created",
                },
                "except": {
                    "as": "e",
                    "steps": [
                        {
                            "create_failed": {
                                "assign": [
                                    {"state": "CREATE_FAILED"},
                                    {
                                        "reason": '${default(map.get(e, "message"), "Batch refused the job")}'
                                    },
                                ],
                                "next": "outcome",
                            }
                        }
                    ],
                },
            }
        },
        {"created": {"assign": [{"batch_job": "${created.name}"}]}},
        {"created_at": {"assign": [{"created_at": "${sys.now()}"}]}},  # for run-state logs
        {"wait": {"call": "sys.sleep", "args": {"seconds": p.poll_interval_s}}},
        {
            "poll": {
                "call": "googleapis.batch.v1.projects.locations.jobs.get",
                "args": {"name": "${batch_job}"},
                "result": "current",
            }
        },
        {
            "read_state": {
                "assign": [
                    {"state": "${current.status.state}"},
                    {"task_groups": '${map.get(current.status, "taskGroups")}'},
                ]
            }
        },
        run_log("log_state", p, {"state": "${state}", "waited_s": "${sys.now() - created_at}"}),
        {
            "done": {
                "switch": [
                    {"condition": f"${{{finals}}}", "next": "outcome"},
                ],
                "next": "wait",
            }
        },
    ]


def report_steps(p: WorkflowParams) -> list[dict[str, Any]]:
    """Publish the outcome on the client's results topic; fail the execution unless it succeeded."""
    return [
        {
            "outcome": {
                "assign": [
                    {
                        "outcome": {
                            "client": "${client}",
                            "job": p.job,
                            "batch": "${batch}",
                            "job_id": "${job_id}",
                            "batch_job": "${batch_job}",
                            "state": "${state}",
                            "reason": "${reason}",
                            "trigger": "${trigger}",
                            "execution_id": "${execution_id}",
                            "input_prefix": "${input_prefix}",
                            "input_count": "${n_objects}",
                            "output_prefix": "${output_prefix}",
                            "task_groups": "${task_groups}",
                        }
                    }
                ]
            }
        },
        run_log("log_outcome", p, {"batch": "${batch}", "state": "${state}",
                                   "reason": "${reason}"}),
        {
            "publish": {
                "call": "googleapis.pubsub.v1.projects.topics.publish",
                "args": {
                    "topic": "${results_topic}",
                    "body": {
                        "messages": [
                            {
                                "data": "${base64.encode(json.encode(outcome))}",
                                "attributes": {
                                    "client": "${client}",
                                    "job": p.job,
                                    "state": "${state}",
                                    "job_id": "${job_id}",
                                },
                            }
                        ]
                    },
                },
            }
        },
        {
            "finish": {
                "switch": [
                    {
                        "condition": '${state == "SUCCEEDED" or state == "SKIPPED"}',
                        "next": "succeeded",
                    },
                ],
                "next": "failed",
            }
        },
        {"succeeded": {"return": "${outcome}"}},
        {"failed": {"raise": '${"batch job " + job_id + " ended " + state + ": " + reason}'}},
    ]
