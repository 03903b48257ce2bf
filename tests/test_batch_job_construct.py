"""The BatchJob construct: job identity, least-privilege grants, quota demand."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from jobs.registry import ALL_JOBS
from stacks.quotas import GpuDemand, quota_id_and_dimensions
from stacks.settings import EnvironmentSettings
from tests._tf import resources

Stack = dict[str, Any]


def _res(stack: Stack, rtype: str) -> list[dict[str, Any]]:
    return list(resources(stack, rtype).values())  # for_each entries expanded


def _sa_ref(stack: Stack, account_id: str) -> str:
    for key, sa in resources(stack, "google_service_account").items():
        if sa["account_id"] == account_id:
            return f"serviceAccount:${{google_service_account.{key}.email}}"
    raise AssertionError(f"no service account {account_id}")


def test_dev_has_spot_l4_quota_covering_embed_peak(stacks_json: dict[str, Stack]) -> None:
    demand = ALL_JOBS["embed"].peak_gpu_demand("dev")
    assert demand is not None and demand.spot
    prefs = [
        p
        for p in _res(stacks_json["dev"], "google_cloud_quotas_quota_preference")
        if p["quota_id"] == "PREEMPTIBLE-NVIDIA-L4-GPUS-per-project-region"
    ]
    assert len(prefs) == 1
    assert prefs[0]["dimensions"] == {"region": "europe-west4"}
    assert int(prefs[0]["quota_config"]["preferred_value"]) >= demand.count


def test_prod_asks_for_standard_l4(stacks_json: dict[str, Stack]) -> None:
    ids = {p["quota_id"] for p in _res(stacks_json["prod"], "google_cloud_quotas_quota_preference")}
    assert ids == {"NVIDIA-L4-GPUS-per-project-region"}


@pytest.mark.parametrize("job", ["embed", "uppercase"])
def test_job_service_account_grants(stacks_json: dict[str, Stack], job: str) -> None:
    stack = stacks_json["dev"]
    member = _sa_ref(stack, f"job-{job}")
    project_roles = {
        g["role"] for g in _res(stack, "google_project_iam_member") if g["member"] == member
    }
    assert project_roles == {"roles/batch.agentReporter", "roles/logging.logWriter"}
    repo = [
        g
        for g in _res(stack, "google_artifact_registry_repository_iam_member")
        if g["member"] == member
    ]
    assert [g["role"] for g in repo] == ["roles/artifactregistry.reader"]
    bucket = [g for g in _res(stack, "google_storage_bucket_iam_member") if g["member"] == member]
    assert {g["role"] for g in bucket} == {
        "roles/storage.objectViewer",
        "roles/storage.objectCreator",
    }
    for grant in bucket:
        # Literal bucket names so reviewers and tests can evaluate the expression.
        assert (
            "projects/_/buckets/example-ml-dev-batch-data/objects/"
            in grant["condition"]["expression"]
        )


def test_only_the_workflow_account_may_act_as_a_job_account(stacks_json: dict[str, Stack]) -> None:
    stack = stacks_json["dev"]
    workflow = _sa_ref(stack, "batch-workflows")
    act_as = [
        g
        for g in _res(stack, "google_service_account_iam_member")
        if g["role"] == "roles/iam.serviceAccountUser"
    ]
    job_refs = {
        _sa_ref(stack, f"job-{j}").split("{")[1].rsplit(".", 1)[0] for j in ("embed", "uppercase")
    }
    targets = {
        g["service_account_id"].split("{")[1].rsplit(".", 1)[0]
        for g in act_as
        if g["member"] == workflow
    }
    assert job_refs <= targets


def test_quota_ids_for_families() -> None:
    assert quota_id_and_dimensions(GpuDemand("europe-west4", "A100", False, 8)) == (
        "NVIDIA-A100-GPUS-per-project-region",
        {"region": "europe-west4"},
    )
    assert quota_id_and_dimensions(GpuDemand("us-central1", "H100", True, 8)) == (
        "PREEMPTIBLE-GPUS-PER-GPU-FAMILY-per-project-region",
        {"region": "us-central1", "gpu_family": "NVIDIA_H100"},
    )
    with pytest.raises(ValueError, match="no known Cloud Quotas id"):
        quota_id_and_dimensions(GpuDemand("europe-west4", "Z9", False, 1))


def _env(**overrides: Any) -> EnvironmentSettings:
    base: dict[str, Any] = dict(
        name="dev",
        project_id="example-ml-dev",
        region="europe-west4",
        state_bucket="b",
        state_prefix="p",
        quota_contact_email="a@example.com",
    )
    base.update(overrides)
    return EnvironmentSettings(**base)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("project_id", "Example", "project_id must be 6-30 chars"),
        ("region", "europe", "region must look like"),
        ("quota_contact_email", "nobody", "quota_contact_email must be an email"),
        ("billing_account", "123", "billing_account must look like"),
        ("zones", ["us-east1-b"], "not in region"),
        ("labels", {"Team": "x"}, "not a valid GCP label"),
        ("unknown", 1, "Extra inputs are not permitted"),
    ],
)
def test_settings_validation_names_the_field(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        _env(**{field: value})
    assert message in str(err.value)
    assert field in str(err.value)


def test_job_region_must_be_allowed() -> None:
    from stacks.app import build_app

    spec = ALL_JOBS["uppercase"].model_copy(update={"region": "us-central1"})
    with pytest.raises(ValueError, match=r"jobs.uppercase.region: 'us-central1' is not an allowed"):
        build_app([_env(jobs=[spec])])
