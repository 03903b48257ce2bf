"""The workflow source builder on its own (pure: no provider import, no synth)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from jobs.declared import embed, uppercase
from jobs.render import RenderContext, render_job
from stacks.workflow_source import (
    FINAL_STATES,
    WORKFLOW_SOURCE_LIMIT,
    WorkflowParams,
    build_workflow,
    embedded_job,
    marker_regex,
    workflow_source,
)

CTX = RenderContext(
    env_name="dev", project_id="p-dev", region="europe-west4",
    registry_host="europe-west4-docker.pkg.dev/p-dev/batch-images",
    job_service_account_email="job-embed@p-dev.iam.gserviceaccount.com",
)


def params(job_json: dict[str, Any] | None = None, **kw: Any) -> WorkflowParams:
    base: dict[str, Any] = dict(
        job="embed", env="dev", project_id="p-dev", job_region="europe-west4",
        clients=("acme", "globex"),
        job_json=job_json if job_json is not None else render_job(embed.SPEC, CTX),
        files_per_task=20, max_parallelism=4,
    )
    base.update(kw)
    return WorkflowParams(**base)


def steps(p: WorkflowParams) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for step in build_workflow(p)["main"]["steps"]:
        out.update(step)
    return out


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
    assert s["poll"]["call"] == "googleapis.batch.v1.projects.locations.jobs.get"
    assert s["wait"]["call"] == "sys.sleep"
    assert s["publish"]["call"] == "googleapis.pubsub.v1.projects.topics.publish"
    message = s["publish"]["args"]["body"]["messages"][0]
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
    assert s["created"]["assign"] == [{"batch_job": "${created.name}"}]


def test_cancelled_is_a_final_state() -> None:
    """Defect 4: a cancelled job's workflow polled forever (the submit helper knew better)."""
    assert "CANCELLED" in FINAL_STATES
    from submit.batch import FINAL_STATES as SUBMIT_FINAL

    assert {getattr(x, "name", str(x)) for x in SUBMIT_FINAL} <= set(FINAL_STATES)


def test_only_this_jobs_ready_marker_starts_a_run() -> None:
    rx = re.compile(marker_regex(params()))
    assert rx.match("inputs/embed/b-7/_READY")
    for name in ("inputs/embed/b-7/a.jsonl", "inputs/uppercase/b-7/_READY",
                 "inputs/embed/_READY", "inputs/embed/a/b/_READY", "inputs/embed/_x/_READY",
                 "outputs/embed/b-7/_READY", "inputs/embed/b-7/_READY.tmp"):
        assert not rx.match(name), name
    s = steps(params())
    condition = s["is_marker"]["switch"][0]["condition"]
    assert 'event_type == "OBJECT_FINALIZE"' in condition
    assert '"^p-dev-"' in condition
    assert s["is_marker"]["next"] == "ignored" and "return" in s["ignored"]


def test_everything_of_a_run_derives_from_one_known_client() -> None:
    s = steps(params())
    init = {k: v for a in s["init"]["assign"] for k, v in a.items()}
    assert init["clients"] == ["acme", "globex"]
    assert s["known_client"]["switch"][0] == {"condition": "${client in clients}",
                                              "next": "client_literals"}
    assert s["known_client"]["next"] == "unknown_client" and "raise" in s["unknown_client"]
    lit = {k: v for a in s["client_literals"]["assign"] for k, v in a.items()}
    assert lit["bucket"] == '${"p-dev-" + client}'
    assert lit["run_sa"] == '${"run-" + client + "@p-dev.iam.gserviceaccount.com"}'
    assert lit["results_topic"] == '${"projects/p-dev/topics/batch-" + client + "-results"}'
    assert lit["output_prefix"] == '${"gs://" + bucket + "/" + "outputs/embed/" + batch + "/"}'
    fill = {k: v for a in s["fill"]["assign"] for k, v in a.items()}
    assert fill["job.allocationPolicy.serviceAccount.email"] == "${run_sa}"
    assert fill["job.labels.client"] == "${client}"


def test_a_thousand_clients_fit_the_source_limit() -> None:
    clients = tuple(f"client-{i:04d}" for i in range(1000))
    size = len(workflow_source(params(clients=clients)).encode())
    assert size < WORKFLOW_SOURCE_LIMIT, size


@pytest.mark.parametrize(
    ("kw", "count", "par"),
    [
        ({}, "${(n_objects + 19) // 20}", "${math.min((n_objects + 19) // 20, 4)}"),
        ({"files_per_task": None}, "${math.min(n_objects, 4)}", "${math.min(n_objects, 4)}"),
        ({"fixed_task_count": 3}, "3", "${math.min(3, 4)}"),
    ],
)
def test_task_sizing_mirrors_the_planner(kw: dict[str, Any], count: str, par: str) -> None:
    size = steps(params(**kw))["size"]["assign"]
    assert size == [{"task_count": count}, {"parallelism": par}]


def test_prefix_runs_skip_bookkeeping_and_other_formats() -> None:
    rx = re.compile(prefix_regex(params()))
    assert rx.match("a.jsonl") and rx.match("day-1/b.JSONL")
    for name in ("a.csv", "_manifest.jsonl", "x/_done/a.jsonl.done", "a,b.jsonl", "dir/"):
        assert not rx.match(name), name
    assert f"n_objects > {MAX_PREFIX_OBJECTS}" in workflow_source(params())


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
    with pytest.raises(ValueError, match=r"jobs\.embed: its workflow is \d+ bytes for 2 "
                                         r"clients; Workflows accepts at most 131072"):
        workflow_source(params(job))


def test_expression_lookalike_in_the_job_is_refused() -> None:
    job = render_job(uppercase.SPEC, CTX)
    job["taskGroups"][0]["taskSpec"]["environment"]["variables"]["X"] = "${oops}"
    with pytest.raises(ValueError, match=r"variables\.X: '\$\{oops\}' would be evaluated"):
        workflow_source(params(job))


def test_job_rendered_without_environment_is_refused() -> None:
    with pytest.raises(ValueError, match="no task environment variables or labels"):
        workflow_source(params({"taskGroups": [{"taskSpec": {}}]}))


# ---- the deployed source, executed (workflows-emulator, connectors stubbed) -----------------
class Connectors:
    """Stand-ins for the three APIs the workflow calls; they record every call."""

    def __init__(self, objects: list[str], states: list[str]) -> None:
        self.objects, self.states = objects, list(states)
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, step: Any) -> Any:
        name, args = str(step["call"]), dict(step.get("args") or {})
        self.calls.append((name, args))
        if name.endswith("objects.list"):
            items = [{"name": o} for o in self.objects if o.startswith(args["prefix"])]
            return {"items": items} if items else {}
        if name.endswith("jobs.create"):
            return {"name": f"{args['parent']}/jobs/{args['jobId']}"}
        if name.endswith("jobs.get"):
            return {"status": {"state": self.states.pop(0)}}
        if name.endswith("topics.publish"):
            return {"messageIds": ["1"]}
        raise AssertionError(f"unexpected call {name}")

    def named(self, suffix: str) -> list[dict[str, Any]]:
        return [args for name, args in self.calls if name.endswith(suffix)]


def emulator() -> Any:
    import typeguard

    if not hasattr(typeguard, "install_import_hook"):  # workflows-emulator wants typeguard 4
        typeguard.install_import_hook = lambda *_a, **_k: None
    from workflows_emulator import main

    return main


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> Any:
    main = emulator()
    from workflows_emulator.utils import ContextDict

    # In Workflows `page.items` is the map's key; the emulator's dicts answer dict.items.
    original = ContextDict.__getattribute__

    def getattribute(self: Any, name: str) -> Any:
        if name == "items" and dict.__contains__(self, "items"):
            return dict.__getitem__(self, "items")
        return original(self, name)

    monkeypatch.setattr(ContextDict, "__getattribute__", getattribute)
    # The emulator's get_type looks up the exact Python type; its maps are dict subclasses.
    from workflows_emulator import render

    def get_type(value: Any) -> str:
        for kind, name in ((bool, "bool"), (int, "int"), (float, "double"), (str, "string"),
                           (bytes, "bytes"), (list, "list"), (dict, "map")):
            if isinstance(value, kind):
                return name
        return "null" if value is None else type(value).__name__

    monkeypatch.setitem(render.STANDARD_LIBRARY, "get_type", get_type)
    monkeypatch.setenv("GOOGLE_CLOUD_WORKFLOW_EXECUTION_ID", "0123456789abcdef")

    def execute(argument: Any, connectors: Connectors, **kw: Any) -> Any:
        monkeypatch.setattr(main.StepCall, "execute_connector", staticmethod(connectors))
        source = workflow_source(params(poll_interval_s=0, **kw))
        return main.execute_workflow(yaml.safe_load(source), {"args": argument})

    return execute


def upload(bucket: str, name: str, event: str = "OBJECT_FINALIZE") -> dict[str, Any]:
    """The CloudEvent an Eventarc Pub/Sub trigger delivers for a storage notification
    (cloud.google.com/storage/docs/pubsub-notifications: attributes bucketId, objectId,
    eventType)."""
    return {"type": "google.cloud.pubsub.topic.v1.messagePublished",
            "data": {"message": {"attributes": {"bucketId": bucket, "objectId": name,
                                                "eventType": event}, "data": ""}}}


BATCH = ["inputs/embed/b-7/a.jsonl", "inputs/embed/b-7/b.jsonl", "inputs/embed/b-7/c.csv",
         "inputs/embed/b-7/_READY", "inputs/embed/b-8/x.jsonl"]


def test_the_source_is_valid_for_workflows() -> None:
    import jsonschema

    jsonschema.validate(yaml.safe_load(workflow_source(params())), emulator().WORKFLOW_SCHEMA)


def test_a_ready_marker_runs_its_batch_as_the_clients_run_identity(run: Any) -> None:
    api = Connectors(BATCH, ["QUEUED", "RUNNING", "SUCCEEDED"])
    result = run(upload("p-dev-acme", "inputs/embed/b-7/_READY"), api)
    assert result["state"] == "SUCCEEDED" and result["client"] == "acme"
    (listing,) = api.named("objects.list")
    assert (listing["bucket"], listing["prefix"]) == ("p-dev-acme", "inputs/embed/b-7/")
    (create,) = api.named("jobs.create")
    assert create["connector_params"] == {"skip_polling": True}
    body = create["body"]
    env = body["taskGroups"][0]["taskSpec"]["environment"]["variables"]
    assert env["GPUB_INPUT_OBJECTS"] == ("gs://p-dev-acme/inputs/embed/b-7/a.jsonl,"
                                         "gs://p-dev-acme/inputs/embed/b-7/b.jsonl")
    assert env["GPUB_OUTPUT_PREFIX"] == "gs://p-dev-acme/outputs/embed/b-7/"
    assert body["allocationPolicy"]["serviceAccount"]["email"] == (
        "run-acme@p-dev.iam.gserviceaccount.com")
    assert body["taskGroups"][0]["taskCount"] == "1"  # 2 files, 20 per task: one task
    assert body["notifications"][-1]["pubsubTopic"] == "projects/p-dev/topics/batch-acme-results"
    assert len(api.named("jobs.get")) == 3
    (publish,) = api.named("topics.publish")
    assert publish["topic"] == "projects/p-dev/topics/batch-acme-results"


@pytest.mark.parametrize("name", ["inputs/embed/b-7/a.jsonl", "inputs/uppercase/b-7/_READY",
                                  "outputs/embed/b-7/_READY"])
def test_every_other_upload_is_ignored_without_a_call(run: Any, name: str) -> None:
    api = Connectors(BATCH, [])
    assert str(run(upload("p-dev-acme", name), api)).startswith("ignored")
    assert api.calls == []


def test_a_bucket_that_is_not_a_client_of_the_job_runs_nothing(run: Any) -> None:
    from workflows_emulator.utils import WorkflowError

    api = Connectors(BATCH, [])
    with pytest.raises(WorkflowError, match="not a client of embed: initech"):
        run(upload("p-dev-initech", "inputs/embed/b-7/_READY"), api)
    assert api.calls == []


def test_a_cancelled_job_ends_the_execution(run: Any) -> None:
    """Defect 4: CANCELLED was not final; the workflow polled a cancelled job forever."""
    from workflows_emulator.utils import WorkflowError

    api = Connectors(BATCH, ["RUNNING", "CANCELLED"])
    with pytest.raises(WorkflowError, match="ended CANCELLED"):
        run({"client": "globex", "batch": "b-7"}, api)
    assert len(api.named("jobs.get")) == 2
    (publish,) = api.named("topics.publish")
    assert publish["topic"] == "projects/p-dev/topics/batch-globex-results"
    assert publish["body"]["messages"][0]["attributes"]["state"] == "CANCELLED"


def test_a_schedule_runs_its_prefix_into_an_execution_folder(run: Any) -> None:
    api = Connectors(["inputs/embed/nightly/d1/a.jsonl", "inputs/embed/nightly/_READY"],
                     ["SUCCEEDED"])
    result = run({"client": "acme", "input_prefix": "nightly", "trigger": "schedule"}, api)
    assert result["trigger"] == "schedule" and result["input_count"] == 1
    (listing,) = api.named("objects.list")
    assert listing["prefix"] == "inputs/embed/nightly/"
    body = api.named("jobs.create")[0]["body"]
    env = body["taskGroups"][0]["taskSpec"]["environment"]["variables"]
    assert env["GPUB_INPUT_OBJECTS"] == "gs://p-dev-acme/inputs/embed/nightly/d1/a.jsonl"
    assert env["GPUB_OUTPUT_PREFIX"] == "gs://p-dev-acme/outputs/embed/0123456789abcdef/"
    assert body["labels"]["trigger"] == "schedule" and body["labels"]["client"] == "acme"


def test_the_longest_job_name_gives_a_valid_batch_job_id(run: Any) -> None:
    """The workflow appends `-<yyyymmddthhmmss>-<8 chars of the execution id>` to the job's
    name; with the longest name JobSpec accepts, CreateJob must still get an id Batch takes
    (`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`, https://cloud.google.com/batch/docs/reference/rest/
    v1/projects.locations.jobs/create). It did not: 42 + 25 = 67 chars."""
    import re

    from jobs.spec import NAME_MAX

    name = "j" * NAME_MAX
    api = Connectors([f"inputs/{name}/b/a.jsonl", f"inputs/{name}/b/_READY"], ["SUCCEEDED"])
    run(upload("p-dev-acme", f"inputs/{name}/b/_READY"), api, job=name)
    (create,) = api.named("jobs.create")
    assert re.fullmatch(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?", create["jobId"]), create["jobId"]
