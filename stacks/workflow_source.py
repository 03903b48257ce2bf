"""The Cloud Workflows source (YAML) that runs one declared job for one client.

Pure: no provider import, so tests (and reviewers) can build and parse it without the CDK.

One workflow per (client, job) -- see docs/clients.md. Everything client-specific (bucket,
prefixes, results topic) is a literal in the source, so no caller can point a workflow at
another client's data: the Eventarc trigger, the Cloud Scheduler job and a person running it by
hand can only choose *which* of this client's inputs to process.

The job body is the renderer's output (`BatchJob.job_json`) embedded verbatim as the `job`
variable of the `init` step. The `fill` step then sets only the runtime fields
(`RUNTIME_ASSIGNMENTS`): task count and parallelism, the GPUB_* runtime variables, the
client/trigger/submitter labels and the client's failure notification.

Two ways in:
- an Eventarc Cloud Audit Log event for `storage.objects.create` (`args.data.protoPayload.
  resourceName`): one file directly under `<client>/inputs/<job>/` -> one task;
- `{"input_prefix": "batch-7/", "trigger": "schedule"}` (Cloud Scheduler, or by hand): every
  input of the job's format under `<client>/inputs/<job>/<input_prefix>`, split into tasks the
  way the submit planner does (files_per_task, capped parallelism).
Then: create the Batch job (connector, returns at creation), poll until it ends, publish the
outcome to the client's results topic.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import yaml

# Workflows rejects sources over 128 KB.
WORKFLOW_SOURCE_LIMIT = 128 * 1024
# Terminal Batch job states: the workflow stops polling at these.
FINAL_STATES = ("SUCCEEDED", "FAILED", "DELETION_IN_PROGRESS")
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
    "job.labels.client",
    "job.labels.trigger",
    "job.labels.submitter",
    "job.notifications",
)


@dataclass(frozen=True)
class WorkflowParams:
    """Everything the source needs; all literals, resolved at synth."""

    client: str
    job: str
    project_id: str
    job_region: str  # where the Batch job is created
    bucket: str
    results_topic: str  # projects/<p>/topics/batch-<client>-results
    job_json: Mapping[str, Any]  # the rendered job, runtime fields empty
    input_format: str | None
    files_per_task: int | None
    max_parallelism: int
    fixed_task_count: int | None = None  # jobs with taskEnvironments
    poll_interval_s: int = 60

    @property
    def inputs_root(self) -> str:
        return f"{self.client}/inputs/{self.job}/"

    @property
    def outputs_root(self) -> str:
        return f"{self.client}/outputs/{self.job}/"


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


def event_regex(p: WorkflowParams) -> str:
    """Audit-log resource names this workflow accepts: one file directly in its inputs folder,
    not bookkeeping (`_...`), no comma (GPUB_INPUT_OBJECTS is comma-separated)."""
    root = _re_escape(f"projects/_/buckets/{p.bucket}/objects/{p.inputs_root}")
    return f"^{root}[^/_,][^/,]*{_ext_re(p.input_format)}"


def prefix_regex(p: WorkflowParams) -> str:
    """Names (relative to the listed prefix) a prefix run takes as inputs."""
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
    note = failure_notification(p.results_topic)
    notifications: Any = (
        "${list.concat(job.notifications, failure_notification)}"
        if job.get("notifications")
        else [note]
    )
    object_prefix = f"projects/_/buckets/{p.bucket}/objects/"
    finals = " or ".join(f"state == {_lit(s)}" for s in FINAL_STATES)

    steps: list[dict[str, Any]] = [
        {
            "init": {
                "assign": [
                    {"job": job},
                    {"failure_notification": note},
                    {"bucket": p.bucket},
                    {"inputs_root": p.inputs_root},
                    {"parent": f"projects/{p.project_id}/locations/{p.job_region}"},
                    {"results_topic": p.results_topic},
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
                    {
                        "output_prefix": f"${{{_lit(f'gs://{p.bucket}/{p.outputs_root}')} + "
                        'execution_id + "/"}'
                    },
                    {"trigger": "manual"},
                    {"input_prefix": ""},
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
                    {"condition": "${args == null}", "next": "bad_request"},
                    {"condition": '${"data" in args}', "next": "from_event"},
                    {"condition": '${"input_prefix" in args}', "next": "from_prefix"},
                ],
                "next": "bad_request",
            }
        },
        {
            "bad_request": {
                "raise": (
                    'expected an Eventarc storage event or {"input_prefix": "...", '
                    '"trigger": "schedule"}'
                )
            }
        },
        # --- one uploaded file ------------------------------------------------------------
        {
            "from_event": {
                "assign": [
                    {"trigger": "eventarc"},
                    {"resource": "${args.data.protoPayload.resourceName}"},
                ]
            }
        },
        {
            "check_event": {
                "switch": [
                    {
                        "condition": f"${{text.match_regex(resource, {_lit(event_regex(p))})}}",
                        "next": "event_input",
                    },
                ],
                "next": "not_an_input",
            }
        },
        {
            "not_an_input": {
                "assign": [
                    {"state": "SKIPPED"},
                    {"reason": '${"not an input of this job: " + resource}'},
                ],
                "next": "outcome",
            }
        },
        {
            "event_input": {
                "assign": [
                    {
                        "input_objects": f'${{"gs://" + bucket + "/" + text.substring('
                        f"resource, {len(object_prefix)}, len(resource))}}"
                    },
                    {"input_prefix": f"gs://{p.bucket}/{p.inputs_root}"},
                    {"n_objects": 1},
                ],
                "next": "size",
            }
        },
        # --- every input under a prefix (schedule, or by hand) ----------------------------
        {"from_prefix": {"assign": [{"rel": "${args.input_prefix}"}]}},
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
                "next": "list_init",
            }
        },
        {"add_slash": {"assign": [{"rel": '${rel + "/"}'}]}},
        {
            "list_init": {
                "assign": [
                    {"list_prefix": "${inputs_root + rel}"},
                    {"input_prefix": '${"gs://" + bucket + "/" + inputs_root + rel}'},
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
                    '"; submit them with bin/submit (manifest) or use a narrower input_prefix"}'
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
                    {"job.labels.client": p.client},
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
                            "client": p.client,
                            "job": p.job,
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
                                    "client": p.client,
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
            f"clients.{p.client}.jobs: the workflow for {p.job!r} is {size} bytes; Workflows "
            f"accepts at most {WORKFLOW_SOURCE_LIMIT} (shrink the job's script or env)"
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


# A stand-in client name: as long as the longest client name, plain YAML, found nowhere else.
CLIENT_PLACEHOLDER = "gpubxclientxplaceholder"


def _plain_yaml_word(text: str) -> bool:
    """True when YAML writes `text` unquoted, like the placeholder (not `true`, `null`, ...)."""
    return bool(yaml.safe_load(text) == text)


class SourceTemplate:
    """One job's source rendered once for a stand-in client; per-client text by substitution.

    Rendering and dumping the YAML costs ~1.5 ms per (client, job); substituting the client's
    name into the job's template costs microseconds, and Terraform can do it (`replace`), so
    the stack carries one template per job instead of one source per (client, job). The
    result is the text `workflow_source` gives for that client (tests compare both). Names
    YAML would quote (`true`, `null`, ...) get a full render of their own, used as a template
    whose substitution is a no-op (the placeholder replaced by itself).
    """

    def __init__(self, p: WorkflowParams, topic_for: Callable[[str], str]) -> None:
        self.params = replace(p, client=CLIENT_PLACEHOLDER, results_topic=topic_for(
            CLIENT_PLACEHOLDER))
        self._topic_for = topic_for
        self.text = yaml.dump(
            build_workflow(self.params), Dumper=_NoAliases, sort_keys=False, width=4096,
            allow_unicode=True,
        )
        self._size = len(self.text.encode("utf-8"))
        self._count = self.text.count(CLIENT_PLACEHOLDER)
        self._usable = CLIENT_PLACEHOLDER not in json.dumps(p.job_json)

    def for_client(self, client: str) -> tuple[str | None, str]:
        """(None, client) when this template serves `client` (the client substitutes the
        placeholder), else (full source, placeholder) (substitution is a no-op).
        Raises when the client's source would exceed the Workflows size limit."""
        if not (self._usable and _plain_yaml_word(client)):
            params = replace(self.params, client=client, results_topic=self._topic_for(client))
            return workflow_source(params), CLIENT_PLACEHOLDER
        size = self._size + self._count * (len(client.encode()) - len(CLIENT_PLACEHOLDER))
        if size > WORKFLOW_SOURCE_LIMIT:
            _check_size(replace(self.params, client=client), self.text.replace(
                CLIENT_PLACEHOLDER, client))
        return None, client

    def source(self, client: str) -> str:
        """The client's source, as Terraform makes it (`replace(template, placeholder, s)`)."""
        own, substitute = self.for_client(client)
        return (own or self.text).replace(CLIENT_PLACEHOLDER, substitute)


def terraform_literal(text: str) -> str:
    """`text` as a Terraform string literal: `${` and `%{` (Workflows syntax) escaped."""
    return text.replace("${", "$${").replace("%{", "%%{")
