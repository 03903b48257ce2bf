"""Issue 22: offboarding in two phases, and removing a client never deletes its data.

Today one apply deleted the run identity (in-flight jobs), the results subscription (unread
outcomes) and the schedules, then failed on the non-empty bucket, and every later deploy with
it. Phase 1 (`leaving: true`) stops intake only; phase 2 deletes the entry and the bucket is
abandoned by Terraform (`deletion_policy = "ABANDON"`), never deleted.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest

from stacks.environments import dev
from tests._helpers.tf import member_grants, resources

Stack = dict[str, Any]


@pytest.fixture(scope="module")
def leaving(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    from stacks.app import synth

    base = dev()
    clients = [c.model_copy(update={"leaving": c.name == "globex"}) for c in base.clients]
    out = synth([base.model_copy(update={"clients": clients})],
                str(tmp_path_factory.mktemp("leaving")))
    return json.loads((out / "stacks" / "platform-dev" / "cdk.tf.json").read_text())


def _keys(stack: Stack, rtype: str, name: str) -> set[str]:
    return set(stack["resource"][rtype][name]["for_each"])


def test_a_leaving_client_stops_intake(leaving: Stack) -> None:
    # One notification per (client, job) on the job's intake topic (`<client>/<job>`).
    intake = _keys(leaving, "google_storage_notification", "clients-intake")
    assert intake == {"acme/embed", "acme/uppercase"}
    schedules = leaving["resource"].get("google_cloud_scheduler_job", {})
    assert not any(k.startswith("globex/") for s in schedules.values()
                   for k in s.get("for_each", {}))
    for workflow in resources(leaving, "google_workflows_workflow").values():
        assert "globex" not in workflow["source_contents"]


def test_a_leaving_client_keeps_what_running_jobs_and_outcomes_need(leaving: Stack) -> None:
    for rtype, name in (("google_service_account", "clients-sa"),
                        ("google_service_account", "clients-run-sa"),
                        ("google_pubsub_topic", "clients-results"),
                        ("google_pubsub_subscription", "clients-results-sub"),
                        ("google_storage_bucket", "clients-bucket")):
        assert "globex" in _keys(leaving, rtype, name), (rtype, name)
    act_as = {g["member"] for address, g in member_grants(leaving, "google_service_account")
              if address == 'clients-run-sa-policy["globex"]'
              and g["role"] == "roles/iam.serviceAccountUser"}
    assert "serviceAccount:${google_service_account.batch-workflows.email}" in act_as


def test_client_buckets_are_abandoned_never_deleted(stacks_json: dict[str, Stack]) -> None:
    from stacks.provider import StorageBucket

    # The provider schema (google 8.7 bindings) has the argument, with ABANDON among its values.
    doc = inspect.getdoc(StorageBucket.__init__) or ""
    assert "deletion_policy" in inspect.signature(StorageBucket.__init__).parameters
    assert '"ABANDON"' in doc
    for stack in stacks_json.values():
        bucket = stack["resource"]["google_storage_bucket"]["clients-bucket"]
        assert bucket["deletion_policy"] == "ABANDON"
        assert bucket["force_destroy"] is False


def test_offboarding_docs_delete_every_object_version() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()
    section = text.split("## Offboarding", 1)[1].split("\n## ", 1)[0]
    assert "leaving: true" in section or "leaving=True" in section
    removes = [line for line in section.splitlines() if "gcloud storage rm" in line]
    assert removes and all("--all-versions" in line for line in removes)
