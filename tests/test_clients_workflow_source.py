"""The workflow source builder on its own (pure: no provider import, no synth)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from bench.workflow_fake import CTX, params
from jobs.declared import embed, uppercase
from jobs.render import render_job
from stacks.names import CLIENT_NAME_MAX, CLIENT_NAME_MIN, CLIENT_NAME_RE2
from stacks.workflow_params import client_name_condition
from stacks.workflow_source import (
    FINAL_STATES,
    WORKFLOW_SOURCE_LIMIT,
    build_workflow,
    embedded_job,
    marker_regex,
    workflow_source,
)
from tests._helpers.workflow_source import emulator, steps


def test_source_is_yaml_without_anchors_and_embeds_the_job() -> None:
    source = workflow_source(params())
    assert "&id" not in source and "*id" not in source  # no YAML aliases
    assert embedded_job(source) == render_job(embed.SPEC, CTX)
    doc = yaml.safe_load(source)
    assert doc["main"]["params"] == ["args"]


def test_every_jump_lands_on_a_step() -> None:
    names = set(steps(params()))

    def jumps(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["next"]] if isinstance(node.get("next"), str) else []
            return found + [j for v in node.values() for j in jumps(v)]
        if isinstance(node, list):
            return [j for v in node for j in jumps(v)]
        return []

    all_names = set()

    def collect(node: Any) -> None:  # nested step names count too
        if isinstance(node, dict):
            if "steps" in node and isinstance(node["steps"], list):
                for s in node["steps"]:
                    all_names.update(s)
            for v in node.values():
                collect(v)
        elif isinstance(node, list):
            for v in node:
                collect(v)

    workflow = build_workflow(params())
    collect(workflow["main"])
    assert set(jumps(workflow)) <= all_names | {"end"}
    assert {"create", "poll", "publish", "fill"} <= names


def test_batch_connector_calls_and_publish() -> None:
    s = steps(params())
    assert s["create"]["try"]["call"] == "googleapis.batch.v1.projects.locations.jobs.create"
    assert s["create"]["try"]["args"]["parent"] == "${parent}"
    assert s["poll"]["try"]["call"] == "googleapis.batch.v1.projects.locations.jobs.get"
    assert s["wait"]["call"] == "sys.sleep"
    assert s["publish"]["try"]["call"] == "googleapis.pubsub.v1.projects.topics.publish"
    message = s["publish"]["try"]["args"]["body"]["messages"][0]
    assert message["data"] == "${base64.encode(json.encode(outcome))}"
    assert s["done"]["switch"][0]["condition"] == (
        '${state == "CANCELLED" or state == "DELETION_IN_PROGRESS" or state == "FAILED" or '
        'state == "SUCCEEDED"}'
    )


def test_create_returns_at_creation() -> None:
    """Defect 3: without skip_polling the connector waits for the Batch job and gives up
    after 1,800 s (cloud.google.com/workflows/docs/reference/googleapis/batch/v1/
    projects.locations.jobs/create); the workflow polls itself."""
    s = steps(params())
    assert s["create"]["try"]["args"]["connector_params"] == {"skip_polling": True}


def test_cancelled_is_a_final_state() -> None:
    """Defect 4: a cancelled job's workflow polled forever (the submit helper knew better)."""
    assert "CANCELLED" in FINAL_STATES
    from submit.batch import FINAL_STATES as SUBMIT_FINAL

    assert {getattr(x, "name", str(x)) for x in SUBMIT_FINAL} <= set(FINAL_STATES)


def test_only_this_jobs_batch_markers_start_a_run() -> None:
    rx = re.compile(marker_regex(params()))
    assert rx.match("inputs/_ready/embed/b-7")
    for name in ("inputs/embed/b-7/a.jsonl", "inputs/_ready/uppercase/b-7",
                 "inputs/_ready/embed/", "inputs/_ready/embed/a/b", "inputs/_ready/embed/_x",
                 "outputs/_ready/embed/b-7", "inputs/embed/b-7/_READY"):
        assert not rx.match(name), name
    s = steps(params())
    condition = s["is_marker"]["switch"][0]["condition"]
    assert 'event_type == "OBJECT_FINALIZE"' in condition
    assert '"^p-dev-"' in condition
    assert s["is_marker"]["next"] == "ignored" and "return" in s["ignored"]


def test_everything_of_a_run_derives_from_one_known_client() -> None:
    s = steps(params())
    init = {k: v for a in s["init"]["assign"] for k, v in a.items()}
    # No client list: the source does not grow with clients; the name is checked by shape.
    assert "clients" not in init
    assert s["known_client"]["switch"][0] == {
        "condition": client_name_condition("client"), "next": "client_literals"}
    assert s["known_client"]["next"] == "unknown_client" and "raise" in s["unknown_client"]
    lit = {k: v for a in s["client_literals"]["assign"] for k, v in a.items()}
    assert lit["bucket"] == '${"p-dev-" + client}'
    assert lit["run_sa"] == '${"run-" + client + "@p-dev.iam.gserviceaccount.com"}'
    assert lit["results_topic"] == '${"projects/p-dev/topics/batch-" + client + "-results"}'
    assert lit["output_object"] == '${"outputs/embed/" + batch + "/"}'
    assert lit["output_prefix"] == '${"gs://" + bucket + "/" + output_object}'
    fill = {k: v for a in s["fill"]["assign"] for k, v in a.items()}
    assert fill["job.allocationPolicy.serviceAccount.email"] == "${run_sa}"
    assert fill["job.labels.client"] == "${client}"


def test_the_source_does_not_grow_with_clients() -> None:
    """10,000 clients synthesize (issue 22): the source names none of them, so one job's
    workflow is the same whatever the number of clients, well under 128 KB."""
    source = workflow_source(params())
    assert "acme" not in source and "globex" not in source
    assert len(source.encode()) < WORKFLOW_SOURCE_LIMIT


def test_the_client_pattern_is_the_client_name_rule_without_lookahead() -> None:
    """RE2 (Workflows' text.match_regex) has no lookaround: the workflow's pattern accepts
    every valid client name, and refuses the shapes a bucket tail may have that no client has."""
    import re

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from stacks.names import CLIENT_NAME_RE

    assert "(?" not in CLIENT_NAME_RE2 and "{" not in CLIENT_NAME_RE2
    rx = re.compile(CLIENT_NAME_RE2)

    def workflow_accepts(name: str) -> bool:
        return bool(rx.match(name)) and CLIENT_NAME_MIN <= len(name) <= CLIENT_NAME_MAX

    @settings(max_examples=300, deadline=None)
    @given(st.from_regex(CLIENT_NAME_RE, fullmatch=True))
    def accepts(name: str) -> None:
        assert workflow_accepts(name)

    accepts()
    for bad in ("Acme", "ab", "x" * 40, "acme/../x", "acme-", "-acme", "ac_me"):
        assert not workflow_accepts(bad), bad


@pytest.mark.parametrize(
    ("kw", "count", "par"),
    [
        ({}, "${(expected + 19) // 20}", "${math.min((expected + 19) // 20, 4)}"),
        ({"files_per_task": None}, "${math.min(expected, 4)}", "${math.min(expected, 4)}"),
        ({"fixed_task_count": 3}, "3", "${math.min(3, 4)}"),
    ],
)
def test_task_sizing_mirrors_the_planner(kw: dict[str, Any], count: str, par: str) -> None:
    size = steps(params(**kw))["size"]["assign"]
    assert size == [{"task_count": count}, {"parallelism": par}]


def test_existing_notifications_are_kept() -> None:
    job = render_job(uppercase.SPEC, CTX)
    job["notifications"] = [{"pubsubTopic": "projects/p-dev/topics/ops"}]
    fill = steps(params(job, job="uppercase"))["fill"]["assign"]
    assert {"job.notifications": "${list.concat(job.notifications, failure_notification)}"} in fill


def test_source_over_128_kb_is_a_clear_error() -> None:
    job = render_job(uppercase.SPEC, CTX)
    job["taskGroups"][0]["taskSpec"]["environment"]["variables"]["BIG"] = "x" * (
        WORKFLOW_SOURCE_LIMIT + 1
    )
    with pytest.raises(ValueError, match=r"jobs\.embed: its workflow is \d+ bytes; "
                                         r"Workflows accepts at most 131072"):
        workflow_source(params(job))


def test_expression_lookalike_in_the_job_is_refused() -> None:
    job = render_job(uppercase.SPEC, CTX)
    job["taskGroups"][0]["taskSpec"]["environment"]["variables"]["X"] = "${oops}"
    with pytest.raises(ValueError, match=r"variables\.X: '\$\{oops\}' would be evaluated"):
        workflow_source(params(job))


def test_job_rendered_without_environment_is_refused() -> None:
    with pytest.raises(ValueError, match="no task environment variables or labels"):
        workflow_source(params({"taskGroups": [{"taskSpec": {}}]}))


# ---- the deployed source is valid (executions: tests/test_workflow_runs.py) -------------------


def test_the_source_is_valid_for_workflows() -> None:
    import jsonschema

    jsonschema.validate(yaml.safe_load(workflow_source(params())), emulator().WORKFLOW_SCHEMA)


def _connector_steps(node: Any, inside_retry: bool = False) -> list[tuple[str, bool]]:
    """(connector, retried) for every `googleapis.*` call in the source."""
    found: list[tuple[str, bool]] = []
    if isinstance(node, dict):
        retried = inside_retry or ("retry" in node and "try" in node)
        call = node.get("call")
        if isinstance(call, str) and call.startswith("googleapis."):
            found.append((call, inside_retry))
        for key, value in node.items():
            found += _connector_steps(value, retried if key == "try" else inside_retry)
    elif isinstance(node, list):
        for value in node:
            found += _connector_steps(value, inside_retry)
    return found


def test_every_connector_call_is_retried() -> None:
    """Issue 20: jobs.create, jobs.get and topics.publish had no retry; one 5xx in a day-long
    poll ended the execution with no outcome."""
    calls = _connector_steps(build_workflow(params()))
    assert {c for c, _ in calls} >= {
        "googleapis.batch.v1.projects.locations.jobs.create",
        "googleapis.batch.v1.projects.locations.jobs.get",
        "googleapis.pubsub.v1.projects.topics.publish",
        "googleapis.storage.v1.objects.insert",
    }
    assert [c for c, retried in calls if not retried] == []


def test_the_workflow_never_lists_inputs() -> None:
    """The old dispatcher listed the batch into variables (512 KB) and raised above 1,000."""
    lists = [c for c, _ in _connector_steps(build_workflow(params())) if c.endswith(".list")]
    # tasks.list (one page), the sweep's markers, a run's _errors/ (maxResults 1).
    assert len(lists) == 3
    s = steps(params())
    sweep = {k: v for a in s["sweep"]["assign"] for k, v in a.items()}
    assert sweep["sweep_prefix"] == (
        '${"inputs/_ready/embed/" + default(map.get(args, "input_prefix"), "")}')
    assert s["sweep_page"]["try"]["args"]["prefix"] == "${sweep_prefix}"
    assert s["errors_page"]["try"]["args"]["maxResults"] == 1
    assert "GPUB_INPUT_OBJECTS" not in workflow_source(params())
