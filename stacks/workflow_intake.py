"""The first half of a job's dispatcher workflow: from its argument to the run's inputs.

Step builders, in workflow order; `stacks/workflow_source.py` puts them together. An upload
event starts a run only for this job's `_READY` marker; a call by hand or by Cloud Scheduler
names the client and the batch or input prefix. Everything of a run (bucket, identity,
results topic) derives from one client of this job.
"""

# ruff: noqa: E501  (workflow expressions are long string literals; split, the YAML reads worse)

from __future__ import annotations

from typing import Any

from stacks.workflow_params import (
    MAX_PREFIX_OBJECTS,
    READY_MARKER,
    WorkflowParams,
    lit,
    marker_regex,
    prefix_regex,
    re_escape,
)


def init_steps(p: WorkflowParams, job: dict[str, Any]) -> list[dict[str, Any]]:
    """Every variable the workflow uses, the job body among them."""
    return [
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
                        "job_id": f'${{{lit(p.job + "-")} + stamp + "-" + '
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
    ]


def route_steps() -> list[dict[str, Any]]:
    """An event, a call by hand or a schedule; anything else is a bad request."""
    return [
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
    ]


def event_steps(p: WorkflowParams) -> list[dict[str, Any]]:
    """A storage notification: only this job's `_READY` markers start a run."""
    return [
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
                            f"{lit(marker_regex(p))}) and text.match_regex(bucket, "
                            f"{lit('^' + re_escape(p.bucket_prefix))})}}"
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
    ]


def call_steps() -> list[dict[str, Any]]:
    """By hand or on a schedule: the client, and the batch or the input prefix."""
    return [
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
    ]


def client_steps(p: WorkflowParams) -> list[dict[str, Any]]:
    """The client: one of this job's, and everything else derived from it."""
    client_ok = "${client in clients}"
    return [
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
                    {"bucket": f"${{{lit(p.bucket_prefix)} + client}}"},
                    {"results_topic": f'${{{lit(p.topic_prefix)} + client + "-results"}}'},
                    {"run_sa": f'${{"run-" + client + {lit(p.run_sa_domain)}}}'},
                    {
                        "failure_notification": {
                            "pubsubTopic": "${results_topic}",
                            "message": {"type": "JOB_STATE_CHANGED", "newJobState": "FAILED"},
                        }
                    },
                    {"list_prefix": "${inputs_root + rel}"},
                    {"input_prefix": '${"gs://" + bucket + "/" + inputs_root + rel}'},
                    {
                        "output_prefix": f'${{"gs://" + bucket + "/" + {lit(p.outputs_root)} '
                        '+ batch + "/"}'
                    },
                    {"page_token": None},
                ]
            }
        },
    ]


def listing_steps(p: WorkflowParams) -> list[dict[str, Any]]:
    """List the batch's inputs (names the runner accepts, at most MAX_PREFIX_OBJECTS)."""
    return [
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
                                            f"len(obj.name)), {lit(prefix_regex(p))})}}"
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
    ]
