"""The BatchJob construct (no identity of its own in tenancy v2) and the GPU quota demand."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from jobs.registry import ALL_JOBS
from stacks.environments import dev, prod
from stacks.quotas import GpuDemand, preferred_value_expression, quota_id_and_dimensions
from stacks.settings import EnvironmentSettings
from tests._helpers.tf import resources

Stack = dict[str, Any]


def _res(stack: Stack, rtype: str) -> list[dict[str, Any]]:
    return list(resources(stack, rtype).values())  # for_each entries expanded


def _demand(pref: dict[str, Any]) -> int:
    m = re.search(r"max\((\d+), ", pref["quota_config"]["preferred_value"])
    assert m, pref["quota_config"]["preferred_value"]
    return int(m.group(1))


def test_dev_quota_is_the_one_gpu_demand(stacks_json: dict[str, Stack]) -> None:
    """Defect 10: the preference asks for what the guardrails and the planner use (8 L4 in
    dev), not the jobs' sum alone (4 before)."""
    demand = ALL_JOBS["embed"].peak_gpu_demand("dev")
    assert demand is not None and demand.spot
    prefs = {p["quota_id"]: p for p in _res(stacks_json["dev"],
                                            "google_cloud_quotas_quota_preference")}
    spot = prefs["PREEMPTIBLE-NVIDIA-L4-GPUS-per-project-region"]
    assert spot["dimensions"] == {"region": "europe-west4"}
    assert _demand(spot) == dev().gpu_demand()[("europe-west4", "L4", True)] == 8
    assert dev().gpu_limit("L4") == 8
    assert _demand(prefs["GPUS-ALL-REGIONS-per-project"]) == dev().gpus_all_regions() == 8
    assert "dimensions" not in prefs["GPUS-ALL-REGIONS-per-project"]


def test_prod_asks_for_standard_l4_and_all_regions(stacks_json: dict[str, Stack]) -> None:
    prefs = {p["quota_id"]: p for p in _res(stacks_json["prod"],
                                            "google_cloud_quotas_quota_preference")}
    assert set(prefs) == {"NVIDIA-L4-GPUS-per-project-region", "GPUS-ALL-REGIONS-per-project"}
    assert _demand(prefs["NVIDIA-L4-GPUS-per-project-region"]) == 16


def test_preferred_value_never_asks_for_a_decrease(stacks_json: dict[str, Stack]) -> None:
    """Defect 10: a preference is a target; it reads the current value and asks for the
    larger (keeping -1, unlimited), for the same quota and dimensions."""
    for stack in stacks_json.values():
        infos = stack["data"]["google_cloud_quotas_quota_info"]
        for pref in _res(stack, "google_cloud_quotas_quota_preference"):
            value = pref["quota_config"]["preferred_value"]
            m = re.search(r"data\.google_cloud_quotas_quota_info\.([^.]+)\.dimensions_infos", value)
            assert m, value
            info = infos[m.group(1)]
            assert (info["quota_id"], info["service"]) == (pref["quota_id"], pref["service"])
            assert value.startswith("${contains([") and ", -1) ? -1 : max(" in value
            for key, dim in pref.get("dimensions", {}).items():
                assert f'lookup(d.dimensions, "{key}", "") == "{dim}"' in value
            assert "ignore_safety_checks" not in pref


def test_preferred_value_expression_shape() -> None:
    expr = preferred_value_expression("data.x.y", 8, {"region": "europe-west4"})
    assert expr == (
        '${contains([for d in data.x.y.dimensions_infos : tonumber(d.details[0].value) '
        'if lookup(d.dimensions, "region", "") == "europe-west4"], -1) ? -1 : '
        'max(8, [for d in data.x.y.dimensions_infos : tonumber(d.details[0].value) '
        'if lookup(d.dimensions, "region", "") == "europe-west4"]...)}'
    )


def test_jobs_have_no_identity_of_their_own(stacks_json: dict[str, Stack]) -> None:
    """Tenancy v2: the per-job service account shared by all clients is retired."""
    for env, settings in (("dev", dev()), ("prod", prod())):
        ids = {sa["account_id"] for sa in _res(stacks_json[env], "google_service_account")}
        assert not any(i.startswith("job-") for i in ids), ids
        run_ids = {i for i in ids if i.startswith("run-")}
        assert run_ids == {f"run-{c.name}" for c in settings.clients}


def test_run_identities_pull_images_from_the_repository_only(
    stacks_json: dict[str, Stack],
) -> None:
    for stack in stacks_json.values():
        grants = _res(stack, "google_artifact_registry_repository_iam_member")
        assert [g["member"] for g in grants] == [
            "principalSet://cloudresourcemanager.googleapis.com/projects/"
            "${data.google_project.project.number}/type/ServiceAccount"]


def test_quota_ids_for_families() -> None:
    a100 = GpuDemand(region="europe-west4", family="A100", spot=False, count=8)
    assert quota_id_and_dimensions(a100) == (
        "NVIDIA-A100-GPUS-per-project-region",
        {"region": "europe-west4"},
    )
    h100 = GpuDemand(region="us-central1", family="H100", spot=True, count=8)
    assert quota_id_and_dimensions(h100) == (
        "PREEMPTIBLE-GPUS-PER-GPU-FAMILY-per-project-region",
        {"region": "us-central1", "gpu_family": "NVIDIA_H100"},
    )
    with pytest.raises(ValueError, match="no known Cloud Quotas id"):
        quota_id_and_dimensions(GpuDemand(region="europe-west4", family="Z9", spot=False, count=1))


def test_one_gpu_demand_model() -> None:
    """Stacks and jobs had two classes named GpuDemand; now a job's peak and a
    quota's demand are one model, the region added by the stack."""
    import jobs

    assert GpuDemand is jobs.GpuDemand
    peak = jobs.GpuDemand("L4", 8, True)
    assert peak.in_region("europe-west4") == GpuDemand(
        region="europe-west4", family="L4", spot=True, count=8)
    with pytest.raises(ValueError, match="needs the region"):
        quota_id_and_dimensions(peak)


def _env(**overrides: Any) -> EnvironmentSettings:
    base: dict[str, Any] = dict(
        name="dev",
        kind="dev",
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


def test_a_job_added_later_joins_the_quota_and_the_settings(tmp_path: Any) -> None:
    """`add_job` keeps ONE list of jobs and ONE GPU demand: settings, quota preferences."""
    from stacks.platform import PlatformStack
    from stacks.provider import App

    base = dev().model_copy(update={"name": "later", "jobs": [ALL_JOBS["uppercase"]],
                                    "clients": []})
    platform = PlatformStack(App(outdir=str(tmp_path)), base)
    assert platform.quotas.preferences == {}  # a CPU job needs no GPU quota
    platform.add_job(ALL_JOBS["embed"])
    assert [j.name for j in platform.settings.jobs] == ["uppercase", "embed"]
    demand = platform.settings.gpu_demand()
    assert platform.quotas.totals == demand and [k[1] for k in demand] == ["L4"]
    assert set(platform.quotas.preferences) == {*demand, "GPUS-ALL-REGIONS-per-project"}
    assert platform.quotas.global_preference is not None
