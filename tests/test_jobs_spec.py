"""JobSpec validation: every rule, each message naming the field and what is allowed."""

# ruff: noqa: E501  (one validation case per line reads better than wrapped tables)

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from jobs import GpuDemand, JobSpec, JobSpecError, one_line
from jobs.catalog import PRICE_DATE, PRICE_SOURCE, get_machine, gpu_family
from jobs.registry import ALL_JOBS
from jobs.spec import GcsVolume, GpuSpec, Notification

CPU: dict[str, Any] = {"name": "demo", "image": "images/uppercase", "machine_type": "e2-standard-4"}
L4: dict[str, Any] = {"name": "gpu", "image": "images/embed", "machine_type": "g2-standard-8"}


def error(**kwargs: Any) -> JobSpecError:
    with pytest.raises(ValidationError) as info:
        JobSpec(**kwargs)
    return JobSpecError.from_validation_error(info.value)


CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("name upper", {**CPU, "name": "Embed"}, "name", "lowercase letters"),
    ("name too long", {**CPU, "name": "a" * 39}, "name", "1-38 chars"),
    ("name trailing -", {**CPU, "name": "embed-"}, "name", "not ending with a hyphen"),
    ("image ref", {**CPU, "image": "images/Embed"}, "image", "images/<name>"),
    ("image uri", {**CPU, "image": "bad image"}, "image", "full image URI"),
    ("no image", {**CPU, "image": None}, "image", "required unless the job runs a script"),
    ("script+image", {**CPU, "script": "echo hi"}, "script", "either a script or a container"),
    ("empty script", {**CPU, "image": None, "script": "  "}, "script", "must not be empty"),
    ("machine", {**CPU, "machine_type": "x9 mega"}, "machine_type", "machine type like 'n2-standard-8'"),
    ("gpu type", {**L4, "gpus": GpuSpec(type="nvidia-tesla-a100")}, "gpus", "g2-standard-8 needs nvidia-l4; got nvidia-tesla-a100"),
    ("a2 needs a100", {**L4, "machine_type": "a2-highgpu-1g", "gpus": GpuSpec(type="nvidia-l4")}, "gpus", "a2-highgpu-1g needs nvidia-tesla-a100"),
    ("gpu count", {**L4, "gpus": GpuSpec(type="nvidia-l4", count=2)}, "gpus", "g2-standard-8 carries 1 nvidia-l4; got 2"),
    ("unknown gpu", {**L4, "gpus": {"type": "nvidia-x999"}}, "gpus.type", "unknown accelerator"),
    ("l4 on n1", {**CPU, "machine_type": "n1-standard-4", "gpus": GpuSpec(type="nvidia-l4")}, "gpus", "use g2-*"),
    ("t4 on e2", {**CPU, "gpus": GpuSpec(type="nvidia-tesla-t4")}, "gpus", "attaches to n1-* machines only"),
    ("t4 count", {**CPU, "machine_type": "n1-standard-4", "gpus": GpuSpec(type="nvidia-tesla-t4", count=3)}, "gpus", "counts 1, 2, 4; got 3"),
    ("v100 vcpus", {**CPU, "machine_type": "n1-standard-16", "gpus": GpuSpec(type="nvidia-tesla-v100")}, "gpus", "at most 12 vCPUs"),
    ("gpu count 0", {**L4, "gpus": {"type": "nvidia-l4", "count": 0}}, "gpus.count", "greater than or equal to 1"),
    ("memory", {**CPU, "machine_type": "n1-standard-4", "memory_mib": 90000}, "memory_mib", "memoryMib 90000 exceeds n1-standard-4 (15360)"),
    ("cpu", {**CPU, "cpu_milli": 5000}, "cpu_milli", "cpuMilli 5000 exceeds e2-standard-4 (4000)"),
    ("disk size", {**CPU, "boot_disk_gb": 5}, "boot_disk_gb", "greater than or equal to 10"),
    ("disk type", {**CPU, "boot_disk_type": "ssd"}, "boot_disk_type", "pd-balanced"),
    ("retries max", {**CPU, "max_retry_count": 11}, "max_retry_count", "less than or equal to 10"),
    ("code 50001", {**CPU, "retry_on_preemption": False, "retry_exit_codes": [50001]}, "retry_on_preemption", "contradicts exit code 50001"),
    ("codes repeat", {**CPU, "retry_exit_codes": [2, 2]}, "retry_exit_codes", "must not repeat"),
    ("provisioning", {**CPU, "provisioning": "flex"}, "provisioning", "'flex_start' or 'reservation_bound'"),
    ("reservation", {**CPU, "reservation": "Any Reservation"}, "reservation", "NO_RESERVATION"),
    ("overrides", {**CPU, "batch_overrides": {"taskGroups": [{"taskCount": "x"}]}}, "batch_overrides", "taskGroups[0].taskCount: must be an integer"),
    ("overrides field", {**CPU, "batch_overrides": {"allocationPolicy": {"instance": []}}}, "batch_overrides", "did you mean 'instances'"),
    ("runnable kinds", {**CPU, "setup": [{"script": "a", "barrier": ""}]}, "setup.0", "at most one of"),
    ("duration", {**CPU, "max_run_duration_s": 0}, "max_run_duration_s", "greater than or equal to 1"),
    ("task envs", {**CPU, "task_count": 3, "task_environments": [{"A": "1"}]}, "task_count", "task_environments"),
    ("parallelism", {**CPU, "parallelism": 5, "max_parallelism": 2}, "parallelism", "exceeds max_parallelism 2"),
    ("per node", {**CPU, "cpu_milli": 2000, "tasks_per_node": 3}, "tasks_per_node", "exceed e2-standard-4 (4000)"),
    ("env name", {**CPU, "env": {"1X": "a"}}, "env", "not a valid environment variable name"),
    ("env reserved", {**CPU, "env": {"GPUB_BATCH_SIZE": "8"}}, "env", "batch_size field"),
    ("secret", {**CPU, "secrets": {"KEY": "projects/p/secrets"}}, "secrets", "Secret Manager secret id"),
    ("secret dup", {**CPU, "env": {"KEY": "x"}, "secrets": {"KEY": "key"}}, "secrets", "also set in env"),
    ("volume gs", {**CPU, "volumes": [{"remote_path": "gs://b/x", "mount_path": "/mnt"}]}, "volumes.0.remote_path", "no gs://"),
    ("volume mount", {**CPU, "volumes": [{"remote_path": "bkt", "mount_path": "mnt"}]}, "volumes.0.mount_path", "absolute path"),
    ("topic", {**CPU, "notifications": [{"topic": "projects/p/subs/x"}]}, "notifications.0.topic", "projects/<p>/topics/<t>"),
    ("notify state", {**CPU, "notifications": [{"topic": "jobs", "job_state": "FAILED"}]}, "notifications.0.job_state", "JOB_STATE_CHANGED"),
    ("task state", {**CPU, "notifications": [{"topic": "jobs", "type": "JOB_STATE_CHANGED", "task_state": "FAILED"}]}, "notifications.0.task_state", "TASK_STATE_CHANGED"),
    ("label", {**CPU, "labels": {"Team": "x"}}, "labels", "not a valid label"),
    ("region", {**CPU, "region": "europe"}, "region", "europe-west4"),
    ("zone", {**CPU, "region": "europe-west4", "zones": ["us-central1-a"]}, "zones", "not in region 'europe-west4'"),
    ("input format", {**CPU, "input_format": "xml"}, "input_format", "'csv', 'parquet', 'feather' or 'jsonl'"),
    ("failure budget", {**CPU, "failure_budget": 1.5}, "failure_budget", "less than or equal to 1"),
    ("files per task", {**CPU, "files_per_task": 0}, "files_per_task", "greater than or equal to 1"),
    ("handler", {**CPU, "handler": "module.function"}, "handler", "module:function"),
    ("extra", {**CPU, "gpu": 1}, "gpu", "Extra inputs are not permitted"),
    ("strict", {**CPU, "task_count": "3"}, "task_count", "valid integer"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "field", "text"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_validation_error_names_field(kwargs: dict[str, Any], field: str, text: str) -> None:
    err = error(**kwargs)
    assert err.field == field, str(err)
    assert text in err.message, str(err)
    assert str(err).startswith(f"{field}: ")
    assert "\n" not in one_line(err)


# What the model used to refuse and now leaves to guardrails (policies.guardrails): a job
# Batch accepts is a valid JobSpec.
OPINIONS: list[dict[str, Any]] = [
    {**L4, "boot_disk_gb": 50},  # GPUB_JOB_10
    {**CPU, "provisioning": "spot", "retry_on_preemption": False},  # GPUB_JOB_2
    {**CPU, "provisioning": "spot", "max_retry_count": 0},  # GPUB_JOB_2
    {**L4, "retry_on_preemption": False},
    {**CPU, "max_retry_count": 0, "retry_exit_codes": [4]},
    {**CPU, "machine_type": "n1-highmem-96"},  # not in the catalog: a warning, not a refusal
    {**CPU, "machine_type": None},  # Batch picks a machine from computeResource
]


@pytest.mark.parametrize("kwargs", OPINIONS)
def test_opinions_are_not_refusals(kwargs: dict[str, Any]) -> None:
    JobSpec(**kwargs)


def test_flex_start_and_reservation_are_typed() -> None:
    spec = JobSpec(**L4, provisioning="flex_start", reservation="NO_RESERVATION")
    # FLEX_START uses preemptible quota
    assert spec.peak_gpu_demand("prod") == GpuDemand("L4", 1, True)
    bound = JobSpec(**L4, provisioning="reservation_bound", reservation="r-l4")
    assert bound.peak_gpu_demand("prod") == GpuDemand("L4", 1, False)


def test_nested_model_errors_name_path() -> None:
    with pytest.raises(ValidationError) as info:
        GcsVolume(remote_path="gs://x", mount_path="/m")
    assert "remote_path" in one_line(info.value)
    with pytest.raises(ValidationError):
        Notification(topic="t" * 300)


def test_spec_is_frozen() -> None:
    spec = JobSpec(**CPU)
    with pytest.raises(ValidationError):
        spec.name = "other"  # type: ignore[misc]


def test_valid_shapes() -> None:
    JobSpec(**L4, gpus=GpuSpec(type="nvidia-l4", count=1, driver_version="550.54.15"))
    JobSpec(**{**CPU, "machine_type": "g2-standard-24"}, gpus=GpuSpec(type="nvidia-l4", count=2))
    JobSpec(**{**CPU, "machine_type": "a3-highgpu-8g"})
    JobSpec(
        **{**CPU, "machine_type": "n1-standard-8"}, gpus=GpuSpec(type="nvidia-tesla-v100", count=8)
    )
    JobSpec(**{**CPU, "image": None, "script": "echo hi"})
    JobSpec(**CPU, provisioning="spot")  # retries implied
    JobSpec(**L4, provisioning="standard", retry_on_preemption=False, max_retry_count=0)
    JobSpec(**{**CPU, "name": "a" * 38})  # the longest name (gpub_runner.contract.JOB_NAME_MAX)
    JobSpec(**{**CPU, "image": "images/uppercase@sha256:" + "a" * 64})


def test_provisioning_rule_and_peak_demand() -> None:
    embed = ALL_JOBS["embed"]
    assert embed.provisioning_for("dev") == "spot"
    assert embed.provisioning_for("prod") == "standard"
    assert ALL_JOBS["uppercase"].provisioning_for("dev") == "standard"
    assert embed.peak_gpu_demand("dev") == GpuDemand("L4", 4, True)
    assert embed.peak_gpu_demand("prod") == GpuDemand("L4", 4, False)
    assert ALL_JOBS["uppercase"].peak_gpu_demand("dev") is None
    packed = JobSpec(
        **{**CPU, "machine_type": "g2-standard-48"}, max_parallelism=8, tasks_per_node=4
    )
    assert packed.peak_gpu_demand() == GpuDemand("L4", 8, False)  # 2 VMs x 4 L4
    a100 = JobSpec(**{**CPU, "machine_type": "a2-highgpu-2g"}, parallelism=3)
    demand = a100.peak_gpu_demand("dev")
    assert demand is not None and (demand.family, demand.count, demand.spot) == ("A100", 6, True)


def test_retry_policy_follows_environment() -> None:
    embed = ALL_JOBS["embed"]
    assert embed.retry_policy_for("dev") == (3, [50001])
    assert embed.retry_policy_for("prod") == (None, [])


def test_catalog() -> None:
    g2 = get_machine("g2-standard-8")
    assert g2 is not None and (g2.gpu_type, g2.gpu_count) == ("nvidia-l4", 1)
    assert (g2.price_on_demand_usd_h, g2.price_spot_usd_h) == (0.8966, 0.3868)
    assert get_machine("n1-standard-4").memory_mib == 15360  # type: ignore[union-attr]
    assert get_machine("nope") is None
    assert gpu_family("nvidia-l4") == "L4"
    assert gpu_family("nvidia-tesla-t4") == "T4"
    assert gpu_family("nvidia-h100-80gb") == "H100"
    assert PRICE_SOURCE and PRICE_DATE
    required = ["e2-standard-2", "e2-standard-4", "e2-standard-8", "n1-standard-4"]
    required += [
        "n1-standard-8",
        "n1-standard-16",
        "n2-standard-4",
        "n2-standard-8",
        "a2-ultragpu-1g",
    ]
    required += [f"g2-standard-{n}" for n in (4, 8, 12, 16, 24, 32, 48, 96)]
    required += [f"a2-highgpu-{n}g" for n in (1, 2, 4, 8)] + [
        f"a3-highgpu-{n}g" for n in (1, 2, 4, 8)
    ]
    for name in required:
        machine = get_machine(name)
        assert machine is not None, name
        assert machine.price_on_demand_usd_h > (machine.price_spot_usd_h or 0), name


def test_a_capacity_ladder_and_candidate_regions_are_typed() -> None:
    from jobs.spec import Rung

    spec = JobSpec(
        **L4,
        region="us-central1",
        zones=["us-central1-a"],
        ladder=[
            Rung(provisioning="reservation_bound", reservation="r-l4", deadline_s=600),
            Rung(provisioning="flex_start", deadline_s=7200),
            Rung(provisioning="spot", deadline_s=1800),
            Rung(provisioning="standard"),
        ],
        candidate_regions=["us-central1", "europe-west4"],
    )
    assert [r.provisioning for r in spec.rungs_for("prod")][:2] == [
        "reservation_bound",
        "flex_start",
    ]
    flex = spec.on_rung(spec.ladder[1], "europe-west4")
    assert (flex.provisioning, flex.region, flex.zones) == ("flex_start", "europe-west4", [])
    assert flex.peak_gpu_demand("prod") == GpuDemand("L4", 1, True)  # preemptible quota
    # Without a ladder: one rung from the environment's rule.
    assert JobSpec(**L4).rungs_for("dev") == [Rung(provisioning="spot")]


@pytest.mark.parametrize(
    ("kwargs", "field", "text"),
    [
        ({"ladder": [{"provisioning": "spot"}, {"provisioning": "standard"}]}, "ladder", "needs a deadline_s"),
        ({"ladder": [{"provisioning": "reservation_bound"}]}, "ladder.0.reservation", "names its reservation"),
        ({"ladder": [{"provisioning": "spot", "deadline_s": 30}]}, "ladder.0.deadline_s", "greater than or equal to 60"),
        ({"region": "us-central1", "candidate_regions": ["europe-west4"]}, "candidate_regions", "first candidate"),
        ({"candidate_regions": ["eu", "eu"]}, "candidate_regions", "regions like"),
    ],
)  # fmt: skip
def test_ladder_errors_name_the_field(kwargs: dict[str, Any], field: str, text: str) -> None:
    err = error(**CPU, **kwargs)
    assert err.field == field, str(err)
    assert text in err.message


def test_the_model_imports_neither_the_renderer_nor_the_importer() -> None:
    """jobs/spec.py (and the modules it is made of) import neither jobs.render nor
    jobs.importer, not even inside a function; conversions are jobs.to_batch_json and
    jobs.from_batch_json."""
    import ast
    from pathlib import Path

    forbidden = {"jobs.render", "jobs.importer", "jobs.import_read", "policies.import_cli"}
    root = Path(__file__).resolve().parents[1] / "jobs"
    for module in ("spec.py", "spec_checks.py", "parts.py", "catalog.py"):
        tree = ast.parse((root / module).read_text())
        imported = {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        } | {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        assert not imported & forbidden, (module, imported & forbidden)
    assert not hasattr(JobSpec, "to_batch_json") and not hasattr(JobSpec, "from_batch_json")
