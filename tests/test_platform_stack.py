"""Security and shape properties of the synthesized platform stacks (one test per property)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from stacks.identity import PROJECT_LEVEL_ONLY
from tests._helpers.tf import instances, member_grants

Stack = dict[str, Any]


def resources(stack: Stack, rtype: str) -> dict[str, dict[str, Any]]:
    """Resource instances of a type (for_each entries expanded, as Terraform would)."""
    return instances(stack.get("resource", {}).get(rtype, {}), stack.get("locals", {}))


def only(stack: Stack, rtype: str, path_suffix: str) -> dict[str, Any]:
    found = [
        r
        for r in resources(stack, rtype).values()
        if r["//"]["metadata"]["path"].endswith(path_suffix)
    ]
    assert len(found) == 1, f"expected one {rtype} at */{path_suffix}, found {len(found)}"
    return found[0]


def ref_id(stack: Stack, rtype: str, path_suffix: str) -> str:
    for key, r in resources(stack, rtype).items():
        if r["//"]["metadata"]["path"].endswith(path_suffix):
            return key
    raise AssertionError(f"no {rtype} at */{path_suffix}")


def iam_members(stack: Stack) -> list[tuple[str, dict[str, Any]]]:
    """Every grant: bindings as declared, members and the bindings of authoritative
    policies one member each (`member_grants`)."""
    out = []
    targets = set()
    for rtype, items in stack.get("resource", {}).items():
        if rtype.endswith("_iam_binding"):
            out.extend((rtype, r) for r in instances(items, stack.get("locals", {})).values())
        elif rtype.endswith(("_iam_member", "_iam_policy")):
            targets.add(rtype.rsplit("_iam_", 1)[0])
    out.extend((t, g) for t in sorted(targets) for _, g in member_grants(stack, t))
    assert any("policy_data" in r for t, items in stack["resource"].items()
               if t.endswith("_iam_policy") for r in items.values())  # policies are read
    return out


@pytest.fixture(params=["dev", "prod"])
def stack(request: pytest.FixtureRequest, stacks_json: dict[str, Stack]) -> Stack:
    return stacks_json[request.param]


def test_provider_has_default_labels(stack: Stack) -> None:
    provider = stack["provider"]["google"][0]
    assert provider["default_labels"]["managed-by"] == "gpu-batch-platform"
    assert provider["default_labels"]["env"] in ("dev", "prod")


def test_gcs_backend_per_environment(stacks_json: dict[str, Stack]) -> None:
    prefixes = {env: s["terraform"]["backend"]["gcs"]["prefix"] for env, s in stacks_json.items()}
    assert prefixes == {"dev": "gpu-batch/dev", "prod": "gpu-batch/prod"}


def test_every_used_api_is_enabled(stacks_json: dict[str, Stack]) -> None:
    needed = {
        "batch",
        "compute",
        "storage",
        "artifactregistry",
        "eventarc",
        "workflows",
        "pubsub",
        "secretmanager",
        "cloudscheduler",
        "logging",
        "cloudquotas",
        "iam",
    }
    for env, stack in stacks_json.items():
        apis = {
            r["service"].split(".")[0] for r in resources(stack, "google_project_service").values()
        }
        assert needed <= apis, f"{env} misses {needed - apis}"
        assert ("cloudkms" in apis) == (env == "prod")
        assert all(
            not r["disable_on_destroy"] for r in resources(stack, "google_project_service").values()
        )


def test_data_bucket_is_locked_down(stack: Stack) -> None:
    bucket = only(stack, "google_storage_bucket", "buckets/data")
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["force_destroy"] is False
    assert bucket["versioning"] == {"enabled": True}
    assert bucket["soft_delete_policy"]["retention_duration_seconds"] >= 7 * 86400


def test_data_bucket_lifecycle_rules(stack: Stack) -> None:
    rules = only(stack, "google_storage_bucket", "buckets/data")["lifecycle_rule"]
    kinds = {(r["action"]["type"], r["action"].get("storage_class")) for r in rules}
    assert ("Delete", None) in kinds
    assert ("SetStorageClass", "COLDLINE") in kinds
    noncurrent = next(r for r in rules if r["action"]["type"] == "Delete")["condition"]
    assert noncurrent["days_since_noncurrent_time"] > 0


def test_data_bucket_logs_to_separate_locked_log_bucket(stack: Stack) -> None:
    data = only(stack, "google_storage_bucket", "buckets/data")
    logs = only(stack, "google_storage_bucket", "buckets/logs")
    log_key = ref_id(stack, "google_storage_bucket", "buckets/logs")
    assert data["logging"]["log_bucket"] == f"${{google_storage_bucket.{log_key}.name}}"
    assert "logging" not in logs, "the log bucket must not log to itself"
    assert logs["public_access_prevention"] == "enforced"
    assert logs["uniform_bucket_level_access"] is True
    assert logs["force_destroy"] is False


def test_registry_immutable_tags_and_cleanup(stack: Stack) -> None:
    repo = only(stack, "google_artifact_registry_repository", "registry/repo")
    assert repo["format"] == "DOCKER"
    assert repo["docker_config"] == {"immutable_tags": True}
    actions = {p["action"] for p in repo["cleanup_policies"]}
    assert actions == {"KEEP", "DELETE"}
    assert repo["cleanup_policy_dry_run"] is False
    untagged = next(p for p in repo["cleanup_policies"] if p["action"] == "DELETE")
    assert untagged["condition"]["tag_state"] == "UNTAGGED"


def test_cmek_only_in_prod(stacks_json: dict[str, Stack]) -> None:
    assert resources(stacks_json["dev"], "google_kms_crypto_key") == {}
    assert len(resources(stacks_json["prod"], "google_kms_crypto_key")) == 1


def test_prod_workflows_are_encrypted_with_the_key(stacks_json: dict[str, Stack]) -> None:
    prod = stacks_json["prod"]
    key = ref_id(prod, "google_kms_crypto_key", "kms/key")
    workflows = resources(prod, "google_workflows_workflow").values()
    assert workflows
    assert all(w["crypto_key_name"] == f"${{google_kms_crypto_key.{key}.id}}" for w in workflows)
    assert all(
        "crypto_key_name" not in w
        for w in resources(stacks_json["dev"], "google_workflows_workflow").values()
    )


def test_prod_data_bucket_and_registry_use_the_key(stacks_json: dict[str, Stack]) -> None:
    prod = stacks_json["prod"]
    key = ref_id(prod, "google_kms_crypto_key", "kms/key")
    ref = f"${{google_kms_crypto_key.{key}.id}}"
    assert only(prod, "google_storage_bucket", "buckets/data")["encryption"] == {
        "default_kms_key_name": ref
    }
    assert only(prod, "google_artifact_registry_repository", "registry/repo")["kms_key_name"] == ref
    rotation = only(prod, "google_kms_crypto_key", "kms/key")["rotation_period"]
    assert int(rotation.rstrip("s")) <= 90 * 86400


def test_key_granted_only_to_service_agents(stacks_json: dict[str, Stack]) -> None:
    """Defect 7: each agent is made to exist (google_project_service_identity, google-beta)
    and granted by reference, never by a hand-built email."""
    prod = stacks_json["prod"]
    grants = resources(prod, "google_kms_crypto_key_iam_member").values()
    members = sorted(g["member"] for g in grants)
    assert len(members) == 5  # 3 agents, the storage agent, BigQuery's (the cost view)
    assert {g["role"] for g in grants} == {"roles/cloudkms.cryptoKeyEncrypterDecrypter"}
    assert not any("gcp-sa-" in m or "@" in m for m in members), members
    identities = resources(prod, "google_project_service_identity")
    # Eventarc's agent too (triggers wait for it), though it never holds the key.
    assert {i["service"] for i in identities.values()} == {
        "artifactregistry.googleapis.com", "pubsub.googleapis.com", "workflows.googleapis.com",
        "eventarc.googleapis.com"}
    for name, identity in identities.items():
        assert identity["provider"] == "google-beta"
        granted = f"serviceAccount:${{google_project_service_identity.{name}.email}}" in members
        assert granted == (identity["service"] != "eventarc.googleapis.com"), name
    assert any("data.google_storage_project_service_account" in m for m in members)
    assert any("data.google_bigquery_default_service_account" in m for m in members)
    assert prod["terraform"]["required_providers"]["google-beta"]["source"] == (
        "hashicorp/google-beta")
    assert prod["provider"]["google-beta"][0]["project"] == "example-ml-prod"


def _depends(resource: dict[str, Any]) -> set[str]:
    return set(resource.get("depends_on", []))


def _key_grant(stack: Stack, agent: str) -> str:
    names = [n for n in resources(stack, "google_kms_crypto_key_iam_member")
             if n.endswith(f"agent-{agent}") or f"agent-{agent}_" in n]
    assert len(names) == 1, names
    return f"google_kms_crypto_key_iam_member.{names[0]}"


def test_cmek_resources_wait_for_their_key_grant(stacks_json: dict[str, Stack]) -> None:
    """Defect 6: every resource encrypted with the key depends on its agent's key grant."""
    prod = stacks_json["prod"]
    raw = prod["resource"]
    wf_grant = _key_grant(prod, "workflows")
    for workflow in raw["google_workflows_workflow"].values():
        assert workflow["crypto_key_name"].startswith("${google_kms_crypto_key.")
        assert wf_grant in _depends(workflow)
    for topic in raw["google_pubsub_topic"].values():
        assert _key_grant(prod, "pubsub") in _depends(topic)
    for bucket in raw["google_storage_bucket"].values():
        assert _key_grant(prod, "gcs") in _depends(bucket)
    for repo in raw["google_artifact_registry_repository"].values():
        assert _key_grant(prod, "artifactregistry") in _depends(repo)


def test_triggers_wait_for_their_service_account_grants(stack: Stack) -> None:
    """Defect 5: Terraform cannot infer that a trigger needs its account's roles."""
    grants = {f"google_project_iam_member.{n}" for n, g in
              stack["resource"]["google_project_iam_member"].items()
              if g["member"] == "serviceAccount:${google_service_account.batch-trigger.email}"}
    assert len(grants) == 2
    for trigger in stack["resource"]["google_eventarc_trigger"].values():
        assert trigger["service_account"] == "${google_service_account.batch-trigger.email}"
        assert grants <= _depends(trigger)


def test_usage_logs_can_be_written(stack: Stack) -> None:
    """Defect 8: the log bucket lets Cloud Storage's analytics group write usage logs."""
    logs = only(stack, "google_storage_bucket", "buckets/logs")
    writers = [g for g in resources(stack, "google_storage_bucket_iam_member").values()
               if g["member"] == "group:cloud-storage-analytics@google.com"]
    assert [g["role"] for g in writers] == ["roles/storage.objectCreator"]
    log_ref = ref_id(stack, "google_storage_bucket", "buckets/logs")
    assert writers[0]["bucket"] == f"${{google_storage_bucket.{log_ref}.name}}"
    for bucket in stack["resource"]["google_storage_bucket"].values():
        if bucket is not logs and bucket["name"] != logs["name"]:
            log_bucket = bucket["logging"]["log_bucket"]
            assert log_bucket.startswith("${google_storage_bucket.buckets_logs")


def test_budget_provider_works_for_people_and_ci(stacks_json: dict[str, Stack]) -> None:
    """Defect 9: the Billing Budgets API needs a quota project with user credentials."""
    prod = stacks_json["prod"]
    budget = next(iter(prod["resource"]["google_billing_budget"].values()))
    assert budget["provider"] == "google.billing"
    billing = [p for p in prod["provider"]["google"] if p.get("alias") == "billing"]
    assert billing == [{"alias": "billing", "billing_project": "example-ml-prod",
                        "project": "example-ml-prod", "region": "europe-west4",
                        "user_project_override": True}]
    default = [p for p in prod["provider"]["google"] if "alias" not in p]
    assert "user_project_override" not in default[0]


def test_no_basic_roles_anywhere(stack: Stack) -> None:
    for rtype, grant in iam_members(stack):
        assert grant.get("role") not in ("roles/owner", "roles/editor", "roles/viewer"), rtype


def test_no_project_level_act_as_or_token_creator(stack: Stack) -> None:
    for grant in resources(stack, "google_project_iam_member").values():
        assert grant["role"] not in (
            "roles/iam.serviceAccountUser",
            "roles/iam.serviceAccountTokenCreator",
        )


def test_no_service_account_keys(stack: Stack) -> None:
    assert resources(stack, "google_service_account_key") == {}


def test_project_grants_only_where_nothing_narrower(stack: Stack) -> None:
    """Every project-level grant is one of the roles GCP offers no narrower resource for."""
    roles = {g["role"] for g in resources(stack, "google_project_iam_member").values()}
    assert roles <= PROJECT_LEVEL_ONLY, roles - PROJECT_LEVEL_ONLY


def test_resource_grants_are_on_the_narrowest_resource(stack: Stack) -> None:
    """Unconditional bucket roles only where the bucket is the boundary: a client's run
    identity and operators on its own bucket, the usage-log writer on the log bucket. Image
    pull is per repository."""
    plain = []
    for name, grant in member_grants(stack, "google_storage_bucket"):
        if "condition" in grant:
            expression = grant["condition"]["expression"]
            assert "resource.name" in expression, name
            continue
        m = re.fullmatch(r'clients-bucket-policy\["([a-z0-9-]+)"\]', name)
        if m:
            assert grant["bucket"] == f'${{google_storage_bucket.clients-bucket["{m[1]}"].name}}'
            assert grant["member"] in (
                f'serviceAccount:${{google_service_account.clients-run-sa["{m[1]}"].email}}',
                "serviceAccount:${google_service_account.operator.email}")
            assert grant["role"] == "roles/storage.objectViewer"
            plain.append((m[1], grant["member"]))
        else:
            assert grant["member"] == "group:cloud-storage-analytics@google.com", name
    clients = stack["resource"]["google_storage_bucket"]["clients-bucket"]["for_each"]
    assert len(set(plain)) == len(plain) == 2 * len(clients)  # run-<c> and operators each
    for grant in resources(stack, "google_artifact_registry_repository_iam_member").values():
        assert grant["role"] == "roles/artifactregistry.reader"
    for _, grant in member_grants(stack, "google_service_account"):
        assert grant["service_account_id"].startswith("${google_service_account.")


def test_workflow_and_trigger_service_accounts(stack: Stack) -> None:
    ids = {sa["account_id"] for sa in resources(stack, "google_service_account").values()}
    assert {"batch-workflows", "batch-trigger", "batch-scheduler", "batch-adhoc",
            "operator"} <= ids
    roles_of: dict[str, set[str]] = {}
    for grant in resources(stack, "google_project_iam_member").values():
        roles_of.setdefault(grant["member"], set()).add(grant["role"])
    assert roles_of["serviceAccount:${google_service_account.batch-workflows.email}"] == {
        "roles/batch.jobsEditor",
        "roles/logging.logWriter",
    }
    assert roles_of["serviceAccount:${google_service_account.batch-trigger.email}"] == {
        "roles/eventarc.eventReceiver",
        "roles/workflows.invoker",
    }
    assert roles_of["serviceAccount:${google_service_account.operator.email}"] == {
        "roles/batch.jobsEditor"}
    # Run identities: Batch agent reporting and logging once, for the project's service
    # accounts as a set, not once per client (the project policy stays small).
    run_set = ("principalSet://cloudresourcemanager.googleapis.com/projects/"
               "${data.google_project.project.number}/type/ServiceAccount")
    assert roles_of[run_set] == {"roles/batch.agentReporter", "roles/logging.logWriter"}
    assert len(resources(stack, "google_project_iam_member")) <= 10


def test_storage_data_write_audit_logs(stack: Stack) -> None:
    audit = only(stack, "google_project_iam_audit_config", "storage-audit")
    assert audit["service"] == "storage.googleapis.com"
    assert {"log_type": "DATA_WRITE"} in audit["audit_log_config"]


def test_budget_only_with_billing_account(stacks_json: dict[str, Stack]) -> None:
    assert resources(stacks_json["dev"], "google_billing_budget") == {}
    budget = next(iter(resources(stacks_json["prod"], "google_billing_budget").values()))
    thresholds = sorted(r["threshold_percent"] for r in budget["threshold_rules"])
    assert thresholds[0] < 1.0 and thresholds[-1] == 1.0


def test_quota_preferences_carry_contact_and_justification(stack: Stack) -> None:
    prefs = resources(stack, "google_cloud_quotas_quota_preference").values()
    assert prefs
    for pref in prefs:
        assert re.match(r"^[^@]+@[^@]+$", pref["contact_email"])
        assert len(pref["justification"]) > 20
        assert pref["service"] == "compute.googleapis.com"


def test_job_json_written_for_every_job(synth_dir: Path) -> None:
    from google.cloud import batch_v1

    for env in ("dev", "prod"):
        for job in ("embed", "uppercase"):
            path = synth_dir / "jobs" / f"platform-{env}" / f"{job}.json"
            batch_v1.Job.from_json(path.read_text())
            assert json.loads(path.read_text())["labels"]["env"] == env
