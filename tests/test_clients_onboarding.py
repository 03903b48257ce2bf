"""Client onboarding, tenancy v2 (docs/clients.md), checked on synthesized stacks.

- every client IAM grant is evaluated with a real CEL implementation (cel-python): the identity
  that runs client A's tasks can get, list, create and delete under A's outputs and get and
  list A's inputs, and none of it on another client's bucket;
- one onboarding call adds a fixed set of resources; triggers and workflows do not grow;
- names never collide and reserved names are refused; `onboard_client` and
  `settings.clients` are one list.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from itertools import product
from pathlib import Path
from typing import Any

import celpy
import pytest
from pydantic import ValidationError

from stacks.environments import dev
from stacks.settings import ClientSettings, Schedule
from tests._helpers.tf import all_resources, member_grants, path_of

Stack = dict[str, Any]
OBJECT = "storage.googleapis.com/Object"
BUCKET = "storage.googleapis.com/Bucket"
# Storage permissions of the predefined roles the stacks grant
# (cloud.google.com/storage/docs/access-control/iam-roles).
ROLE_PERMISSIONS = {
    "roles/storage.objectCreator": {"storage.objects.create"},
    "roles/storage.objectViewer": {"storage.objects.get", "storage.objects.list"},
    "roles/storage.objectUser": {
        "storage.objects.create", "storage.objects.delete", "storage.objects.get",
        "storage.objects.list", "storage.objects.update",
    },
}
GET, LIST, CREATE, DELETE = (f"storage.objects.{p}" for p in ("get", "list", "create", "delete"))


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


def bucket_name_of(stack: Stack, ref: str) -> str:
    """`${google_storage_bucket.clients-bucket["acme"].name}` -> the bucket's literal name."""
    m = re.fullmatch(r"\$\{google_storage_bucket\.(.+)\.name\}", ref)
    if m is None:
        return ref
    buckets = {k: r for t, k, r in all_resources(stack) if t == "google_storage_bucket"}
    return str(buckets[m.group(1)]["name"])


def grants_of(stack: Stack, member: str) -> list[dict[str, Any]]:
    """The member's bucket grants: member resources and bucket policies' bindings alike."""
    return [{**r, "bucket": bucket_name_of(stack, r["bucket"])}
            for _, r in member_grants(stack, "google_storage_bucket") if r["member"] == member]


class Access:
    """What one member may do on storage, from the stack's bucket grants and CEL."""

    def __init__(self, cel: Cel, grants: list[dict[str, Any]]) -> None:
        self.cel, self.grants = cel, grants

    def _allowed(self, bucket: str, permission: str, rtype: str, name: str,
                 attributes: dict[str, str] | None = None) -> bool:
        for grant in self.grants:
            if grant["bucket"] != bucket or permission not in ROLE_PERMISSIONS.get(
                    grant["role"], set()):
                continue
            condition = grant.get("condition")
            if condition is None or self.cel(condition["expression"], rtype, name, attributes):
                return True
        return False

    def on_object(self, bucket: str, permission: str, name: str) -> bool:
        return self._allowed(bucket, permission, OBJECT,
                             f"projects/_/buckets/{bucket}/objects/{name}")

    def lists(self, bucket: str, prefix: str) -> bool:
        return self._allowed(bucket, LIST, BUCKET, f"projects/_/buckets/{bucket}",
                             {"storage.googleapis.com/objectListPrefix": prefix})


def sa_member(kind: str, client: str) -> str:
    return f'serviceAccount:${{google_service_account.clients-{kind}["{client}"].email}}'


PAIRS = [("dev", "acme", "globex"), ("dev", "globex", "acme"), ("prod", "acme", "globex")]


# ---- run-time isolation (CEL) ----------------------------------------------------------------
@pytest.mark.parametrize(("env", "client", "other"), PAIRS)
def test_run_identity_of_a_client_reaches_its_bucket_only(
    stacks_json: dict[str, Stack], cel: Cel, env: str, client: str, other: str
) -> None:
    """Defects 1 and 2 too: list is a bucket-level check (an object-name condition never
    matches it), and a retried task overwrites and deletes under outputs/."""
    stack = stacks_json[env]
    mine, theirs = f"example-ml-{env}-{client}", f"example-ml-{env}-{other}"
    run = Access(cel, grants_of(stack, sa_member("run-sa", client)))
    assert run.grants, "the run identity has bucket grants"
    for name in ("outputs/uppercase/b1/x.jsonl", "outputs/uppercase/b1/_done/x.jsonl.done",
                 "outputs/embed/b2/_tasks/0.json", "outputs/embed/b2/_callback.json"):
        for permission in (GET, CREATE, DELETE):
            assert run.on_object(mine, permission, name), (permission, name)
    for prefix in ("outputs/uppercase/b1/_done/", "outputs/embed/b2/_tasks/",
                   "inputs/uppercase/b1/", ""):
        assert run.lists(mine, prefix), prefix
    assert run.on_object(mine, GET, "inputs/uppercase/b1/a.jsonl")
    # Inputs are the client's: the run identity never writes or deletes them.
    for permission in (CREATE, DELETE):
        assert not run.on_object(mine, permission, "inputs/uppercase/b1/a.jsonl")
    # Nothing at all on another client's bucket, nor on the platform's buckets.
    for bucket in (theirs, f"example-ml-{env}-batch-data", f"example-ml-{env}-batch-logs"):
        for permission, name in product((GET, CREATE, DELETE),
                                        ("outputs/uppercase/b1/x", "inputs/uppercase/b1/x")):
            assert not run.on_object(bucket, permission, name), (bucket, permission)
        assert not run.lists(bucket, "outputs/")
        assert not run.lists(bucket, "")


@pytest.mark.parametrize(("env", "client", "other"), PAIRS)
def test_client_identity_writes_inputs_reads_outputs(
    stacks_json: dict[str, Stack], cel: Cel, env: str, client: str, other: str
) -> None:
    stack = stacks_json[env]
    mine, theirs = f"example-ml-{env}-{client}", f"example-ml-{env}-{other}"
    me = Access(cel, grants_of(stack, sa_member("sa", client)))
    assert all(g.get("condition") for g in me.grants), "every client grant is conditional"
    assert me.on_object(mine, CREATE, "inputs/uppercase/b1/a.jsonl")
    assert me.on_object(mine, CREATE, "inputs/uppercase/b1/_READY")
    assert not me.on_object(mine, CREATE, "outputs/uppercase/b1/x")
    assert not me.on_object(mine, DELETE, "inputs/uppercase/b1/a.jsonl")
    assert me.on_object(mine, GET, "outputs/uppercase/b1/x")
    assert me.lists(mine, "outputs/uppercase/")
    for permission, name in product((GET, CREATE), ("inputs/x", "outputs/x")):
        assert not me.on_object(theirs, permission, name)
    assert not me.lists(theirs, "")


@pytest.mark.parametrize(("env", "client", "other"), PAIRS)
def test_operator_runs_for_every_client_without_touching_inputs(
    stacks_json: dict[str, Stack], cel: Cel, env: str, client: str, other: str
) -> None:
    """bin/submit's identity (settings.operator_sa_email) reads a client's bucket and writes
    manifests and run records under outputs/; it never writes a client's inputs."""
    stack = stacks_json[env]
    mine = f"example-ml-{env}-{client}"
    op = Access(cel, grants_of(stack, "serviceAccount:${google_service_account.operator.email}"))
    assert op.on_object(mine, GET, "inputs/uppercase/b1/a.jsonl")
    assert op.lists(mine, "inputs/uppercase/b1/")
    for permission in (CREATE, DELETE):
        assert op.on_object(mine, permission, "outputs/uppercase/b1/_manifest.jsonl")
        assert not op.on_object(mine, permission, "inputs/uppercase/b1/a.jsonl")
    data = f"example-ml-{env}-batch-data"
    assert op.on_object(data, CREATE, "jobs/uppercase/x") and op.lists(data, "jobs/uppercase/")
    assert not op.on_object(data, CREATE, "acme/inputs/x")


def test_every_bucket_condition_is_valid_cel(stacks_json: dict[str, Stack], cel: Cel) -> None:
    for stack in stacks_json.values():
        for _, r in member_grants(stack, "google_storage_bucket"):
            if r.get("condition"):
                cel.program(r["condition"]["expression"])


def test_tasks_run_as_the_clients_run_identity(stacks_json: dict[str, Stack]) -> None:
    """The workflow and operators may act as each client's run identity, nobody else."""
    stack = stacks_json["dev"]
    act_as = [r for _, r in member_grants(stack, "google_service_account")
              if r["role"] == "roles/iam.serviceAccountUser"]
    targets = {r["service_account_id"] for r in act_as if "clients-run-sa" in
               r["service_account_id"]}
    assert targets == {f'${{google_service_account.clients-run-sa["{c}"].name}}'
                       for c in ("acme", "globex")}
    run_targets = [r for r in act_as if "clients-run-sa" in r["service_account_id"]]
    assert {r["member"] for r in run_targets} == {
        "serviceAccount:${google_service_account.batch-workflows.email}",
        "serviceAccount:${google_service_account.operator.email}"}
    others = [r for r in act_as if r not in run_targets]
    deployer = "serviceAccount:deployer@example-ml-dev.iam.gserviceaccount.com"
    assert sorted((r["service_account_id"], r["member"]) for r in others) == sorted([
        ("${google_service_account.batch-adhoc.name}",
         "serviceAccount:${google_service_account.operator.email}"),
        # The deployer creates workflows, triggers and schedules that run as these (issue 22).
        *((f"${{google_service_account.{a}.name}}", deployer)
          for a in ("batch-workflows", "batch-trigger", "batch-scheduler"))])


# ---- what one call adds --------------------------------------------------------------------
def _client(name: str) -> ClientSettings:
    return ClientSettings(
        name=name, jobs=["embed", "uppercase"], principal=f"group:ops@{name}.example",
        schedules=[Schedule(job="uppercase", cron="0 3 * * *", input_prefix="nightly/")],
    )


@pytest.fixture(scope="module")
def counted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Stack]:
    """Three stacks of the same environment that differ only in their clients: none, one,
    two (one synth each: an environment's name is in its per-environment resources, e.g. the
    log-based metrics `gpub-<env>-*`, so renamed copies would differ in more than clients)."""
    from stacks.app import synth

    base = dev()
    out: dict[str, Stack] = {}
    for label, clients in (("czero", []), ("cone", [_client("northwind")]),
                           ("ctwo", [_client("northwind"), _client("initech")])):
        env = base.model_copy(update={"clients": clients})
        path: Path = synth([env], str(tmp_path_factory.mktemp(f"clients-{label}")))
        out[label] = json.loads(
            (path / "stacks" / f"platform-{env.name}" / "cdk.tf.json").read_text())
    return out


ONE_CALL = Counter({
    "google_storage_bucket": 1,
    "google_storage_notification": 2,  # one per job of the client (issue 20): two jobs here
    "google_service_account": 2,
    # One authoritative policy each: the bucket's, run-<c>'s (act-as), client-<c>'s (the
    # principal's impersonation), the results topic's and its subscription's.
    "google_storage_bucket_iam_policy": 1,
    "google_service_account_iam_policy": 2,
    "google_pubsub_topic": 1,
    "google_pubsub_subscription": 1,
    "google_pubsub_subscription_iam_policy": 1,
    "google_pubsub_topic_iam_policy": 1,
    "google_cloud_scheduler_job": 1,
})
# ... which hold the grants one member resource each held before: 7 client/run/operator
# grants on the bucket, the client's markers (re-runs), 4 for the job workflows; act-as for
# the workflows and operators, impersonation; two subscribers, two publishers.
ONE_CALL_GRANTS = Counter({"google_storage_bucket": 12, "google_service_account": 3,
                           "google_pubsub_subscription": 2, "google_pubsub_topic": 2})
# Declared with the first client only: the intake dead-letter topic, its subscription, the
# workflows' publisher and the operators' subscriber grants (docs/clients.md "Intake").
def type_counts(stack: Stack) -> Counter[str]:
    return Counter(t for t, _, _ in all_resources(stack))


def grant_counts(stack: Stack) -> Counter[str]:
    return Counter({target: sum(1 for _ in member_grants(stack, target))
                    for target in ONE_CALL_GRANTS})


def test_one_call_adds_a_fixed_set_and_no_trigger_or_workflow(counted: dict[str, Stack]) -> None:
    zero, one, two = (type_counts(counted[n]) for n in ("czero", "cone", "ctwo"))
    assert one - zero == ONE_CALL and zero - one == Counter()
    assert two - one == ONE_CALL and one - two == Counter()
    grants = [grant_counts(counted[n]) for n in ("czero", "cone", "ctwo")]
    assert grants[1] - grants[0] == ONE_CALL_GRANTS == grants[2] - grants[1]
    assert zero["google_eventarc_trigger"] == two["google_eventarc_trigger"] == 2  # one per job
    assert zero["google_workflows_workflow"] == two["google_workflows_workflow"] == 2


def test_client_entries_reference_only_their_own_client(counted: dict[str, Stack]) -> None:
    """Every map key starts with its client, and no entry names another client."""
    stack = counted["ctwo"]
    for _, key, r in all_resources(stack):
        m = re.search(r'\["([a-z0-9-]+)(?:/[^"]*)?"\]$', key)
        if m is None:
            continue
        mine = m.group(1)
        other = ({"northwind", "initech"} - {mine}).pop()
        assert other not in json.dumps({k: v for k, v in r.items() if k != "//"}), key


def test_removing_a_client_destroys_only_its_entries_and_keeps_a_bucket_with_data(
        counted: dict[str, Stack]) -> None:
    """docs/operations.md "Offboarding": removing `initech` (ctwo -> cone) deletes exactly its
    own for_each entries, no workflow or trigger, and its bucket is `force_destroy = false`
    (Terraform refuses to delete a bucket that holds objects)."""
    one, two = counted["cone"], counted["ctwo"]
    before = {(t, key) for t, key, _ in all_resources(two)}
    after = {(t, key) for t, key, _ in all_resources(one)}
    removed = before - after
    assert removed and after <= before
    assert all('["initech' in key for _, key in removed), sorted(removed)
    assert not {t for t, _ in removed} & {"google_workflows_workflow", "google_eventarc_trigger"}
    buckets = [r for t, key, r in all_resources(two)
               if t == "google_storage_bucket" and '["initech"]' in key]
    assert len(buckets) == 1 and buckets[0]["force_destroy"] is False


# ---- names ---------------------------------------------------------------------------------
def test_names_of_client_job_pairs_never_collide() -> None:
    """`acme-eu` + `uppercase` and `acme` + `eu-uppercase` gave the same name before."""
    settings = dev()
    clients = ["acme", "acme-eu", "acme-e", "eu", "acme-eu-1"]
    jobs = ["uppercase", "eu-uppercase", "1", "uppercase-1"]
    names = [settings.schedule_name(c, j, i) for c, j, i in product(clients, jobs, range(12))]
    assert len(names) == len(set(names))
    buckets = [settings.client_bucket(c) for c in clients]
    assert len(set(buckets)) == len(buckets)
    assert settings.data_bucket not in buckets and settings.log_bucket not in buckets


@pytest.mark.parametrize("name", ["jobs", "batch-data", "batch-logs", "batch-x", "inputs",
                                  "outputs", "googlers", "goog-acme", "run-acme"])
def test_reserved_client_names_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="reserved by the platform"):
        ClientSettings(name=name, jobs=["uppercase"])


@pytest.mark.parametrize("name", ["Acme", "a", "acme_co", "9acme", "acme-", "a" * 24, "ac--me"])
def test_bad_client_names(name: str) -> None:
    with pytest.raises(ValidationError, match="client name"):
        ClientSettings(name=name, jobs=["uppercase"])


# ---- validation and the one list of clients ------------------------------------------------
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


def test_schedule_for_a_job_the_client_does_not_use(new_platform: Callable[..., Any]) -> None:
    client = ClientSettings(name="acme", jobs=["uppercase"],
                            schedules=[Schedule(job="embed", cron="0 1 * * *")])
    with pytest.raises(ValueError, match=r"clients\.acme\.schedules\[0\]\.job: 'embed'"):
        new_platform([client])


def test_unvalidated_reserved_name_is_refused_by_the_construct(
    new_platform: Callable[..., Any],
) -> None:
    unchecked = ClientSettings.model_construct(name="jobs", jobs=["uppercase"],
                                               upload_formats=["jsonl"], schedules=[],
                                               labels={}, principal=None, contact=None)
    with pytest.raises(ValueError, match=r"clients\.name: .*reserved"):
        new_platform([unchecked])


def test_onboard_client_and_settings_are_one_list(tmp_path: Path) -> None:
    """A client added with `onboard_client` is in `settings.clients`, has its bucket (with the
    lifecycle rules), its run identity, is served by its jobs' workflows, and is in the
    environment file written at synth (what bin/submit reads)."""
    from stacks.app import finish
    from stacks.platform import PlatformStack
    from stacks.provider import App

    app = App(outdir=str(tmp_path))
    platform = PlatformStack(app, dev().model_copy(update={"name": "onelist"}))
    platform.onboard_client(ClientSettings(name="initech", jobs=["uppercase"]))
    assert [c.name for c in platform.settings.clients] == ["acme", "globex", "initech"]
    app.synth()
    finish(tmp_path, [platform])
    stack = json.loads((tmp_path / "stacks/platform-onelist/cdk.tf.json").read_text())
    buckets = {k: r for t, k, r in all_resources(stack) if t == "google_storage_bucket"}
    bucket = buckets['clients-bucket["initech"]']
    assert bucket["name"] == "example-ml-dev-initech"
    assert any(rule["condition"].get("matches_prefix") == ["outputs/"]
               for rule in bucket["lifecycle_rule"])
    # Its markers notify the job's intake topic (the workflow lists no clients).
    notes = {k: r for t, k, r in all_resources(stack) if t == "google_storage_notification"}
    assert notes['clients-intake["initech/uppercase"]']["object_name_prefix"] == (
        "inputs/_ready/uppercase/")
    env_file = json.loads((tmp_path / "environments/platform-onelist.json").read_text())
    assert [c["name"] for c in env_file["clients"]] == ["acme", "globex", "initech"]


def test_every_client_instance_has_a_path(counted: dict[str, Stack]) -> None:
    for _, _, r in all_resources(counted["ctwo"]):
        assert path_of(r)
