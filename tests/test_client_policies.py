"""Each client's IAM as one authoritative policy per resource (docs/clients.md "What one call
creates"): its bucket's, `run-<c>`'s (act-as), `client-<c>`'s (impersonation, with a
principal), its results topic's and its subscription's.

- `policy_data` is JSON once Terraform evaluates it, and `tfjson.iam` reads it alike (Terraform
  itself evaluates a synthesized one where it is installed);
- the local cloud's GCS and Pub/Sub IAM grant from a policy exactly what the member grants it
  stands for granted;
- existing states forget the member resources without destroying them (`removed` blocks), and
  only the grants shared between clients stay members.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

# At import, before any test builds a cel-python environment of its own (local.iam_policy
# makes its compiled one first: see its "CEL" notes).
from local import iam_policy, pubsub_iam
from stacks.environments import dev, prod
from stacks.settings import ClientSettings, EnvironmentSettings
from stacks.shards import ClientShards
from tfjson import INTERPOLATION_RE, instances
from tfjson.iam import PolicyBinding, policy_bindings, policy_data, policy_document

Stack = dict[str, Any]
REF = '${google_service_account.clients-sa["acme"].email}'
OUTPUTS = 'resource.name.startsWith("projects/_/buckets/p-acme/objects/outputs/")'
# What the stacks declared one member each before, in every state that holds clients.
OLD_MEMBERS = {
    "google_storage_bucket_iam_member.clients-bucket-grants",
    "google_storage_bucket_iam_member.clients-bucket-roles",
    "google_service_account_iam_member.clients-run-act-as",
    "google_service_account_iam_member.clients-impersonation",
    "google_pubsub_topic_iam_member.clients-publishers",
    "google_pubsub_subscription_iam_member.clients-subscribers",
}
SHARED = {"clients-notify-publishers", "clients-secret-access"}
REMOVED_RE = re.compile(r"removed \{\n  from = (\S+)\n\n  lifecycle \{\n    destroy = false\n"
                        r"  \}\n\}\n")


# ---- policy_data ------------------------------------------------------------------------
def test_policy_data_is_json_once_terraform_interpolates_it() -> None:
    bindings = [PolicyBinding("roles/storage.objectViewer", [f"serviceAccount:{REF}", "group:g"]),
                PolicyBinding("roles/storage.objectUser", [f"serviceAccount:{REF}"], OUTPUTS,
                              "acme-run-writes-outputs", "tasks write outputs/")]
    text = policy_data(bindings)
    # The key's quotes stay raw inside the interpolation (Terraform's template parser reads
    # `["acme"]`); the condition's quotes are JSON-escaped (the provider gets JSON).
    assert REF in text and '\\"projects/_/buckets/p-acme' in text
    assert policy_bindings(text) == bindings
    evaluated = json.loads(text.replace(REF, "client-acme@p.iam.gserviceaccount.com"))
    # No version: the provider sets 3 on every setIamPolicy and reads back none.
    assert set(evaluated) == {"bindings"}
    assert evaluated["bindings"][1] == {
        "role": "roles/storage.objectUser",
        "members": ["serviceAccount:client-acme@p.iam.gserviceaccount.com"],
        "condition": {"title": "acme-run-writes-outputs", "description": "tasks write outputs/",
                      "expression": OUTPUTS}}


def test_bindings_of_one_role_and_condition_are_one_binding() -> None:
    viewer = PolicyBinding("roles/storage.objectViewer", ["user:a", "user:b"])
    merged = policy_bindings(policy_data([viewer, viewer._replace(members=["user:b", "user:c"])]))
    assert merged == [viewer._replace(members=["user:a", "user:b", "user:c"])]
    with pytest.raises(ValueError, match="only members"):
        policy_data([PolicyBinding("roles/x", ["user:a"], "${var.condition}")])
    assert policy_document("not json") is None and policy_bindings("[]") is None


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
def test_terraform_evaluates_a_synthesized_policy_as_tfjson_reads_it(
        synth_dir: Path, stacks_json: dict[str, Stack], tmp_path: Path) -> None:
    """Every client policy of prod, its references replaced by locals, evaluated by
    `terraform plan` next to the stack's moved.tf (its `moved`, `removed` and `terraform`
    blocks must parse): `jsondecode` of each gives what tfjson.iam reads."""
    refs: dict[str, str] = {}

    def local(m: re.Match[str]) -> str:
        key = refs.setdefault(m.group(0), f"r{len(refs)}")
        return f"${{local.refs.{key}}}"

    texts = {}
    for rtype, named in stacks_json["prod"]["resource"].items():
        if rtype.endswith("_iam_policy"):
            for name, conf in named.items():
                for address, body in instances(name, conf):
                    texts[f"{rtype}.{address}"] = INTERPOLATION_RE.sub(local, body["policy_data"])
    assert len(texts) >= 5, sorted(texts)
    values = {key: f"{key}@p.iam.gserviceaccount.com" for key in refs.values()}
    (tmp_path / "main.tf.json").write_text(json.dumps({
        "locals": {"refs": values, "policies": texts},
        "output": {"policies": {"value": "${{for k, v in local.policies : k => jsondecode(v)}}"}},
    }))
    shutil.copy(synth_dir / "stacks" / "platform-prod" / "moved.tf", tmp_path / "moved.tf")

    def terraform(*args: str) -> str:
        proc = subprocess.run(["terraform", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    terraform("init", "-input=false", "-backend=false")
    terraform("plan", "-input=false", "-out=plan")
    planned = json.loads(terraform("show", "-json", "plan"))
    got = planned["planned_values"]["outputs"]["policies"]["value"]
    expected = {address: policy_document(INTERPOLATION_RE.sub(
        lambda m: f"{m.group(0)[len('${local.refs.'):-1]}@p.iam.gserviceaccount.com", text))
        for address, text in texts.items()}
    assert got == expected


# ---- what one client has ------------------------------------------------------------------
def test_each_client_has_one_policy_per_resource_it_owns(stacks_json: dict[str, Stack]) -> None:
    for env, stack in stacks_json.items():
        resources = stack["resource"]
        settings = dev() if env == "dev" else prod()
        clients = {c.name: c for c in settings.clients}
        for rtype, name in (("google_storage_bucket_iam_policy", "clients-bucket-policy"),
                            ("google_service_account_iam_policy", "clients-run-sa-policy"),
                            ("google_pubsub_topic_iam_policy", "clients-results-policy"),
                            ("google_pubsub_subscription_iam_policy",
                             "clients-results-sub-policy")):
            assert set(resources[rtype][name]["for_each"]) == set(clients), (env, name)
        assert set(resources["google_service_account_iam_policy"]["clients-sa-policy"][
            "for_each"]) == {c for c, s in clients.items() if s.principal is not None}
        # Members only on what clients share: the jobs' notification topics and secrets.
        for rtype, named in resources.items():
            if rtype.endswith("_iam_member"):
                assert not {n for n in named if n.startswith("clients-")} - SHARED, rtype


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dev whose first job publishes to a notification topic (its clients' grants there are
    shared, so members), and prod with its clients in two shards."""
    from jobs.parts import Notification
    from stacks.app import synth

    base = dev()
    first = base.jobs[0].model_copy(update={"notifications": [
        Notification(topic="job-events", type="JOB_STATE_CHANGED")]})
    notified = base.model_copy(update={"jobs": [first, *base.jobs[1:]]})
    clients = [ClientSettings(name=n, jobs=[j.name for j in prod().jobs])
               for n in ("tenant-a", "tenant-b")]
    sharded: EnvironmentSettings = prod().model_copy(update={
        "clients": clients, "client_shards": ClientShards(count=2)})
    return synth([notified, sharded], str(tmp_path_factory.mktemp("migrated")))


def test_grants_on_shared_topics_stay_members(migrated: Path) -> None:
    doc = json.loads((migrated / "stacks" / "platform-dev" / "cdk.tf.json").read_text())
    job = dev().jobs[0].name
    notify = doc["resource"]["google_pubsub_topic_iam_member"]["clients-notify-publishers"]
    assert {k: v["topic"] for k, v in notify["for_each"].items()} == {
        f"{c.name}/notify-job-events": "job-events" for c in dev().clients if job in c.jobs}
    for entry in doc["resource"]["google_pubsub_topic_iam_policy"]["clients-results-policy"][
            "for_each"].values():
        assert "job-events" not in json.dumps(entry)


# ---- existing states ----------------------------------------------------------------------
def test_removed_blocks_name_every_old_member_resource(synth_dir: Path, migrated: Path,
                                                       stacks_json: dict[str, Stack]) -> None:
    """A state with clients forgets each old member resource whole (`from` names a resource,
    never an instance) without destroying it: a member's destroy would revoke a binding the
    new policy holds. Terraform 1.7+ is required where they are."""
    from stacks.client_resources import forgotten

    assert forgotten() == sorted(OLD_MEMBERS)
    for folder in (synth_dir / "stacks" / "platform-dev", synth_dir / "stacks" / "platform-prod",
                   migrated / "stacks" / "platform-dev"):
        text = (folder / "moved.tf").read_text()
        removed = REMOVED_RE.findall(text)
        assert sorted(removed) == sorted(OLD_MEMBERS), folder
        assert 'terraform {\n  required_version = ">= 1.7.0"\n}\n' in text
        # The dead-letter grants' moves out of the old resources stay (applied first).
        assert ('from = google_pubsub_topic_iam_member.clients-publishers'
                '["_intake-dead-letter/workflow"]') in text
        doc = json.loads((folder / "cdk.tf.json").read_text())
        declared = {f"{t}.{n}" for t, named in doc["resource"].items() for n in named}
        assert not OLD_MEMBERS & declared
    assert set(stacks_json) == {"dev", "prod"}
    # A platform whose clients are in shards holds none; a shard's state starts with policies.
    sharded = migrated / "stacks"
    assert "removed {" not in (sharded / "platform-prod" / "moved.tf").read_text()
    shards = sorted(sharded.glob("platform-prod-clients-*"))
    assert len(shards) == 2 and not any((s / "moved.tf").exists() for s in shards)


# ---- the local cloud reads a policy as the members it replaces ----------------------------
def _as_members(doc: Stack) -> Stack:
    """`doc` with every `_iam_policy` instance replaced by one `_iam_member` per binding and
    member (the shape the stacks had), references kept."""
    out = json.loads(json.dumps(doc))
    resources = out["resource"]
    for rtype in [t for t in resources if t.endswith("_iam_policy")]:
        members = resources.setdefault(rtype.replace("_iam_policy", "_iam_member"), {})
        for name, conf in resources.pop(rtype).items():
            for address, body in instances(name, conf):
                target = {k: v for k, v in body.items() if k not in ("policy_data", "//")}
                for i, b in enumerate(policy_bindings(body["policy_data"]) or []):
                    condition = {} if b.condition is None else {"condition": {
                        "title": b.title, "description": b.description,
                        "expression": b.condition}}
                    for j, member in enumerate(b.members):
                        members[f"{address}-{i}-{j}"] = {**target, "role": b.role,
                                                         "member": member, **condition}
    return out


def _triples(grants: dict[str, list[Any]]) -> dict[str, set[tuple[Any, ...]]]:
    return {where: {(g.role, m, getattr(g, "condition", None)) for g in found
                    for m in g.members} for where, found in grants.items()}


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_local_iam_grants_from_a_policy_what_its_members_granted(
        stacks_json: dict[str, Stack], env: str) -> None:
    policies, members = stacks_json[env], _as_members(stacks_json[env])
    gcs = [iam_policy.Policy(), iam_policy.Policy()]
    iam = [pubsub_iam.IamPolicy(), pubsub_iam.IamPolicy()]
    for doc, storage, other in zip((policies, members), gcs, iam, strict=True):
        iam_policy.add_document(storage, doc)
        pubsub_iam.add_document(other, doc)
        assert not storage.unresolved and not other.unresolved
    assert _triples(gcs[0].buckets) == _triples(gcs[1].buckets)
    assert _triples(iam[0].grants) == _triples(iam[1].grants)
    # ... conditions live: run-acme writes acme's outputs/, not its inputs/, nothing of globex.
    settings = dev() if env == "dev" else prod()
    run, bucket = settings.run_sa_email("acme"), settings.client_bucket("acme")
    create = "storage.objects.create"
    assert gcs[0].allows(iam_policy.Request(run, create, bucket, "outputs/j/b/x"))
    assert not gcs[0].allows(iam_policy.Request(run, create, bucket, "inputs/j/b/x"))
    assert gcs[0].allows(iam_policy.Request(run, "storage.objects.list", bucket,
                                            list_prefix="inputs/"))
    assert iam[0].allows(settings.layout.workflow_sa_email, pubsub_iam.ACT_AS, run)
    assert not iam[0].allows(settings.client_sa_email("acme"), pubsub_iam.ACT_AS, run)
