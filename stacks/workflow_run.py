"""The middle of a job's dispatcher workflow: claim the output, size, fill, create, poll.

Step builders, in workflow order; `stacks/workflow_source.py` puts them together.

- Claim: the run record `<output>_run.json` (submit/ownership.py `RunRecord`, the one rule for
  one active run per output, shared with `bin/submit`) is created if absent
  (`ifGenerationMatch: 0`, cloud.google.com/storage/docs/request-preconditions). A record of
  the same marker generation is a duplicate delivery: follow the job. A record of another run
  is taken over (compare-and-swap on its generation) only when that run's last job is not
  active; otherwise the batch fails with the reason, and no second job starts.
- Task sizing follows the run-time contract (`gpub_runner.contract.task_share`: task k of a
  job with F files per task takes inputs [k*F, (k+1)*F), else an even split) for the
  marker's count N; polling stops at the contract's final job states.
"""

# ruff: noqa: E501  (workflow expressions are long string literals; split, the YAML reads worse)

from __future__ import annotations

from typing import Any

from gpub_runner import contract

from stacks import layout
from stacks.monitoring_specs import RUN_OUTCOME, RUN_STATE
from stacks.workflow_params import (
    FINAL_STATES,
    RUNTIME_VARIABLE_VALUES,
    VARS,
    WorkflowParams,
    call_step,
    error_text,
    fail,
    lit,
)


def claim_steps(p: WorkflowParams) -> list[dict[str, Any]]:
    """Write (or take over) the run record before any job exists."""
    active = " or ".join(f"prior_state == {lit(s)}" for s in sorted(contract.JOB_ACTIVE_STATES))
    record = {
        "job": p.job,
        "client": "${client}",
        "env": p.env,
        "input": "${input_prefix}",
        "output": "${output_prefix}",
        "manifest_hash": '${"marker:" + generation}',
        "attempts": ["${job_id}"],
        "claimed_at": "${sys.now()}",
        "trigger": "${trigger}",
    }
    insert_args = {
        "bucket": "${bucket}",
        "name": "${record_object}",
        "uploadType": "media",
        "body": "${record}",
    }
    return [
        {
            "claim": {
                "assign": [
                    {"record_object": f"${{output_object + {lit(layout.RUN_RECORD)}}}"},
                    {"record": record},
                    {"record_match": 0},
                ]
            }
        },
        call_step("claim_write", "googleapis.storage.v1.objects.insert",
                  {**insert_args, "ifGenerationMatch": "${record_match}"}, "claimed", [
                      {
                          "claim_taken": {
                              "switch": [{"condition": '${map.get(e, "code") == 412}', "next": "read_record"}],
                              "next": "claim_failed",
                          }
                      }
                  ]),
        {"claim_done": {"next": "size"}},
        *fail(f'${{{error_text("cannot write the run record")}}}', "claim_failed"),
        call_step("read_record", "googleapis.storage.v1.objects.get",
                  {"bucket": "${bucket}", "object": "${record_object}"}, "record_meta",
                  fail(f'${{{error_text("cannot read the run record")}}}', "read_record_failed")),
        call_step("read_prior", "googleapis.storage.v1.objects.get",
                  {"bucket": "${bucket}", "object": "${record_object}", "alt": "media"}, "prior_raw",
                  fail(f'${{{error_text("cannot read the run record")}}}', "read_prior_failed")),
        {
            "prior_type": {
                "switch": [{"condition": '${get_type(prior_raw) == "map"}', "next": "prior_map"}],
                "next": "prior_text",
            }
        },
        {"prior_map": {"assign": [{"prior": "${prior_raw}"}], "next": "same_marker"}},
        {"prior_text": {"assign": [{"prior": "${json.decode(prior_raw)}"}]}},
        {
            "same_marker": {
                "switch": [
                    {
                        "condition": '${map.get(prior, "manifest_hash") == "marker:" + generation}',
                        "next": "is_duplicate",
                    },
                    {"condition": '${len(default(map.get(prior, "attempts"), [])) == 0}', "next": "take_over"},
                ],
                "next": "prior_job",
            }
        },
        {"is_duplicate": {"assign": [{"duplicate": True}], "next": "size"}},
        {
            "prior_job": {
                "assign": [
                    {"prior_id": '${prior.attempts[len(prior.attempts) - 1]}'},
                    {"prior_state": "GONE"},
                ]
            }
        },
        call_step("prior_get", "googleapis.batch.v1.projects.locations.jobs.get",
                  {"name": '${parent + "/jobs/" + prior_id}'}, "prior_current",
                  [{"prior_gone": {"assign": [{"prior_current": None}]}}]),
        {
            "prior_known": {
                "switch": [{"condition": '${get_type(prior_current) == "map"}', "next": "prior_read"}],
                "next": "take_over",
            }
        },
        {"prior_read": {"assign": [{"prior_state": "${prior_current.status.state}"}]}},
        {
            "prior_active": {
                "switch": [{"condition": f"${{{active}}}", "next": "owned"}],
                "next": "take_over",
            }
        },
        {
            "owned": {
                "assign": [
                    {"state": "FAILED"},
                    {"reason": '${"output " + output_prefix + " belongs to the active run of job " + prior_id + " (" + prior_state + "); one active run per output: wait for it, or cancel it (bin/submit cancel " + prior_id + "), then write the marker again"}'},
                    {"batch_job": ""},
                ],
                "next": "outcome",
            }
        },
        {
            "take_over": {
                "assign": [
                    {"record.attempts": '${list.concat(default(map.get(prior, "attempts"), []), job_id)}'},
                    {"record_match": "${int(record_meta.generation)}"},
                ],
                "next": "claim_write",
            }
        },
    ]


def size_steps(p: WorkflowParams) -> list[dict[str, Any]]:
    """Task count and parallelism for `expected` inputs (as the submit planner sizes them):
    with F files per task, ceil(n/F) tasks, so `task_share` gives every input to one task."""
    cap = p.max_parallelism
    if p.fixed_task_count is not None:
        count = str(p.fixed_task_count)
        par = f"${{math.min({p.fixed_task_count}, {cap})}}"
    elif p.files_per_task is not None:
        f = p.files_per_task
        count = f"${{(expected + {f - 1}) // {f}}}"
        par = f"${{math.min((expected + {f - 1}) // {f}, {cap})}}"
    else:
        # One wave: every VM boots once, done markers make retries cheap.
        count = f"${{math.min(expected, {cap})}}"
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
                {'job.labels["marker-generation"]': "${generation}"},
                # What billing sees (jobs/billing_labels.py; the rendered job carries env and
                # job): client names and Batch job ids are valid label values as they are.
                {"job.allocationPolicy.labels.client": "${client}"},
                {"job.allocationPolicy.labels.run": "${job_id}"},
                {"job.notifications": notifications},
            ]
        }
    }


def run_log(step: str, p: WorkflowParams, fields: dict[str, Any]) -> dict[str, Any]:
    """A `sys.log` JSON entry the environment's log-based metrics count (stacks/
    monitoring_specs.py): `gpub: run-state` at each poll, `gpub: run-outcome` at the end."""
    kind = RUN_STATE if step == "log_state" else RUN_OUTCOME
    payload = {"gpub": kind, "client": "${client}", "job": p.job, "job_id": "${job_id}",
               **fields}
    return {step: {"call": "sys.log", "args": {"json": payload, "severity": "INFO"}}}


def run_steps(p: WorkflowParams) -> list[dict[str, Any]]:
    """Create the Batch job (or find the one a duplicate delivery created), then poll it."""
    finals = " or ".join(f"state == {lit(s)}" for s in FINAL_STATES)
    return [
        call_step(
            "create", "googleapis.batch.v1.projects.locations.jobs.create",
            {
                "parent": "${parent}",
                "jobId": "${job_id}",
                # Deterministic: a retried create is the same request (Batch dedupes it), and
                # a duplicate delivery meets ALREADY_EXISTS on the job id.
                "requestId": "${request_id}",
                "body": "${job}",
                # Return at creation; without it the connector waits for the job and fails
                # after 1,800 s while the job still runs (cloud.google.com/workflows/docs/
                # reference/googleapis/batch/v1/projects.locations.jobs/create).
                "connector_params": {"skip_polling": True},
            },
            "created",
            [
                {
                    "exists": {
                        "switch": [{"condition": '${map.get(e, "code") == 409}', "next": "follow"}],
                        "next": "create_failed",
                    }
                },
                {"create_failed": {"assign": [{"state": "FAILED"}, {"reason": f'${{{error_text("Batch refused the job")}}}'}, {"batch_job": ""}], "next": "outcome"}},
                {"follow": {"assign": [{"duplicate": True}], "next": "wait"}},
            ],
        ),
        {"wait": {"call": "sys.sleep", "args": {"seconds": p.poll_interval_s}}},
        call_step("poll", "googleapis.batch.v1.projects.locations.jobs.get",
                  {"name": "${batch_job}"}, "current",
                  fail('${"jobs.get failed after retries; the job may still run (bin/submit status " + job_id + "): " + default(map.get(e, "message"), json.encode_to_string(e))}', "poll_failed")),
        {"read_state": {"assign": [{"state": "${current.status.state}"}]}},
        run_log("log_state", p, {"state": "${state}", "waited_s": "${sys.now() - created_at}"}),
        {
            "done": {
                "switch": [
                    {"condition": f"${{{finals}}}", "next": "facts"},
                ],
                "next": "wait",
            }
        },
    ]
