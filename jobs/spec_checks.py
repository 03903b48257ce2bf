"""Field checks of `JobSpec`: one function per field, called by the model's one field
validator (`FIELD_CHECKS`), and the name patterns they use.

Each takes the value and the fields validated before it, and returns the value or raises
ValueError with a message pydantic reports at the field's location.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from gpub_runner import contract

from jobs.catalog import MachineShape, gpu_fit_problem, machine_shape
from jobs.parts import (
    ENV_NAME_RE,
    IMAGE_REF_RE,
    IMAGE_URI_RE,
    LABEL_KEY_RE,
    LABEL_VALUE_RE,
    REGION_RE,
    RESERVATION_RE,
    SECRET_ID_RE,
    SECRET_NAME_RE,
    ZONE_RE,
    GpuSpec,
    Rung,
)

# A job's name becomes the head of its Batch job ids: the run-time contract says how much room
# the id suffixes of bin/submit and the workflow leave it.
JOB_ID_SUFFIX_LEN = contract.JOB_ID_MAX - contract.JOB_NAME_MAX
NAME_MAX = contract.JOB_NAME_MAX
NAME_RE = re.compile(rf"^[a-z]([a-z0-9-]{{0,{NAME_MAX - 2}}}[a-z0-9])?$")
HANDLER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$")
DISK_TYPE_RE = re.compile(r"^(pd|hyperdisk)-[a-z-]+$")
# Predefined ("g2-standard-8") and custom ("e2-custom-32-98304", "custom-8-30720") types.
MACHINE_TYPE_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)+$")

# Storage-execution settings become these static task variables (see docs/contracts.md).
STORAGE_VARIABLES: dict[str, str] = {
    "input_format": "GPUB_INPUT_FORMAT",
    "files_per_task": "GPUB_FILES_PER_TASK",
    "file_timeout_s": "GPUB_FILE_TIMEOUT_S",
    "failure_budget": "GPUB_FAILURE_BUDGET",
    "batch_size": "GPUB_BATCH_SIZE",
    "handler": "GPUB_HANDLER",
}


def check_name(v: str, data: dict[str, Any]) -> str:
    if not NAME_RE.match(v):
        raise ValueError(
            f"must be 1-{NAME_MAX} chars of lowercase letters, digits and hyphens, starting "
            f"with a letter and not ending with a hyphen (Batch job ids are "
            f"{contract.JOB_ID_MAX} chars and runs append up to {JOB_ID_SUFFIX_LEN}); got {v!r}"
        )
    return v


def check_image(v: str | None, data: dict[str, Any]) -> str | None:
    if v is None:
        return v
    if v.startswith("images/"):
        if not IMAGE_REF_RE.match(v):
            raise ValueError(
                f"must be 'images/<name>', 'images/<name>:<tag>' or "
                f"'images/<name>@sha256:<64 hex>'; got {v!r}"
            )
    elif not IMAGE_URI_RE.match(v):
        raise ValueError(f"must be 'images/<name>[:tag]' or a full image URI; got {v!r}")
    return v


def check_machine(v: str | None, data: dict[str, Any]) -> str | None:
    # Unknown types are allowed (Batch knows more than our catalog); guardrails warn.
    if v is not None and not MACHINE_TYPE_RE.match(v):
        raise ValueError(f"must be a machine type like 'n2-standard-8'; got {v!r}")
    return v


def check_gpus_fit_machine(v: GpuSpec | None, data: dict[str, Any]) -> GpuSpec | None:
    machine = _machine_of(data)
    problem = gpu_fit_problem(machine, v.type, v.count) if v and machine else None
    if problem:
        raise ValueError(problem)
    return v


def check_cpu_fits(v: int | None, data: dict[str, Any]) -> int | None:
    machine = _machine_of(data)
    if v is not None and machine is not None and v > machine.vcpus * 1000:
        raise ValueError(f"cpuMilli {v} exceeds {machine.name} ({machine.vcpus * 1000})")
    return v


def check_memory_fits(v: int | None, data: dict[str, Any]) -> int | None:
    machine = _machine_of(data)
    if v is not None and machine is not None and v > machine.memory_mib:
        raise ValueError(f"memoryMib {v} exceeds {machine.name} ({machine.memory_mib})")
    return v


def check_disk_type(v: str | None, data: dict[str, Any]) -> str | None:
    if v is not None and not DISK_TYPE_RE.match(v):
        raise ValueError(f"must be a disk type like 'pd-balanced' or 'pd-ssd'; got {v!r}")
    return v


def check_reservation(v: str | None, data: dict[str, Any]) -> str | None:
    if v is not None and not RESERVATION_RE.match(v):
        raise ValueError(
            "must be 'NO_RESERVATION', a reservation name, or "
            f"'projects/<p>/reservations/<name>'; got {v!r}"
        )
    return v


def check_region(v: str | None, data: dict[str, Any]) -> str | None:
    if v is not None and not REGION_RE.match(v):
        raise ValueError(f"must be a region like 'europe-west4'; got {v!r}")
    return v


def check_zones(v: list[str], data: dict[str, Any]) -> list[str]:
    region = data.get("region")
    for zone in v:
        m = ZONE_RE.match(zone)
        if not m:
            raise ValueError(f"must be zones like 'europe-west4-a'; got {zone!r}")
        if region and m.group(1) != region:
            raise ValueError(f"zone {zone!r} is not in region {region!r}")
    if len(set(v)) != len(v):
        raise ValueError(f"must not repeat a zone; got {v}")
    return v


def check_ladder(v: list[Rung], data: dict[str, Any]) -> list[Rung]:
    for i, rung in enumerate(v[:-1]):
        if rung.deadline_s is None:
            raise ValueError(
                f"rung {i} ({rung.provisioning}) needs a deadline_s: a later rung follows"
            )
    keys = [(r.provisioning, r.reservation) for r in v]
    if len(set(keys)) != len(keys):
        raise ValueError("must not repeat a rung")
    return v


def check_candidate_regions(v: list[str], data: dict[str, Any]) -> list[str]:
    for region in v:
        if not REGION_RE.match(region):
            raise ValueError(f"must be regions like 'europe-west4'; got {region!r}")
    if len(set(v)) != len(v):
        raise ValueError(f"must not repeat a region; got {v}")
    home = data.get("region")
    if v and home and v[0] != home:
        raise ValueError(f"the first candidate is the job's region {home!r}; got {v[0]!r}")
    return v


def check_exit_codes(v: list[int], data: dict[str, Any]) -> list[int]:
    if len(set(v)) != len(v):
        raise ValueError(f"must not repeat an exit code; got {v}")
    return v


def check_env_names(v: Any, data: dict[str, Any]) -> Any:
    envs = v if isinstance(v, list) else [v]
    for env in envs:
        for key in env:
            if not ENV_NAME_RE.match(key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
            if key in STORAGE_VARIABLES.values():
                field = next(f for f, var in STORAGE_VARIABLES.items() if var == key)
                raise ValueError(f"{key} is rendered from the {field} field; set that instead")
    return v


def check_secrets(v: dict[str, str], data: dict[str, Any]) -> dict[str, str]:
    for key, secret in v.items():
        if not ENV_NAME_RE.match(key):
            raise ValueError(f"{key!r} is not a valid environment variable name")
        if not (SECRET_ID_RE.match(secret) or SECRET_NAME_RE.match(secret)):
            raise ValueError(
                f"{key}: must be a Secret Manager secret id or "
                f"'projects/<p>/secrets/<id>/versions/<v>'; got {secret!r}"
            )
    return v


def check_labels(v: dict[str, str], data: dict[str, Any]) -> dict[str, str]:
    for key, value in v.items():
        if not LABEL_KEY_RE.match(key) or not LABEL_VALUE_RE.match(value):
            raise ValueError(
                f"{key}={value!r} is not a valid label (keys start with a lowercase letter; "
                "lowercase letters, digits, '_' and '-', at most 63 chars)"
            )
    return v


def check_handler(v: str | None, data: dict[str, Any]) -> str | None:
    if v is not None and not HANDLER_RE.match(v):
        raise ValueError(f"must be 'module:function'; got {v!r}")
    return v


def check_overrides_are_batch_json(v: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    if not v:
        return v
    from jobs.batch_proto import problems  # google-cloud-batch, only when used

    found = problems(v)
    if found:
        path, why = found[0]
        raise ValueError(f"{path}: {why} (batch_overrides is Batch job JSON)")
    return v


def _machine_of(data: dict[str, Any]) -> MachineShape | None:
    name = data.get("machine_type")
    return machine_shape(name) if isinstance(name, str) else None


FIELD_CHECKS: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
    "name": check_name,
    "image": check_image,
    "machine_type": check_machine,
    "gpus": check_gpus_fit_machine,
    "cpu_milli": check_cpu_fits,
    "memory_mib": check_memory_fits,
    "boot_disk_type": check_disk_type,
    "reservation": check_reservation,
    "region": check_region,
    "zones": check_zones,
    "ladder": check_ladder,
    "candidate_regions": check_candidate_regions,
    "retry_exit_codes": check_exit_codes,
    "env": check_env_names,
    "task_environments": check_env_names,
    "secrets": check_secrets,
    "labels": check_labels,
    "handler": check_handler,
    "batch_overrides": check_overrides_are_batch_json,
}
