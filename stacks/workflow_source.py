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
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

# Workflows rejects sources over 128 KB.
WORKFLOW_SOURCE_LIMIT = 128 * 1024
# Terminal Batch job states: the workflow stops polling at these (JobStatus.State,
# cloud.google.com/batch/docs/reference/rest/v1/projects.locations.jobs#State).
FINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED", "DELETION_IN_PROGRESS")
# The marker object whose upload starts a run of a batch (docs/contracts.md "Tenancy v2").
READY_MARKER = "_READY"
# A prefix run passes its inputs in GPUB_INPUT_OBJECTS (comma-separated): cap it so the env
# variable and the workflow's 512 KB of variables stay well within limits. Bigger sets go
# through `bin/submit`, which writes a manifest.
MAX_PREFIX_OBJECTS = 1000
# The paths of the job body the workflow sets at run time (and nothing else).
_VARS = "job.taskGroups[0].taskSpec.environment.variables"
RUNTIME_ASSIGNMENTS = (
    "job.taskGroups[0].taskCount",
    "job.taskGroups[0].parallelism",
    f"{_VARS}.GPUB_INPUT_OBJECTS",
    f"{_VARS}.GPUB_INPUT_PREFIX",
    f"{_VARS}.GPUB_OUTPUT_PREFIX",
    f"{_VARS}.GPUB_JOB_NAME",
    "job.allocationPolicy.serviceAccount.email",
    "job.labels.client",
    "job.labels.trigger",
    "job.labels.submitter",
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


def _lit(text: str) -> str:
    """A Workflows expression string literal (JSON quoting is valid there)."""
    return json.dumps(text)


def _re_escape(text: str) -> str:
    # Escape only RE2 metacharacters, so the patterns in the source stay readable.
    return re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", text)


def _ext_re(input_format: str | None) -> str:
    # Same rule as the submit planner: the format's extension, case-insensitively.
    return rf"\.(?i:{_re_escape(input_format)})$" if input_format else "$"


def marker_regex(p: WorkflowParams) -> str:
    """Object names that start a run: `inputs/<job>/<batch>/_READY`, one folder level."""
    return f"^{_re_escape(p.inputs_root)}[^/_,][^/,]*/{_re_escape(READY_MARKER)}$"


def prefix_regex(p: WorkflowParams) -> str:
    """Names (relative to the listed prefix) a run takes as inputs: no bookkeeping (`_...`,
    the marker included), no comma (GPUB_INPUT_OBJECTS is comma-separated)."""
    return f"^([^/_,][^/,]*/)*[^/_,][^/,]*{_ext_re(p.input_format)}"


def _check_embeddable(value: Any, path: str = "job") -> None:
    # Workflows evaluates any string that is a whole `${...}`: the job body must stay literal.
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        raise ValueError(
            f"{path}: {value!r} would be evaluated as a Workflows expression; "
            "the job JSON cannot be embedded in a workflow"
        )
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_embeddable(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_embeddable(v, f"{path}[{i}]")


def _check_runtime_slots(job: Mapping[str, Any], p: WorkflowParams) -> None:
    groups = job.get("taskGroups") or []
    variables = (
        groups[0].get("taskSpec", {}).get("environment", {}).get("variables") if groups else None
    )
    if not isinstance(variables, Mapping) or not isinstance(job.get("labels"), Mapping):
        raise ValueError(
            f"jobs.{p.job}: the rendered job has no task environment variables or labels; "
            "render it with the environment's RenderContext"
        )


def _size_steps(p: WorkflowParams) -> list[dict[str, Any]]:
    """Task count and parallelism for `n_objects` inputs (mirrors submit.planner)."""
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


def build_workflow(p: WorkflowParams) -> dict[str, Any]:
    """The workflow definition as data (what `workflow_source` dumps as YAML)."""
    job = dict(p.job_json)
    _check_embeddable(job)
    _check_runtime_slots(job, p)
    notifications: Any = (
        "${list.concat(job.notifications, failure_notification)}"
        if job.get("notifications")
        else ["${failure_notification}"]
    )
    finals = " or ".join(f"state == {_lit(s)}" for s in FINAL_STATES)
    client_ok = "${client in clients}"

    steps: list[dict[str, Any]] = [
        {
            "init": {
                "assign": [
                    {"job": job},
                    {"clients": list(p.clients)},
                    {"inputs_root": p.inputs_root},
                    {"parent": f"projects/{p.project_id}/locations/{p.job_region}"},
                    {"execution_id": '${sys.get_env("GOOGLE_CLOUD_WORKFLOW_EXECUTION_ID")}'},
                    # "2025-01-31T12:00:00.123Z" -> "20250131t120000": job ids are lowercase.
                    {
                        "stamp": "${text.to_lower(text.replace_all_regex("
                        'text.substring(time.format(sys.now()), 0, 19), "[-:]", ""))}'
                    },
                    {
                        "job_id": f'${{{_lit(p.job + "-")} + stamp + "-" + '
                        "text.substring(execution_id, 0, 8)}"
                    },
                    {"trigger": "manual"},
                    {"client": ""},
                    {"batch": ""},
                    {"rel": ""},
                    {"input_prefix": ""},
                    {"output_prefix": ""},
                    {"input_objects": ""},
                    {"sep": ""},
                    {"n_objects": 0},
                    {"state": ""},
                    {"reason": ""},
                    {"batch_job": ""},
                    {"task_groups": None},
                ]
            }
        },
        {
            "route": {
                "switch": [
                    # get_type, not `== null`: cloud.google.com/workflows/docs/reference/stdlib/
                    # expression-helpers (and the local emulator has no `null` literal).
                    {"condition": "${get_type(args) == \"null\"}", "next": "bad_request"},
                    {"condition": '${"data" in args}', "next": "from_event"},
                    {"condition": '${"client" in args}', "next": "from_args"},
                ],
                "next": "bad_request",
            }
        },
        {
            "bad_request": {
                "raise": (
                    'expected an uploads-topic event, {"client": "...", "batch": "..."} or '
                    '{"client": "...", "input_prefix": "...", "trigger": "schedule"}'
                )
            }
        },
        # --- a storage notification: only this job's `_READY` markers start a run --------
        {
            "from_event": {
                "assign": [
                    {"trigger": "upload"},
                    {"attrs": '${map.get(args.data, ["message", "attributes"])}'},
                    {"object": '${default(map.get(attrs, "objectId"), "")}'},
                    {"bucket": '${default(map.get(attrs, "bucketId"), "")}'},
                    {"event_type": '${default(map.get(attrs, "eventType"), "")}'},
                ]
            }
        },
        {
            "is_marker": {
                "switch": [
                    {
                        "condition": (
                            '${event_type == "OBJECT_FINALIZE" and text.match_regex(object, '
                            f"{_lit(marker_regex(p))}) and text.match_regex(bucket, "
                            f"{_lit('^' + _re_escape(p.bucket_prefix))})}}"
                        ),
                        "next": "marker",
                    },
                ],
                "next": "ignored",
            }
        },
        # Every uploaded file notifies; anything but this job's marker ends here, quietly.
        {"ignored": {"return": '${"ignored: " + bucket + "/" + object}'}},
        {
            "marker": {
                "assign": [
                    {"client": f"${{text.substring(bucket, {len(p.bucket_prefix)}, len(bucket))}}"},
                    {
                        "batch": "${text.substring(object, len(inputs_root), "
                        f"len(object) - {len(READY_MARKER) + 1})}}"
                    },
                    {"rel": '${batch + "/"}'},
                ],
                "next": "known_client",
            }
        },
        # --- by hand or on a schedule -----------------------------------------------------
        {
            "from_args": {
                "assign": [
                    {"client": "${args.client}"},
                    {"batch": '${default(map.get(args, "batch"), "")}'},
                    {"rel": '${default(map.get(args, "input_prefix"), batch)}'},
                ]
            }
        },
        {
            "trigger_label": {
                "switch": [
                    {"condition": '${map.get(args, "trigger") == "schedule"}', "next": "scheduled"},
                ],
                "next": "slash",
            }
        },
        {"scheduled": {"assign": [{"trigger": "schedule"}]}},
        {
            "slash": {
                "switch": [
                    {
                        "condition": '${rel != "" and not(text.match_regex(rel, "/$"))}',
                        "next": "add_slash",
                    },
                ],
                "next": "name_batch",
            }
        },
        {"add_slash": {"assign": [{"rel": '${rel + "/"}'}]}},
        {
            "name_batch": {
                "switch": [
                    {"condition": '${batch == ""}', "next": "batch_from_execution"},
                ],
                "next": "known_client",
            }
        },
        {"batch_from_execution": {"assign": [{"batch": "${execution_id}"}]}},
        # --- the client: one of this job's, and everything else derived from it -----------
        {
            "known_client": {
                "switch": [{"condition": client_ok, "next": "client_literals"}],
                "next": "unknown_client",
            }
        },
        {"unknown_client": {"raise": f'${{"not a client of {p.job}: " + client}}'}},
        {
            "client_literals": {
                "assign": [
                    {"bucket": f"${{{_lit(p.bucket_prefix)} + client}}"},
                    {"results_topic": f'${{{_lit(p.topic_prefix)} + client + "-results"}}'},
                    {"run_sa": f'${{"run-" + client + {_lit(p.run_sa_domain)}}}'},
                    {
                        "failure_notification": {
                            "pubsubTopic": "${results_topic}",
                            "message": {"type": "JOB_STATE_CHANGED", "newJobState": "FAILED"},
                        }
                    },
                    {"list_prefix": "${inputs_root + rel}"},
                    {"input_prefix": '${"gs://" + bucket + "/" + inputs_root + rel}'},
                    {
                        "output_prefix": f'${{"gs://" + bucket + "/" + {_lit(p.outputs_root)} '
                        '+ batch + "/"}'
                    },
                    {"page_token": None},
                ]
            }
        },
        {
            "list_page": {
                "call": "googleapis.storage.v1.objects.list",
                "args": {
                    "bucket": "${bucket}",
                    "prefix": "${list_prefix}",
                    "pageToken": "${page_token}",
                    "maxResults": 1000,
                },
                "result": "page",
            }
        },
        {
            "has_items": {
                "switch": [
                    {"condition": '${"items" in page}', "next": "collect"},
                ],
                "next": "more_pages",
            }
        },
        {
            "collect": {
                "for": {
                    "value": "obj",
                    "in": "${page.items}",
                    "steps": [
                        {
                            "select": {
                                "switch": [
                                    {
                                        "condition": (
                                            "${text.match_regex(text.substring(obj.name, len(list_prefix), "
                                            f"len(obj.name)), {_lit(prefix_regex(p))})}}"
                                        ),
                                        "steps": [
                                            {
                                                "add": {
                                                    "assign": [
                                                        {
                                                            "input_objects": '${input_objects + sep + "gs://" + bucket + "/" + obj.name}'
                                                        },
                                                        {"sep": ","},
                                                        {"n_objects": "${n_objects + 1}"},
                                                    ]
                                                }
                                            }
                                        ],
                                    }
                                ]
                            }
                        }
                    ],
                }
            }
        },
        {
            "more_pages": {
                "switch": [
                    {"condition": f"${{n_objects > {MAX_PREFIX_OBJECTS}}}", "next": "too_many"},
                    {"condition": '${"nextPageToken" in page}', "next": "next_page"},
                ],
                "next": "any_inputs",
            }
        },
        {"next_page": {"assign": [{"page_token": "${page.nextPageToken}"}], "next": "list_page"}},
        {
            "too_many": {
                "raise": (
                    f'${{"more than {MAX_PREFIX_OBJECTS} inputs under " + input_prefix + '
                    '"; submit them with bin/submit (manifest) or split the batch"}'
                )
            }
        },
        {
            "any_inputs": {
                "switch": [
                    {"condition": "${n_objects == 0}", "next": "no_inputs"},
                ],
                "next": "size",
            }
        },
        {
            "no_inputs": {
                "assign": [
                    {"state": "SKIPPED"},
                    {"reason": '${"no inputs under " + input_prefix}'},
                ],
                "next": "outcome",
            }
        },
        # --- run ----------------------------------------------------------------------------
        *_size_steps(p),
        {
            "fill": {
                "assign": [
                    {"job.taskGroups[0].taskCount": "${string(task_count)}"},
                    {"job.taskGroups[0].parallelism": "${string(parallelism)}"},
                    {f"{_VARS}.GPUB_INPUT_OBJECTS": "${input_objects}"},
                    {f"{_VARS}.GPUB_INPUT_PREFIX": "${input_prefix}"},
                    {f"{_VARS}.GPUB_OUTPUT_PREFIX": "${output_prefix}"},
                    {f"{_VARS}.GPUB_JOB_NAME": "${job_id}"},
                    {"job.allocationPolicy.serviceAccount.email": "${run_sa}"},
                    {"job.labels.client": "${client}"},
                    {"job.labels.trigger": "${trigger}"},
                    {"job.labels.submitter": "workflow"},
                    {"job.notifications": notifications},
                ]
            }
        },
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
        {
            "done": {
                "switch": [
                    {"condition": f"${{{finals}}}", "next": "outcome"},
                ],
                "next": "wait",
            }
        },
        # --- report -------------------------------------------------------------------------
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
