"""The end of a job's dispatcher workflow: what the run did, one outcome, published once.

Step builders, in workflow order; `stacks/workflow_source.py` puts them together. Each fact
costs one call whatever the batch's size (the intake contract):

- `reason`: the last of the job's status events (Batch's own words for why it ended);
- `task_attempts`, `vm_losses`: counted in the first page of the job's tasks (`tasks.list`,
  up to 1,000): attempts are status events entering RUNNING, VM losses the exit codes Batch
  reserves for a lost VM (50001-50006, cloud.google.com/batch/docs/troubleshooting#reserved-exit-codes);
- `inputs`, `refused`: one read of `<output>_plan.json`, which the job writes when it plans;
- `errors`: one list of `<output>_errors/` with maxResults 1 (any or none).

A SUCCEEDED job with refused inputs or any error object is PARTIAL, never plain SUCCEEDED.
The outcome is published at most once per marker generation: `<output>_outcomes/<gen>.json`
is created if absent first, so of two executions following one job (a duplicate delivery),
the one that ends first publishes and the other ends quietly; if the first died before, the
second publishes. When publishing fails after retries, the event goes to the intake
dead-letter topic with the reason (`bin/submit intake dead-letters`).
"""

# ruff: noqa: E501  (workflow expressions are long string literals; split, the YAML reads worse)

from __future__ import annotations

from typing import Any

from stacks import layout
from stacks.workflow_params import WorkflowParams, call_step, lit
from stacks.workflow_run import run_log

# Exit codes Batch reserves for a lost VM (gpub_runner.contract.BATCH_RESERVED_EXIT_CODES less
# 50005, a task over its maxRunDuration).
VM_LOSS_RE = "exit code 5000[12346]"
NOTHING: list[dict[str, Any]] = []


def fact_steps(p: WorkflowParams) -> list[dict[str, Any]]:
    """The facts of a finished job: each one call, none fatal."""
    events = '${default(map.get(current.status, "statusEvents"), [])}'
    return [
        {"facts": {"assign": [{"events": events}, {"errors_prefix": f"${{output_object + {lit(layout.ERRORS)}}}"}]}},
        {
            "has_events": {
                "switch": [{"condition": "${len(events) > 0}", "next": "last_event"}],
                "next": "tasks",
            }
        },
        {"last_event": {"assign": [{"reason": '${default(map.get(events[len(events) - 1], "description"), "")}'}]}},
        call_step("tasks", "googleapis.batch.v1.projects.locations.jobs.taskGroups.tasks.list",
                  {"parent": '${batch_job + "/taskGroups/group0"}', "pageSize": 1000}, "task_page",
                  [{"no_tasks": {"assign": [{"task_page": None}], "next": "plan"}}]),
        {
            "count_tasks": {
                "assign": [
                    {"task_text": "${json.encode_to_string(task_page)}"},
                    {"task_attempts": '${len(text.find_all_regex(task_text, "to RUNNING"))}'},
                    {"vm_losses": f"${{len(text.find_all_regex(task_text, {lit(VM_LOSS_RE)}))}}"},
                ]
            }
        },
        call_step("plan", "googleapis.storage.v1.objects.get",
                  {"bucket": "${bucket}", "object": f"${{output_object + {lit(layout.PLAN)}}}", "alt": "media"},
                  "plan_raw", [{"no_plan": {"assign": [{"plan_raw": None}], "next": "errors_page"}}]),
        {
            "plan_type": {
                "switch": [{"condition": '${get_type(plan_raw) == "map"}', "next": "plan_map"}],
                "next": "plan_text",
            }
        },
        {"plan_map": {"assign": [{"plan": "${plan_raw}"}], "next": "plan_counts"}},
        {"plan_text": {"assign": [{"plan": "${json.decode(plan_raw)}"}]}},
        {
            "plan_counts": {
                "assign": [
                    {"inputs": '${map.get(plan, "accepted")}'},
                    {"refused": '${map.get(plan, "refused")}'},
                ]
            }
        },
        {
            "plan_reason": {
                "switch": [{"condition": '${state != "SUCCEEDED" and default(map.get(plan, "reason"), "") != ""}', "next": "plan_says"}],
                "next": "errors_page",
            }
        },
        {"plan_says": {"assign": [{"reason": '${plan.reason + "; " + reason}'}]}},
        call_step("errors_page", "googleapis.storage.v1.objects.list",
                  {"bucket": "${bucket}", "prefix": "${errors_prefix}", "maxResults": 1}, "error_page",
                  [{"no_errors": {"assign": [{"error_page": {}}]}}]),
        {"any_errors": {"assign": [{"errors": '${"items" in error_page and len(error_page["items"]) > 0}'}]}},
        {
            "partial": {
                "switch": [
                    {"condition": '${state == "SUCCEEDED" and (errors or default(refused, 0) > 0)}', "next": "is_partial"},
                ],
                "next": "outcome",
            }
        },
        {"is_partial": {"assign": [{"state": "PARTIAL"}]}},
    ]


def report_steps(p: WorkflowParams) -> list[dict[str, Any]]:
    """One outcome per marker generation on the client's results topic; the execution fails
    unless the run succeeded."""
    outcome = {
        "client": "${client}",
        "job": p.job,
        "batch": "${batch}",
        "env": p.env,
        "state": "${state}",
        "job_id": "${job_id}",
        "batch_job": "${batch_job}",
        "output": "${output_prefix}",
        "input": "${input_prefix}",
        "expected": "${expected}",
        "inputs": "${inputs}",
        "refused": "${refused}",
        "errors": "${errors}",
        "reason": "${reason}",
        "task_attempts": "${task_attempts}",
        "vm_losses": "${vm_losses}",
        "marker_generation": "${generation}",
        "trigger": "${trigger}",
        "execution_id": "${execution_id}",
    }
    message = {
        "data": "${base64.encode(json.encode(outcome))}",
        "attributes": {"client": "${client}", "job": p.job, "batch": "${batch}",
                       "state": "${state}", "job_id": "${job_id}"},
    }
    return [
        {"outcome": {"assign": [{"outcome": outcome}]}},
        run_log("log_outcome", p, {"batch": "${batch}", "state": "${state}",
                                   "reason": "${reason}"}),
        call_step("once", "googleapis.storage.v1.objects.insert",
                  {"bucket": "${bucket}", "name": f'${{output_object + {lit(layout.OUTCOMES)} + generation + ".json"}}',
                   "uploadType": "media", "ifGenerationMatch": 0, "body": "${outcome}"}, "stored",
                  [{
                      "published_before": {
                          # 412: another execution of this marker published it; anything else:
                          # publish anyway (a second copy beats none).
                          "switch": [{"condition": '${map.get(e, "code") == 412}', "next": "already_published"}],
                          "next": "publish",
                      }
                  }]),
        call_step("publish", "googleapis.pubsub.v1.projects.topics.publish",
                  {"topic": "${results_topic}", "body": {"messages": [message]}}, "published",
                  [{"publish_failed": {"assign": [{"publish_error": "${e}"}], "next": "dead_letter"}}]),
        {
            "finish": {
                "switch": [
                    {"condition": '${state == "SUCCEEDED" or state == "PARTIAL"}', "next": "succeeded"},
                ],
                "next": "failed",
            }
        },
        {"succeeded": {"return": "${outcome}"}},
        {"failed": {"raise": '${"batch job " + job_id + " ended " + state + ": " + reason}'}},
        {"already_published": {"return": '${"duplicate: the outcome of " + batch + " (marker generation " + generation + ") was published by another execution"}'}},
        call_step("dead_letter", "googleapis.pubsub.v1.projects.topics.publish",
                  {"topic": p.dead_letter_topic, "body": {"messages": [{
                      "data": "${base64.encode(json.encode(outcome))}",
                      "attributes": {"bucketId": "${bucket}", "objectId": "${marker_object}",
                                     "eventType": "OBJECT_FINALIZE", "objectGeneration": "${generation}",
                                     "job": p.job, "reason": "cannot publish the outcome"},
                  }]}}, "dead_lettered", None),
        {"lost": {"raise": "${publish_error}"}},
    ]
