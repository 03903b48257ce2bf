"""The first half of a job's dispatcher workflow: from its argument to one batch and its ids.

Step builders, in workflow order; `stacks/workflow_source.py` puts them together. A run
starts from one batch marker `inputs/_ready/<job>/<batch>` (the notification on the job's
marker prefix, per client bucket, publishes to the job's intake topic), from a call by hand
(`{"client", "batch"}`), or a schedule sweep (`{"client", "trigger": "schedule"}`: every
marker of the job without a run record is re-published on the intake topic, one execution
each). Everything of a run (bucket, identity, results topic) derives from one client of this
job. The workflow never lists inputs: the marker's `{"count": N}` sizes the job, which plans
itself from its input prefix.
"""

# ruff: noqa: E501  (workflow expressions are long string literals; split, the YAML reads worse)

from __future__ import annotations

from typing import Any

from stacks import layout
from stacks.workflow_params import (
    BATCH_PATTERN,
    RETRY,
    WorkflowParams,
    call_step,
    client_name_condition,
    error_text,
    fail,
    lit,
    re_escape,
)


def marker_regex(p: WorkflowParams) -> str:
    """Object names that start a run: `inputs/_ready/<job>/<batch>`."""
    return f"^{re_escape(p.markers_root)}{BATCH_PATTERN.removeprefix('^')}"


def init_steps(p: WorkflowParams, job: dict[str, Any]) -> list[dict[str, Any]]:
    """Every variable the workflow uses, the job body among them."""
    return [
        {
            "init": {
                "assign": [
                    {"job": job},
                    {"parent": f"projects/{p.project_id}/locations/{p.job_region}"},
                    {"execution_id": '${sys.get_env("GOOGLE_CLOUD_WORKFLOW_EXECUTION_ID")}'},
                    # Run-state logs measure how long the run waits from here (monitoring).
                    {"created_at": "${sys.now()}"},
                    {"trigger": "upload"},
                    {"client": ""},
                    {"batch": ""},
                    {"generation": ""},
                    {"input_prefix": ""},
                    {"output_prefix": ""},
                    {"expected": 0},
                    {"job_id": ""},
                    {"request_id": ""},
                    {"state": ""},
                    {"reason": ""},
                    {"batch_job": ""},
                    {"duplicate": False},
                    {"inputs": None},
                    {"refused": None},
                    {"errors": False},
                    {"task_attempts": None},
                    {"vm_losses": None},
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
                    {"condition": '${"client" in args and map.get(args, "trigger") == "schedule"}', "next": "sweep"},
                    {"condition": '${"client" in args and "batch" in args}', "next": "from_args"},
                ],
                "next": "bad_request",
            }
        },
        {
            "bad_request": {
                "raise": (
                    'expected an intake-topic event, {"client": "...", "batch": "..."} or '
                    '{"client": "...", "trigger": "schedule"}'
                )
            }
        },
    ]


def event_steps(p: WorkflowParams) -> list[dict[str, Any]]:
    """A storage notification of a marker (attributes bucketId, objectId, eventType,
    objectGeneration: cloud.google.com/storage/docs/pubsub-notifications)."""
    return [
        {
            "from_event": {
                "assign": [
                    {"attrs": '${map.get(args.data, ["message", "attributes"])}'},
                    {"object": '${default(map.get(attrs, "objectId"), "")}'},
                    {"bucket": '${default(map.get(attrs, "bucketId"), "")}'},
                    {"event_type": '${default(map.get(attrs, "eventType"), "")}'},
                    {"generation": '${default(map.get(attrs, "objectGeneration"), "")}'},
                    {"trigger": '${default(map.get(attrs, "trigger"), "upload")}'},
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
        # Only markers notify this topic; anything else (a copy of a message) ends here.
        {"ignored": {"return": '${"ignored: " + bucket + "/" + object}'}},
        {
            "marker": {
                "assign": [
                    {"client": f"${{text.substring(bucket, {len(p.bucket_prefix)}, len(bucket))}}"},
                    {"batch": f"${{text.substring(object, {len(p.markers_root)}, len(object))}}"},
                ],
                "next": "known_client",
            }
        },
        {
            "from_args": {
                "assign": [
                    {"client": "${args.client}"},
                    {"batch": "${args.batch}"},
                    {"trigger": "manual"},
                ],
                "next": "known_client",
            }
        },
    ]


def client_steps(p: WorkflowParams) -> list[dict[str, Any]]:
    """The client, read from the bucket name (or the arguments), and everything derived from it.

    The source lists no clients, so it does not grow with them (Workflows' 128 KB source limit,
    cloud.google.com/workflows/quotas). The boundary is elsewhere: only a client bucket of this
    job has a notification on its intake topic (stacks/client.py), only the trigger and
    scheduler accounts may start the workflow, and the workflow's account may act only as the
    `run-<c>` accounts of onboarded clients and write only their buckets; any other name fails
    at its first read of the marker or at job creation, with nothing written."""
    lay = p.layout
    return [
        {
            "known_client": {
                "switch": [{"condition": client_name_condition("client"), "next": "client_literals"}],
                "next": "unknown_client",
            }
        },
        {"unknown_client": {"raise": '${"not a client name: " + client}'}},
        {
            "client_literals": {
                "assign": [
                    {"bucket": f"${{{lit(p.bucket_prefix)} + client}}"},
                    {"results_topic": f"${{{lit(p.topic_prefix)} + client + {lit(layout.RESULTS_TOPIC_SUFFIX)}}}"},
                    {"run_sa": f"${{{lit(layout.RUN_SA_PREFIX)} + client + {lit(lay.sa_domain)}}}"},
                    {
                        "failure_notification": {
                            "pubsubTopic": "${results_topic}",
                            "message": {"type": "JOB_STATE_CHANGED", "newJobState": "FAILED"},
                        }
                    },
                    {"marker_object": f"${{{lit(p.markers_root)} + batch}}"},
                    {"input_prefix": f'${{"gs://" + bucket + "/" + {lit(lay.job_inputs(p.job))} + batch + "/"}}'},
                    {"output_object": f'${{{lit(lay.job_outputs(p.job))} + batch + "/"}}'},
                    {"output_prefix": '${"gs://" + bucket + "/" + output_object}'},
                ]
            }
        },
        {
            "known_batch": {
                "switch": [
                    {"condition": f"${{not(text.match_regex(batch, {lit(BATCH_PATTERN)}))}}", "next": "bad_batch"},
                    {"condition": '${generation == ""}', "next": "marker_meta"},
                ],
                "next": "read_marker",
            }
        },
        {"bad_batch": {"raise": '${"not a batch name: " + batch}'}},
    ]


def marker_steps(p: WorkflowParams) -> list[dict[str, Any]]:
    """The marker's generation (a call by hand) and its `{"count": N}`."""
    reason = f'${{{error_text("cannot read the marker")}}}'
    return [
        call_step("marker_meta", "googleapis.storage.v1.objects.get",
                  {"bucket": "${bucket}", "object": "${marker_object}"}, "meta",
                  fail(reason, "marker_meta_failed")),
        {"meta_generation": {"assign": [{"generation": "${string(meta.generation)}"}]}},
        call_step("read_marker", "googleapis.storage.v1.objects.get",
                  {"bucket": "${bucket}", "object": "${marker_object}", "alt": "media"},
                  "marker_raw", fail(reason, "read_marker_failed")),
        {
            "marker_type": {
                "switch": [{"condition": '${get_type(marker_raw) == "map"}', "next": "marker_map"}],
                "next": "marker_text",
            }
        },
        {"marker_map": {"assign": [{"marker_doc": "${marker_raw}"}], "next": "marker_count"}},
        {
            "marker_text": {
                "try": {"assign": [{"marker_doc": "${json.decode(marker_raw)}"}]},
                "except": {"as": "e", "steps": [{"marker_not_json": {"assign": [{"marker_doc": {}}]}}]},
            }
        },
        {
            "marker_count": {
                "switch": [
                    {
                        "condition": '${get_type(marker_doc) == "map" and "count" in marker_doc and get_type(marker_doc["count"]) == "int"}',
                        "next": "marker_positive",
                    }
                ],
                "next": "bad_marker",
            }
        },
        {"marker_positive": {"assign": [{"expected": '${marker_doc["count"]}'}]}},
        {
            "count_ok": {
                "switch": [{"condition": "${expected >= 1}", "next": "ids"}],
                "next": "bad_marker",
            }
        },
        {
            "bad_marker": {
                "assign": [
                    {"state": "FAILED"},
                    {"reason": '${"marker gs://" + bucket + "/" + marker_object + " must be a JSON object whose count (an integer >= 1) is the number of input files; bin/submit upload writes it"}'},
                ],
                "next": "outcome",
            }
        },
    ]


def id_steps(p: WorkflowParams) -> list[dict[str, Any]]:
    """Job id and request id from (client, job, batch, marker generation): a second delivery
    of the same marker names the same job (submit/ids.py `trigger_job_id` is the same rule).
    Batch job ids match `^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$` (cloud.google.com/batch/docs/
    reference/rest/v1/projects.locations.jobs/create): `<job>-` + 20 characters of the key's
    SHA-512 (base64, lowercased, letters and digits only); the request id is a UUID made of
    its hex digits."""
    key = f'${{client + "|" + {lit(p.job)} + "|" + batch + "|" + generation}}'
    digest = '${text.to_lower(text.replace_all_regex(base64.encode(hash.compute_checksum(text.encode(key), "SHA512")), "[^A-Za-z0-9]", ""))}'
    return [
        {
            "ids": {
                "assign": [
                    {"key": key},
                    {"digest": digest},
                    {"job_id": f'${{{lit(p.job + "-")} + text.substring(digest, 0, 20)}}'},
                    {"hexed": '${text.replace_all_regex(digest, "[^0-9a-f]", "0")}'},
                    {
                        "request_id": (
                            '${text.substring(hexed, 0, 8) + "-" + text.substring(hexed, 8, 12) + "-" + '
                            'text.substring(hexed, 12, 16) + "-" + text.substring(hexed, 16, 20) + "-" + '
                            "text.substring(hexed, 20, 32)}"
                        )
                    },
                    {"batch_job": '${parent + "/jobs/" + job_id}'},
                ]
            }
        },
    ]


def sweep_steps(p: WorkflowParams) -> list[dict[str, Any]]:
    """A schedule: every marker of this job in the client's bucket without a run record (a
    batch no run has claimed: its event was lost, or dead-lettered) is published again on
    the intake topic; its own execution runs it into the batch's own output. Held-back batches
    (`upload --no-ready`) have no marker and are never run. Steps grow with markers, not
    files."""
    lay = p.layout
    return [
        {
            "sweep": {
                "assign": [
                    {"client": "${args.client}"},
                    {"bucket": f"${{{lit(p.bucket_prefix)} + client}}"},
                    {"sweep_prefix": f'${{{lit(p.markers_root)} + default(map.get(args, "input_prefix"), "")}}'},
                    {"page_token": None},
                    {"republished": 0},
                ]
            }
        },
        {
            "sweep_client": {
                "switch": [{"condition": client_name_condition("client"), "next": "sweep_page"}],
                "next": "unknown_client",
            }
        },
        call_step("sweep_page", "googleapis.storage.v1.objects.list",
                  {"bucket": "${bucket}", "prefix": "${sweep_prefix}", "pageToken": "${page_token}", "maxResults": 1000},
                  "markers", None),
        {
            "sweep_each": {
                "for": {
                    "value": "m",
                    "in": '${default(map.get(markers, "items"), [])}',
                    "steps": [
                        {
                            "sweep_batch": {
                                "assign": [
                                    {"swept": f"${{text.substring(m.name, {len(p.markers_root)}, len(m.name))}}"},
                                ]
                            }
                        },
                        {
                            "sweep_record": {
                                "try": {
                                    "call": "googleapis.storage.v1.objects.get",
                                    "args": {
                                        "bucket": "${bucket}",
                                        "object": f'${{{lit(lay.job_outputs(p.job))} + swept + "/" + {lit(layout.RUN_RECORD)}}}',
                                    },
                                    "result": "claimed",
                                },
                                "retry": RETRY,
                                "except": {
                                    "as": "e",
                                    "steps": [
                                        {
                                            "unclaimed": {
                                                "switch": [
                                                    {
                                                        "condition": '${map.get(e, "code") == 404}',
                                                        "steps": [
                                                            call_step("republish", "googleapis.pubsub.v1.projects.topics.publish", {
                                                                "topic": p.intake_topic,
                                                                "body": {"messages": [{"data": "", "attributes": {
                                                                    "bucketId": "${bucket}", "objectId": "${m.name}",
                                                                    "eventType": "OBJECT_FINALIZE",
                                                                    "objectGeneration": "${string(m.generation)}",
                                                                    "trigger": "schedule",
                                                                }}]},
                                                            }, "republished_id", None),
                                                            {"count_republished": {"assign": [{"republished": "${republished + 1}"}]}},
                                                        ],
                                                    }
                                                ]
                                            }
                                        }
                                    ],
                                },
                            }
                        },
                    ],
                }
            }
        },
        {
            "sweep_more": {
                "switch": [{"condition": '${"nextPageToken" in markers}', "next": "sweep_next"}],
                "next": "swept_all",
            }
        },
        {"sweep_next": {"assign": [{"page_token": "${markers.nextPageToken}"}], "next": "sweep_page"}},
        {"swept_all": {"return": {"client": "${client}", "job": p.job, "trigger": "schedule", "republished": "${republished}"}}},
    ]
