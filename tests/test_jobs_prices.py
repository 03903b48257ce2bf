"""Prices per machine type, region and provisioning model from the one dated catalog, the new
machine families, and the Spot staleness warning (jobs/machines_prices.py, jobs/cost_bound.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from jobs.catalog import SPOT_PRICE_DATE, gpu_fit_problem, machine_shape
from jobs.cost_bound import job_cost_bound
from jobs.machines_prices import price, spot_staleness


def test_prices_differ_by_region_and_provisioning_model() -> None:
    eu = price("g2-standard-8", "europe-west4", "STANDARD")
    us = price("g2-standard-8", "us-central1", "STANDARD")
    spot = price("g2-standard-8", "europe-west4", "SPOT")
    assert eu is not None and us is not None and spot is not None
    assert (eu.usd_h, spot.usd_h) == (0.8966, 0.3868)  # the checked SKU figures (jobs/sku_prices)
    assert us.usd_h != eu.usd_h and "us-central1" in us.basis
    assert price("g2-standard-8", "asia-east1", "STANDARD") is None  # no figure: no guess


def test_flex_start_and_reservations_are_bounded_by_on_demand() -> None:
    on_demand = price("g2-standard-4", "europe-west4", "STANDARD")
    for model in ("FLEX_START", "RESERVATION_BOUND"):
        found = price("g2-standard-4", "europe-west4", model)
        assert found is not None and on_demand is not None
        assert found.usd_h == on_demand.usd_h and "on-demand price bounds it" in found.basis


def _job(machine: str, region: str) -> dict:
    return {"taskGroups": [{"taskCount": "2", "taskSpec": {"maxRunDuration": "3600s"}}],
            "allocationPolicy": {"instances": [{"policy": {"machineType": machine}}],
                                 "location": {"allowedLocations": [f"regions/{region}"]}}}


def test_a_job_is_costed_at_its_own_region() -> None:
    eu = job_cost_bound(_job("g2-standard-8", "europe-west4"), "europe-west4")
    us = job_cost_bound(_job("g2-standard-8", "us-central1"), "europe-west4")
    assert eu.usd == pytest.approx(2 * 0.8966)
    assert us.usd is not None and us.usd != eu.usd and "us-central1" in us.why


@pytest.mark.parametrize(("name", "vcpus", "gib", "gpu", "count"), [
    ("g4-standard-48", 48, 180, "nvidia-rtx-pro-6000", 1),
    ("g4-standard-384", 384, 1440, "nvidia-rtx-pro-6000", 8),
    ("a4-highgpu-8g", 224, 3968, "nvidia-b200", 8),
    ("a4x-highgpu-4g", 140, 884, "nvidia-gb200", 4),
    ("c4-standard-8", 8, 30, None, 0),
    ("c4-highmem-8", 8, 62, None, 0),
    ("h3-standard-88", 88, 352, None, 0),
    ("m3-ultramem-32", 32, 976, None, 0),
    ("z3-highmem-88", 88, 704, None, 0),
])
def test_new_families_have_their_documented_shapes(name: str, vcpus: int, gib: float,
                                                   gpu: str | None, count: int) -> None:
    shape = machine_shape(name)
    assert shape is not None
    assert (shape.vcpus, shape.memory_mib, shape.gpu_type, shape.gpu_count) == (
        vcpus, round(gib * 1024), gpu, count)
    if gpu:
        assert gpu_fit_problem(shape, gpu, count) is None
        assert gpu_fit_problem(shape, gpu, count + 1) is not None


def test_new_families_are_priced_as_approximate() -> None:
    for name in ("g4-standard-48", "a4-highgpu-8g", "a4x-highgpu-4g", "c4-standard-8",
                 "h3-standard-88", "m3-ultramem-32", "z3-highmem-88"):
        found = price(name, "europe-west4", "STANDARD")
        assert found is not None and found.exact is False, name


def test_spot_prices_older_than_30_days_warn() -> None:
    dated = dt.date.fromisoformat(SPOT_PRICE_DATE)
    assert spot_staleness(dated + dt.timedelta(days=30)) is None
    stale = spot_staleness(dated + dt.timedelta(days=31))
    assert stale is not None and "31 days ago" in stale and "bin/refresh-prices" in stale


def test_a_task_without_max_run_duration_is_bounded_by_batchs_14_days() -> None:
    job = _job("e2-standard-2", "europe-west4")
    del job["taskGroups"][0]["taskSpec"]["maxRunDuration"]
    bound = job_cost_bound(job, "europe-west4")
    assert bound.usd == pytest.approx(2 * 14 * 24 * 0.0737)
    assert any("14-day" in n for n in bound.notes)


def test_spot_without_retries_is_one_finding_per_task_group() -> None:
    """GPUB_JOB_2 was reported twice for a job without retries, and fired with retries."""
    from policies.guardrails import check_job

    job = _job("e2-standard-2", "europe-west4")
    job["allocationPolicy"]["instances"][0]["policy"]["provisioningModel"] = "SPOT"
    rules = [v.rule_id for v in check_job(job, env_name="dev")]
    assert rules.count("GPUB_JOB_2") == 1 and "GPUB_JOB_17" not in rules
    job["taskGroups"][0]["taskSpec"]["maxRetryCount"] = 2
    rules = [v.rule_id for v in check_job(job, env_name="dev")]
    assert "GPUB_JOB_2" not in rules and rules.count("GPUB_JOB_17") == 1
