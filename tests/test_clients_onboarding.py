"""Client onboarding (issue 4), checked on synthesized stacks.

- every client IAM condition is evaluated with a real CEL implementation (cel-python);
- the job body each workflow submits is the renderer's output plus runtime fields only;
- one onboarding call adds a fixed set of resources, and a second client adds the same set
  again with no reference to the first client's resources;
- validation errors name the field.
"""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import celpy
import pytest
from pydantic import ValidationError

from jobs.render import fill_runtime, render_job
from stacks.environments import dev, prod
from stacks.settings import ClientSettings, EnvironmentSettings, Schedule
from stacks.workflow_source import (
    RUNTIME_ASSIGNMENTS,
    embedded_job,
    event_regex,
    failure_notification,
    runtime_assignments,
)
from tests._tf import all_resources, path_of

Stack = dict[str, Any]
OBJECT = "storage.googleapis.com/Object"
BUCKET = "storage.googleapis.com/Bucket"
# The permissions of the roles client grants use that these tests exercise.
ROLE_PERMISSIONS = {
    "roles/storage.objectCreator": {"storage.objects.create"},
    "roles/storage.objectViewer": {"storage.objects.get", "storage.objects.list"},
}
REF_RE = re.compile(r'\$\{([a-z0-9_]+)\.([A-Za-z0-9_-]+(?:\["[^"]*"\])?)\.')


# ---- helpers ------------------------------------------------------------------------------
def find(stack: Stack, rtype: str, path_suffix: str) -> tuple[str, dict[str, Any]]:
    hits = [(k, r) for t, k, r in all_resources(stack)
            if t == rtype and path_of(r).endswith(path_suffix)]
    assert len(hits) == 1, f"expected one {rtype} at */{path_suffix}, found {len(hits)}"
    return hits[0]


def sa_member_ref(stack: Stack, path_suffix: str) -> str:
    key, _ = find(stack, "google_service_account", path_suffix)
    return f"serviceAccount:${{google_service_account.{key}.email}}"


def owner(path: str) -> str | None:
    """The client an instance belongs to: the first part of its for_each key."""
    m = re.search(r'\["([a-z0-9-]+)(?:/[^"]*)?"\]$', path)
    return m.group(1) if m else None


class Cel:
    """IAM condition evaluation with cel-python: `resource.*` and `api.getAttribute`."""

    def __init__(self) -> None:
        self.env = celpy.Environment()
        self._cache: dict[str, Any] = {}

    def program(self, expression: str) -> Any:
        if expression not in self._cache:
            ast = self.env.compile(expression)
            # `api.getAttribute(k, d)` is a receiver call: celpy passes `api` first.
            self._cache[expression] = self.env.program(
                ast, functions={"getAttribute": lambda api, key, default: api.get(key, default)}
            )
        return self._cache[expression]

    def __call__(
        self, expression: str, rtype: str, name: str, attributes: dict[str, str] | None = None
    ) -> bool:
        activation = {
            "resource": celpy.json_to_cel({"type": rtype, "name": name, "service":
                                           "storage.googleapis.com"}),
            "api": celpy.json_to_cel(attributes or {}),
        }
        result = self.program(expression).evaluate(activation)
        assert isinstance(result, celpy.celtypes.BoolType), f"{expression!r} -> {result!r}"
        return bool(result)


@pytest.fixture(scope="module")
def cel() -> Cel:
    return Cel()


def bucket_grants(stack: Stack, member: str) -> list[dict[str, Any]]:
    return [r for t, _, r in all_resources(stack)
            if t == "google_storage_bucket_iam_member" and r["member"] == member]


def allowed(cel: Cel, grants: list[dict[str, Any]], permission: str, rtype: str, name: str,
            attributes: dict[str, str] | None = None) -> bool:
    for grant in grants:
        if permission not in ROLE_PERMISSIONS.get(grant["role"], set()):
            continue
        condition = grant.get("condition")
        if condition is None or cel(condition["expression"], rtype, name, attributes):
            return True
    return False


def obj(bucket: str, name: str) -> str:
    return f"projects/_/buckets/{bucket}/objects/{name}"


# ---- IAM conditions (CEL) ------------------------------------------------------------------
@pytest.mark.parametrize(("env", "client", "other"), [
    ("dev", "acme", "globex"), ("dev", "globex", "acme"), ("prod", "acme", "globex"),
])
def test_client_conditions_keep_each_client_in_its_prefix(
    stacks_json: dict[str, Stack], cel: Cel, env: str, client: str, other: str
) -> None:
    stack = stacks_json[env]
    bucket = f"example-ml-{env}-batch-data"
    grants = bucket_grants(stack, sa_member_ref(stack, f'clients-sa["{client}"]'))
    assert {g["role"] for g in grants} == set(ROLE_PERMISSIONS)
    assert all(g.get("condition") for g in grants), "every client bucket grant is conditional"

    def can(permission: str, name: str) -> bool:
        return allowed(cel, grants, permission, OBJECT, obj(bucket, name))

    def can_list(prefix: str, in_bucket: str = bucket) -> bool:
        return allowed(cel, grants, "storage.objects.list", BUCKET,
                       f"projects/_/buckets/{in_bucket}",
                       {"storage.googleapis.com/objectListPrefix": prefix})

    assert can("storage.objects.create", f"{client}/inputs/x")
    assert can("storage.objects.create", f"{client}/inputs/uppercase/a.jsonl")
    assert not can("storage.objects.create", f"{other}/inputs/x")
    assert not can("storage.objects.create", f"{client}/outputs/x")
    assert not can("storage.objects.create", f"{client}x/inputs/x")
    assert can("storage.objects.get", f"{client}/outputs/x")
    assert not can("storage.objects.get", f"{other}/outputs/x")
    assert not can("storage.objects.get", f"{other}/inputs/x")
    assert not can("storage.objects.get", "jobs/uppercase/x")
    for prefix in (f"{client}/", f"{client}/outputs/", f"{client}/inputs/uppercase/"):
        assert can_list(prefix), prefix
    for prefix in ("", f"{other}/", f"{client}", f"{client}x/", "jobs/"):
        assert not can_list(prefix), prefix
    assert not can_list(f"{client}/", in_bucket=f"example-ml-{env}-batch-logs")


def test_every_bucket_condition_is_valid_cel(stacks_json: dict[str, Stack], cel: Cel) -> None:
    for stack in stacks_json.values():
        for rtype, _, r in all_resources(stack):
            if rtype == "google_storage_bucket_iam_member" and r.get("condition"):
                cel(r["condition"]["expression"], OBJECT, obj("b", "x"))
                cel(r["condition"]["expression"], BUCKET, "projects/_/buckets/b",
                    {"storage.googleapis.com/objectListPrefix": "x/"})


def test_job_reads_only_the_clients_it_serves(stacks_json: dict[str, Stack], cel: Cel) -> None:
    stack = stacks_json["dev"]
    bucket = "example-ml-dev-batch-data"
    embed = bucket_grants(stack, sa_member_ref(stack, "job-embed/sa"))
    upper = bucket_grants(stack, sa_member_ref(stack, "job-uppercase/sa"))
    get = "storage.objects.get"
    assert allowed(cel, embed, get, OBJECT, obj(bucket, "acme/inputs/embed/a.jsonl"))
    assert not allowed(cel, embed, get, OBJECT, obj(bucket, "globex/inputs/x"))  # not served
    assert allowed(cel, upper, get, OBJECT, obj(bucket, "globex/inputs/uppercase/a.jsonl"))
    # The workflow lists (names only) inputs; it never reads objects.
    wf = bucket_grants(stack, sa_member_ref(stack, "/workflow-sa"))
    assert not allowed(cel, wf, get, OBJECT, obj(bucket, "acme/inputs/x"))
    assert allowed(cel, wf, "storage.objects.list", BUCKET, f"projects/_/buckets/{bucket}",
                   {"storage.googleapis.com/objectListPrefix": "acme/inputs/embed/"})
    assert not allowed(cel, wf, "storage.objects.list", BUCKET, f"projects/_/buckets/{bucket}",
                       {"storage.googleapis.com/objectListPrefix": "acme/outputs/"})


def test_principal_acts_only_through_its_client_account(stacks_json: dict[str, Stack]) -> None:
    stack = stacks_json["dev"]
    principal = "group:batch-users@globex.example"
    grants = [(t, r) for t, _, r in all_resources(stack) if r.get("member") == principal]
    sa_key, _ = find(stack, "google_service_account", 'clients-sa["globex"]')
    sub_key, _ = find(stack, "google_pubsub_subscription", 'clients-results-sub["globex"]')
    assert sorted((t, r["role"]) for t, r in grants) == [
        ("google_pubsub_subscription_iam_member", "roles/pubsub.subscriber"),
        ("google_service_account_iam_member", "roles/iam.serviceAccountTokenCreator"),
    ]
    for rtype, r in grants:
        target = r.get("service_account_id") or r.get("subscription")
        assert target in (f"${{google_service_account.{sa_key}.name}}",
                          f"${{google_pubsub_subscription.{sub_key}.name}}"), rtype


# ---- results topic, workflow, trigger, schedule --------------------------------------------
def test_results_topic_cmek_in_prod_and_subscribers(stacks_json: dict[str, Stack]) -> None:
    _, prod_topic = find(stacks_json["prod"], "google_pubsub_topic", 'clients-results["acme"]')
    _, dev_topic = find(stacks_json["dev"], "google_pubsub_topic", 'clients-results["acme"]')
    assert prod_topic["name"] == "batch-acme-results"
    assert "kms_key_name" in prod_topic and "kms_key_name" not in dev_topic
    assert prod_topic["message_retention_duration"] == "604800s"
    stack = stacks_json["dev"]
    sub_key, sub = find(stack, "google_pubsub_subscription", 'clients-results-sub["acme"]')
    assert sub["name"] == "batch-acme-results-sub"
    subscribers = {r["member"] for t, _, r in all_resources(stack)
                   if t == "google_pubsub_subscription_iam_member"
                   and r["subscription"] == f"${{google_pubsub_subscription.{sub_key}.name}}"}
    assert subscribers == {sa_member_ref(stack, 'clients-sa["acme"]')}  # acme has no principal
    topic_key, _ = find(stack, "google_pubsub_topic", 'clients-results["acme"]')
    publishers = {r["member"] for t, _, r in all_resources(stack)
                  if t == "google_pubsub_topic_iam_member"
                  and r["topic"] == f"${{google_pubsub_topic.{topic_key}.name}}"}
    assert publishers == {sa_member_ref(stack, "/workflow-sa"),
                          sa_member_ref(stack, "job-embed/sa"),
                          sa_member_ref(stack, "job-uppercase/sa")}


def workflows(stack: Stack) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for t, _, r in all_resources(stack) if t == "google_workflows_workflow"}


def set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    """Apply a Workflows assignment path (`job.a[0].b`) to `doc` (which holds `job`)."""
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
    target: Any = doc
    for part in parts[:-1]:
        target = target[int(part[1:-1])] if part.startswith("[") else target[part]
    last = parts[-1]
    if last.startswith("["):
        target[int(last[1:-1])] = value
    else:
        target[last] = value


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_workflow_submits_the_rendered_job_plus_runtime_fields(
    stacks_json: dict[str, Stack], env: str
) -> None:
    settings = {"dev": dev, "prod": prod}[env]()
    stack = stacks_json[env]
    expected_names = {f"batch-{c.name}-{j}" for c in settings.clients for j in c.jobs}
    assert set(workflows(stack)) == expected_names
    for client in settings.clients:
        for job in client.jobs:
            wf = workflows(stack)[f"batch-{client.name}-{job}"]
            source = wf["source_contents"]
            rendered = render_job(settings.job(job), settings.render_context(job))
            assert embedded_job(source) == rendered  # verbatim, runtime fields still empty

            fill = runtime_assignments(source)
            assert tuple(fill) == RUNTIME_ASSIGNMENTS
            # Run the fill step with stand-in values; the result must be what the submit
            # helper would send for the same runtime values.
            stand_in = {"${string(task_count)}": "3", "${string(parallelism)}": "2",
                        "${input_objects}": "gs://b/o1,gs://b/o2", "${input_prefix}": "gs://b/i/",
                        "${output_prefix}": "gs://b/o/", "${job_id}": f"{job}-1-abc",
                        "${trigger}": "eventarc"}
            doc = {"job": embedded_job(source)}
            for path, value in fill.items():
                set_path(doc, path, stand_in.get(value, value) if isinstance(value, str)
                         else value)
            topic = f"projects/{settings.project_id}/topics/batch-{client.name}-results"
            want = fill_runtime(
                rendered, task_count=3, parallelism=2,
                variables={"GPUB_INPUT_OBJECTS": "gs://b/o1,gs://b/o2",
                           "GPUB_INPUT_PREFIX": "gs://b/i/", "GPUB_OUTPUT_PREFIX": "gs://b/o/",
                           "GPUB_JOB_NAME": f"{job}-1-abc"},
                labels={"client": client.name, "trigger": "eventarc", "submitter": "workflow"},
            )
            want["notifications"] = [*rendered.get("notifications", []),
                                     failure_notification(topic)]
            assert doc["job"] == want

            # Only this client's literals: its prefixes and topic, no other client's.
            for other in settings.clients:
                if other.name != client.name:
                    assert f"{other.name}/" not in source and f"-{other.name}-" not in source
            assert f"{client.name}/outputs/{job}/" in source and topic in source
            assert wf["deletion_protection"] is (env == "prod")
            assert wf["labels"]["client"] == client.name and wf["labels"]["job"] == job
            assert len(source.encode()) < 128 * 1024


def test_upload_trigger_matches_what_the_workflow_accepts(stacks_json: dict[str, Stack]) -> None:
    settings = dev()
    stack = stacks_json["dev"]
    triggers = {r["name"]: r for t, _, r in all_resources(stack) if t == "google_eventarc_trigger"}
    assert set(triggers) == {"batch-acme-embed-upload", "batch-acme-uppercase-upload",
                             "batch-globex-uppercase-upload"}
    trigger_sa = sa_member_ref(stack, "/trigger-sa").removeprefix("serviceAccount:")
    for client in settings.clients:
        for job in client.jobs:
            t = triggers[f"batch-{client.name}-{job}-upload"]
            criteria = {c["attribute"]: c for c in t["matching_criteria"]}
            assert {k: c["value"] for k, c in criteria.items()} == {
                "type": "google.cloud.audit.log.v1.written",
                "serviceName": "storage.googleapis.com",
                "methodName": "storage.objects.create",
                "resourceName": f"/projects/_/buckets/{settings.data_bucket}/objects/"
                                f"{client.name}/inputs/{job}/*",
            }
            assert criteria["resourceName"]["operator"] == "match-path-pattern"
            assert t["service_account"] == trigger_sa and t["location"] == settings.region
            wf_key, _ = find(stack, "google_workflows_workflow",
                             f'clients-workflows["{client.name}/{job}"]')
            assert t["destination"]["workflow"] == f"${{google_workflows_workflow.{wf_key}.id}}"
            # The path pattern's `*` is one path segment; the workflow's check agrees.
            pattern = re.compile("^" + re.escape(criteria["resourceName"]["value"][1:])
                                 .replace(r"\*", "[^/]*") + "$")
            accepts = re.compile(event_regex(_params(settings, client.name, job)))
            base = f"projects/_/buckets/{settings.data_bucket}/objects/"
            for name, fires, runs in [
                (f"{client.name}/inputs/{job}/a.jsonl", True, True),
                (f"{client.name}/inputs/{job}/A.JSONL", True, True),
                (f"{client.name}/inputs/{job}/a.csv", True, False),
                (f"{client.name}/inputs/{job}/_manifest.jsonl", True, False),
                (f"{client.name}/inputs/{job}/batch-1/a.jsonl", False, False),
                (f"{client.name}/inputs/a.jsonl", False, False),
                (f"{client.name}/outputs/{job}/a.jsonl", False, False),
                (f"other/inputs/{job}/a.jsonl", False, False),
            ]:
                assert bool(pattern.match(base + name)) is fires, name
                assert bool(accepts.match(base + name)) is runs, name


def _params(settings: EnvironmentSettings, client: str, job: str) -> Any:
    from stacks.workflow_source import WorkflowParams

    spec = settings.job(job)
    return WorkflowParams(
        client=client, job=job, project_id=settings.project_id, job_region=settings.region,
        bucket=settings.data_bucket, results_topic="projects/p/topics/t",
        job_json=render_job(spec, settings.render_context(job)), input_format=spec.input_format,
        files_per_task=spec.files_per_task, max_parallelism=1,
    )


def test_schedule_starts_the_workflow_with_its_own_account(stacks_json: dict[str, Stack]) -> None:
    stack = stacks_json["dev"]
    scheds = [r for t, _, r in all_resources(stack) if t == "google_cloud_scheduler_job"]
    assert len(scheds) == 1
    s = scheds[0]
    assert (s["schedule"], s["time_zone"]) == ("0 2 * * *", "Europe/Amsterdam")
    target = s["http_target"]
    assert target["uri"] == ("https://workflowexecutions.googleapis.com/v1/projects/example-ml-dev"
                             "/locations/europe-west4/workflows/batch-globex-uppercase/executions")
    body = json.loads(base64.b64decode(target["body"]))
    assert json.loads(body["argument"]) == {"input_prefix": "", "trigger": "schedule"}
    sched_sa = sa_member_ref(stack, 'clients-scheduler-sa["globex"]')
    assert target["oauth_token"]["service_account_email"] == sched_sa.removeprefix(
        "serviceAccount:")
    roles = sorted(r["role"] for t, _, r in all_resources(stack) if r.get("member") == sched_sa)
    assert roles == ["roles/workflows.invoker"]
    _, sa = find(stack, "google_service_account", 'clients-scheduler-sa["globex"]')
    assert sa["account_id"] == "sched-globex"
    # acme has no schedule, so no scheduler account.
    assert not [r for t, _, r in all_resources(stack)
                if t == "google_service_account" and r["account_id"] == "sched-acme"]


# ---- what one call adds --------------------------------------------------------------------
ONE_CALL = Counter({
    "google_service_account": 2,              # client-<c>, sched-<c>
    "google_storage_bucket_iam_member": 8,    # 3 client + workflow list + 2 jobs x (read, write)
    "google_service_account_iam_member": 1,   # principal -> token creator on client-<c>
    "google_pubsub_topic": 1,
    "google_pubsub_topic_iam_member": 3,      # workflow SA + 2 job SAs publish
    "google_pubsub_subscription": 1,
    "google_pubsub_subscription_iam_member": 2,  # client SA + principal
    "google_workflows_workflow": 2,           # one per (client, job)
    "google_eventarc_trigger": 2,             # one per (client, job)
    "google_cloud_scheduler_job": 1,
    "google_project_iam_member": 1,           # sched-<c>: workflows.invoker
})
# Platform-level resources a client's resources may reference (documented in docs/clients.md).
SHARED = {"buckets/data", "workflow-sa", "trigger-sa", "job-embed/sa", "job-uppercase/sa"}


def _client(name: str) -> ClientSettings:
    return ClientSettings(
        name=name, jobs=["embed", "uppercase"], principal=f"group:ops@{name}.example",
        schedules=[Schedule(job="uppercase", cron="0 3 * * *", input_prefix="nightly/")],
    )


@pytest.fixture(scope="module")
def counted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Stack]:
    """Three stacks that differ only in their clients: none, one, two."""
    from stacks.app import synth

    base = dev()
    envs = [
        base.model_copy(update={"name": name, "clients": clients})
        for name, clients in (("czero", []), ("cone", [_client("northwind")]),
                              ("ctwo", [_client("northwind"), _client("initech")]))
    ]
    out: Path = synth(envs, str(tmp_path_factory.mktemp("clients-count")))
    return {e.name: json.loads((out / "stacks" / f"platform-{e.name}" / "cdk.tf.json")
                               .read_text()) for e in envs}


def type_counts(stack: Stack) -> Counter[str]:
    return Counter(t for t, _, _ in all_resources(stack))


def test_one_call_adds_a_fixed_set_and_a_second_adds_it_again(counted: dict[str, Stack]) -> None:
    zero, one, two = (type_counts(counted[n]) for n in ("czero", "cone", "ctwo"))
    assert one - zero == ONE_CALL and zero - one == Counter()
    assert two - one == ONE_CALL and one - two == Counter()
    by_owner = Counter(owner(path_of(r)) for _, _, r in all_resources(counted["ctwo"]))
    assert by_owner["northwind"] == by_owner["initech"] == sum(ONE_CALL.values())


def raw_counts(stack: Stack) -> Counter[str]:
    """Resources as the CDK made them (one construct each), for_each instances not expanded."""
    return Counter(t for t, items in stack.get("resource", {}).items() for _ in items)


# The for_each resources of clients: one construct per type and role, whatever the clients.
CLIENT_RESOURCES = Counter({
    "google_service_account": 2,              # clients-sa, clients-scheduler-sa
    "google_storage_bucket_iam_member": 1,
    "google_service_account_iam_member": 1,
    "google_pubsub_topic": 1,
    "google_pubsub_topic_iam_member": 1,
    "google_pubsub_subscription": 1,
    "google_pubsub_subscription_iam_member": 1,
    "google_workflows_workflow": 1,
    "google_eventarc_trigger": 1,
    "google_cloud_scheduler_job": 1,
    "google_project_iam_member": 1,
})


def test_constructs_do_not_grow_with_clients(counted: dict[str, Stack]) -> None:
    zero, one, two = (raw_counts(counted[n]) for n in ("czero", "cone", "ctwo"))
    assert one - zero == CLIENT_RESOURCES and zero - one == Counter()
    assert two == one


def test_map_keys_are_stable_and_client_scoped(counted: dict[str, Stack]) -> None:
    stack = counted["ctwo"]
    keys = {
        name: set(body["for_each"])
        for items in stack["resource"].values() for name, body in items.items()
        if "for_each" in body
    }
    for client in ("northwind", "initech"):
        job_keys = {f"{client}/{j}" for j in ("embed", "uppercase")}
        want = {
            "clients-sa": {client}, "clients-scheduler-sa": {client},
            "clients-impersonation": {client}, "clients-results": {client},
            "clients-results-sub": {client}, "clients-scheduler-invoker": {client},
            "clients-subscribers": {f"{client}/client", f"{client}/principal"},
            "clients-publishers": {f"{client}/workflow"} | {f"{k}/job" for k in job_keys},
            "clients-bucket-grants": {f"{client}/{g}" for g in (
                "create-inputs", "read-outputs", "list-own", "workflow-lists-inputs")}
                | {f"{k}/job-{rw}" for k in job_keys for rw in ("reads", "writes")},
            "clients-workflows": job_keys, "clients-upload-triggers": job_keys,
            "clients-schedules": {f"{client}/schedule-0"},
        }
        got = {name: {k for k in ks if k.split("/")[0] == client} for name, ks in keys.items()}
        assert got == want
    # Nothing but the two clients' keys.
    assert all(k.split("/")[0] in ("northwind", "initech") for ks in keys.values() for k in ks)


def test_workflow_sources_are_one_escaped_template_per_job(
    stacks_json: dict[str, Stack],
) -> None:
    for env, stack in stacks_json.items():
        settings = {"dev": dev, "prod": prod}[env]()
        templates = stack["locals"]["clients_workflow_sources"]
        # One template per job a client uses, not one source per (client, job).
        assert set(templates) == {j for c in settings.clients for j in c.jobs}
        for name, source in templates.items():
            # Locals are Terraform templates: Workflows' `${...}` must be written `$${...}`.
            assert "$${" in source, name
            assert not re.search(r"(?<!\$)\$\{", source), name
            assert not re.search(r"(?<!%)%\{", source), name
            for client in settings.clients:  # no client's name in a shared template
                assert f"{client.name}/" not in source, (name, client.name)


def test_clients_share_nothing_but_documented_platform_resources(
    counted: dict[str, Stack],
) -> None:
    stack = counted["ctwo"]
    paths = {key: path_of(r) for _, key, r in all_resources(stack)}
    shared: set[str] = set()
    for _, _, r in all_resources(stack):
        mine = owner(path_of(r))
        if mine is None:
            continue
        text = json.dumps({k: v for k, v in r.items() if k not in ("//", "depends_on")})
        other = "initech" if mine == "northwind" else "northwind"
        assert other not in text, f"{path_of(r)} mentions {other}"
        for _, key in REF_RE.findall(text):
            ref_owner = owner(paths[key]) if key in paths else None
            assert ref_owner in (None, mine), f"{path_of(r)} references {paths[key]}"
            if ref_owner is None and key in paths:
                shared.add(paths[key].split("/", 1)[1])
    assert shared == SHARED


# ---- validation ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def new_platform(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[list[ClientSettings]], Any]:
    """Builds (never synthesizes) a dev-like platform with the given clients."""
    from stacks.platform import PlatformStack
    from stacks.provider import App

    app = App(outdir=str(tmp_path_factory.mktemp("clients-validation")))
    counter = iter(range(1000))

    def make(clients: list[ClientSettings]) -> PlatformStack:
        settings = dev().model_copy(update={"name": f"v{next(counter)}", "clients": clients})
        return PlatformStack(app, settings)

    return make


def test_duplicate_client_is_refused(new_platform: Callable[..., Any]) -> None:
    acme = ClientSettings(name="acme", jobs=["uppercase"])
    with pytest.raises(ValueError, match=r"clients: 'acme' is onboarded twice in platform-v"):
        new_platform([acme, acme])
    platform = new_platform([acme])
    with pytest.raises(ValueError, match="onboarded twice"):
        platform.onboard_client(acme)


def test_unknown_job_names_the_known_ones(new_platform: Callable[..., Any]) -> None:
    with pytest.raises(ValueError, match=r"clients\.acme\.jobs: 'nope' is not a job of "
                                         r"platform-v\d+ \(known: embed, uppercase\)"):
        new_platform([ClientSettings(name="acme", jobs=["nope"])])


def test_input_format_the_client_cannot_upload(new_platform: Callable[..., Any]) -> None:
    client = ClientSettings(name="acme", jobs=["embed"], upload_formats=["csv"])
    with pytest.raises(ValueError, match=r"clients\.acme\.upload_formats: job 'embed' reads "
                                         r"'jsonl' inputs but acme uploads only csv"):
        new_platform([client])


def test_schedule_for_a_job_the_client_does_not_use(new_platform: Callable[..., Any]) -> None:
    client = ClientSettings(name="acme", jobs=["uppercase"],
                            schedules=[Schedule(job="embed", cron="0 1 * * *")])
    with pytest.raises(ValueError, match=r"clients\.acme\.schedules\[0\]\.job: 'embed'"):
        new_platform([client])


@pytest.mark.parametrize("name", ["Acme", "a", "acme_co", "9acme", "acme-", "a" * 24])
def test_bad_client_names(name: str, new_platform: Callable[..., Any]) -> None:
    with pytest.raises(ValidationError, match="client name"):
        ClientSettings(name=name, jobs=["uppercase"])
    # Settings built without validation are still refused by the construct.
    unchecked = ClientSettings.model_construct(name=name, jobs=["uppercase"],
                                               upload_formats=["jsonl"], schedules=[],
                                               labels={}, principal=None, contact=None)
    with pytest.raises(ValueError, match=r"clients\.name: .* service account id"):
        new_platform([unchecked])
