"""Issue 22: no project-wide grant reaches a client identity; task VMs on a private VPC.

`policies.project_iam.project_wide_roles` evaluates every project-level grant and every grant
to "all service accounts of a project" against one email. Today's code put `client-<c>` in
the platform project, where the run identities' principal set (logging.logWriter,
batch.agentReporter, Artifact Registry reader) reached it.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from policies.project_iam import project_wide_roles
from stacks.environments import load_environments
from tests._helpers.tf import resources

Stack = dict[str, Any]
ENVS = {s.name: s for s in load_environments()}


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_client_identities_hold_no_project_role(stacks_json: dict[str, Stack], env: str) -> None:
    settings, stack = ENVS[env], stacks_json[env]
    for client in settings.clients:
        assert project_wide_roles(stack, settings.client_sa_email(client.name)) == []
        # The control: the same evaluation sees what the run identity needs.
        run_roles = {r for r, _ in project_wide_roles(stack, settings.run_sa_email(client.name))}
        assert {"roles/logging.logWriter", "roles/batch.agentReporter",
                "roles/artifactregistry.reader"} <= run_roles


def test_thousand_client_identities_hold_no_project_role(tmp_path_factory: Any) -> None:
    from bench.synth import build_environments
    from stacks.app import synth

    envs = build_environments(1000, 1)
    out = synth(envs[:1], str(tmp_path_factory.mktemp("iso1000")))
    stack = json.loads((out / "stacks" / "platform-dev" / "cdk.tf.json").read_text())
    # The clients live in the environment's shard stacks (client_shards, past its size).
    shards = [json.loads(p.read_text())
              for p in sorted(out.glob("stacks/platform-dev-clients-*/cdk.tf.json"))]
    assert len(shards) == envs[0].client_shards.count > 1
    sas = {k: v for doc in shards for k, v in resources(doc, "google_service_account").items()}
    clients = [b for b in sas.values() if str(b["account_id"]).startswith("client-")]
    assert len(clients) == 1000
    assert {b["project"] for b in clients} == {"example-ml-dev-clients"}
    assert all(project_wide_roles(stack, envs[0].client_sa_email(c.name)) == []
               for c in envs[0].clients[:50])


def test_in_the_platform_project_the_principal_set_would_reach_them(
        stacks_json: dict[str, Stack]) -> None:
    """Today's layout, reproduced on the new stack: the defect the evaluation detects."""
    stack = copy.deepcopy(stacks_json["dev"])
    stack["resource"]["google_service_account"]["clients-sa"]["project"] = "example-ml-dev"
    roles = {r for r, _ in project_wide_roles(
        stack, "client-acme@example-ml-dev.iam.gserviceaccount.com")}
    assert {"roles/logging.logWriter", "roles/batch.agentReporter"} <= roles


def test_client_project_is_never_the_platform_project() -> None:
    from pydantic import ValidationError

    dev = ENVS["dev"]
    assert dev.clients_project == "example-ml-dev-clients"
    assert dev.client_sa_email("acme").endswith("@example-ml-dev-clients.iam.gserviceaccount.com")
    with pytest.raises(ValidationError, match="client_identity_project"):
        dev.model_validate({**dev.model_dump(), "client_identity_project": dev.project_id})


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_task_network_is_private(stacks_json: dict[str, Stack], env: str) -> None:
    stack = stacks_json[env]
    (vpc,) = resources(stack, "google_compute_network").values()
    assert vpc["name"] == "batch-tasks" and vpc["auto_create_subnetworks"] is False
    subnets = resources(stack, "google_compute_subnetwork").values()
    assert subnets and all(s["private_ip_google_access"] is True for s in subnets)
    firewalls = list(resources(stack, "google_compute_firewall").values())
    assert [f["direction"] for f in firewalls] == ["INGRESS"]
    assert firewalls[0]["deny"] == [{"protocol": "all"}]
    assert firewalls[0]["source_ranges"] == ["0.0.0.0/0"]
    assert not any("allow" in f for f in firewalls)  # nothing opens a way in
    nats = resources(stack, "google_compute_router_nat").values()
    assert all(n["nat_ip_allocate_option"] == "AUTO_ONLY" for n in nats)


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_rendered_jobs_use_the_task_network(synth_dir: Any, env: str) -> None:
    settings = ENVS[env]
    for path in (synth_dir / "jobs" / f"platform-{env}").glob("*.json"):
        job = json.loads(path.read_text())
        region = job["allocationPolicy"]["location"]["allowedLocations"][0].split("/")[1]
        assert job["allocationPolicy"]["network"] == {"networkInterfaces": [{
            "network": settings.layout.task_network,
            "subnetwork": settings.layout.task_subnetwork(region),
            "noExternalIpAddress": True}]}, path.name


def test_rendered_jobs_parse_as_batch_jobs(synth_dir: Any) -> None:
    from google.cloud import batch_v1

    for path in (synth_dir / "jobs").glob("*/*.json"):
        job = batch_v1.Job.from_json(path.read_text())
        nic = job.allocation_policy.network.network_interfaces[0]
        assert nic.no_external_ip_address and nic.subnetwork.endswith("/subnetworks/batch-tasks")
