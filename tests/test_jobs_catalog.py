"""The machine catalog: every predefined shape of the Batch families, custom types, prices."""

from __future__ import annotations

import pytest

from jobs import GpuSpec, JobSpec
from jobs.catalog import _machines, machine_shape, shape_names
from policies.guardrails import GuardrailLimits, check_job


@pytest.mark.parametrize(
    ("name", "vcpus", "mib", "gpu"),
    [
        ("n1-standard-1", 1, 3840, None),
        ("n1-highmem-96", 96, 638976, None),
        ("n1-highcpu-2", 2, 1843, None),
        ("n2-standard-128", 128, 524288, None),
        ("n2d-standard-4", 4, 16384, None),
        ("n2d-highcpu-224", 224, 229376, None),
        ("e2-highmem-8", 8, 65536, None),
        ("e2-medium", 2, 4096, None),
        ("c2-standard-60", 60, 245760, None),
        ("c2d-highmem-112", 112, 917504, None),
        ("c3-highcpu-22", 22, 45056, None),
        ("c3d-standard-360", 360, 1474560, None),
        ("n4-highmem-80", 80, 655360, None),
        ("g2-standard-24", 24, 98304, ("nvidia-l4", 2)),
        ("a2-megagpu-16g", 96, 1392640, ("nvidia-tesla-a100", 16)),
        ("a2-ultragpu-8g", 96, 1392640, ("nvidia-a100-80gb", 8)),
        ("a3-megagpu-8g", 208, 1916928, ("nvidia-h100-mega-80gb", 8)),
        ("a3-ultragpu-8g", 224, 3022848, ("nvidia-h200-141gb", 8)),
        ("e2-custom-32-98304", 32, 98304, None),
        ("n2-custom-4-65536-ext", 4, 65536, None),
        ("custom-8-30720", 8, 30720, None),
    ],
)
def test_shapes(name: str, vcpus: int, mib: int, gpu: tuple[str, int] | None) -> None:
    shape = machine_shape(name)
    assert shape is not None
    assert (shape.vcpus, shape.memory_mib) == (vcpus, mib)
    assert (shape.gpu_type, shape.gpu_count) == (gpu or (None, 0))


def test_every_family_is_covered() -> None:
    series = {n.split("-", 1)[0] for n in shape_names()}
    assert series >= {
        "n1",
        "n2",
        "n2d",
        "e2",
        "c2",
        "c2d",
        "c3",
        "c3d",
        "n4",
        "g2",
        "a2",
        "a3",
        "t2d",
        "t2a",
        "m1",
        "m2",
    }
    assert len(shape_names()) > 200


def test_priced_machines_agree_with_the_family_rules() -> None:
    """machines.yaml repeats each priced machine's shape; it must match the family data."""
    from jobs.catalog import _shapes

    for name, priced in _machines().items():
        shape = _shapes()[name]
        assert (shape.vcpus, shape.memory_mib, shape.gpu_type, shape.gpu_count) == (
            priced.vcpus, priced.memory_mib, priced.gpu_type, priced.gpu_count,
        ), name  # fmt: skip


def test_unknown_and_malformed_custom_types() -> None:
    assert machine_shape("z9-standard-8") is None
    assert machine_shape("g2-custom-8-32768") is None  # G2 has no custom types
    assert machine_shape("n2-custom-8") is None


def test_shapes_validate_gpus_and_unknown_types_only_warn() -> None:
    # A shape without a price still checks what the machine carries (Batch would refuse it).
    with pytest.raises(ValueError, match="a3-megagpu-8g carries 8 nvidia-h100-mega-80gb"):
        JobSpec(name="x", image="i", machine_type="a3-megagpu-8g",
                gpus=GpuSpec(type="nvidia-h100-mega-80gb", count=4))  # fmt: skip
    with pytest.raises(ValueError, match="memoryMib 9000 exceeds e2-custom-2-8192"):
        JobSpec(name="x", image="i", machine_type="e2-custom-2-8192", memory_mib=9000)
    unknown = JobSpec(name="x", image="i", machine_type="z9-standard-8")
    job = {
        "taskGroups": [{"taskSpec": {"runnables": [{"script": {"text": "a"}}]}}],
        "allocationPolicy": {"instances": [{"policy": {"machineType": unknown.machine_type}}]},
    }
    [finding] = [
        v for v in check_job(job, GuardrailLimits(), env_name="dev") if v.rule_id == "GPUB_JOB_14"
    ]
    assert "z9-standard-8 is not a machine type the catalog knows" in finding.message
    assert finding.severity == "warning"  # Batch knows more types than the catalog


@pytest.mark.parametrize(
    ("name", "vcpus", "gib"),
    [("n2-highmem-128", 128, 864), ("t2d-standard-60", 60, 240), ("t2a-standard-48", 48, 192),
     ("m1-megamem-96", 96, 1433.6), ("m2-hypermem-416", 416, 8832)],
)  # fmt: skip
def test_shapes_outside_the_per_vcpu_rules(name: str, vcpus: int, gib: float) -> None:
    shape = machine_shape(name)
    assert shape is not None and (shape.vcpus, shape.memory_mib) == (vcpus, round(gib * 1024))
