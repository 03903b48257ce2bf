"""Simulated GPU capacity and quota for the local Batch server (docs/capacity.md).

Read once from the server's environment, like LOCAL_BATCH_PREEMPT_RATE (docs/capacity.md):

- LOCAL_BATCH_STOCKOUT="europe-west4/spot,us-central1/*": REGION/MODEL pairs (`*` matches
  any) where no VM ever comes: the job stays QUEUED with a capacity status event, as a Batch
  job does until its 2-day queue limit (https://cloud.google.com/batch/quotas).
- LOCAL_BATCH_STOCKOUT_FAIL="europe-west4/spot": the same, but the job FAILS at once with
  the capacity status event (VM creation refused) instead of waiting.
- LOCAL_BATCH_TIME_TO_CAPACITY="europe-west4/flex_start=5": seconds a job waits QUEUED
  before its first VM (FLEX_START waits for capacity; a stockout that clears).
- LOCAL_BATCH_GPUS="europe-west4/spot=2": GPUs free per REGION/MODEL. A VM that needs more
  never comes; parallelism is capped at what fits.
- LOCAL_BATCH_QUOTAS="europe-west4/NVIDIA-L4-GPUS-per-project-region=0,
  global/GPUS-ALL-REGIONS-per-project=16,us-east5/GPUS-PER-GPU-FAMILY-per-project-region:NVIDIA_H100=8":
  Cloud Quotas values (LOCATION/QUOTA_ID[:DIMENSION_VALUE]=VALUE) that `bin/submit --local`
  reads through the same Backend seam as the Cloud Quotas API. Unset quotas are unlimited.

The server writes the parsed configuration to `<root>/capacity.json`, which is what the
submit side's local backend reads (the server and `bin/submit` are separate processes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.cloud.batch_v1 import Job

CAPACITY_FILE = "capacity.json"
# A dimension value after ':' names the quota's service dimension (gpu_family, vm_family).
_DIMENSION_OF = {"GPUS-PER-GPU-FAMILY-per-project-region": "gpu_family",
                 "PREEMPTIBLE-GPUS-PER-GPU-FAMILY-per-project-region": "gpu_family",
                 "CPUS-PER-VM-FAMILY-per-project-region": "vm_family"}
# Modeled on Compute Engine's stockout error (https://cloud.google.com/compute/docs/resource-error),
# which Batch passes on in its status events; bin/submit looks for the code.
STOCKOUT_CODE = "ZONE_RESOURCE_POOL_EXHAUSTED"


class CapacityConfigError(ValueError):
    """A LOCAL_BATCH_* capacity variable that cannot be parsed (names the variable)."""


def _pairs(name: str, text: str | None) -> list[tuple[str, str]]:
    """`a=b,c=d` (or bare `a,c`, value "") -> [(a, b), (c, d)]."""
    out: list[tuple[str, str]] = []
    for item in (text or "").replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        key, _, value = item.partition("=")
        if "/" not in key:
            raise CapacityConfigError(f"{name}: {item!r} must look like REGION/WHAT[=VALUE]")
        out.append((key.strip(), value.strip()))
    return out


def _number(name: str, item: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise CapacityConfigError(f"{name}: {item}={value!r} must be a number") from None


@dataclass(frozen=True)
class QuotaValue:
    """One DimensionsInfo of a QuotaInfo: the value of `quota_id` where `dimensions` apply
    (https://cloud.google.com/docs/quotas/reference/rest/v1/projects.locations.services.quotaInfos)."""

    quota_id: str
    dimensions: dict[str, str]
    value: int  # -1: unlimited

    def to_json(self) -> dict[str, Any]:
        return {"quota_id": self.quota_id, "dimensions": self.dimensions, "value": self.value}


@dataclass(frozen=True)
class CapacityConfig:
    stockouts: tuple[tuple[str, str], ...] = ()  # (region | "*", model | "*")
    time_to_capacity: dict[str, float] = field(default_factory=dict)  # "region/model" -> s
    gpus: dict[str, int] = field(default_factory=dict)  # "region/model" -> GPUs free
    quotas: tuple[QuotaValue, ...] = ()
    failing: tuple[tuple[str, str], ...] = ()  # stockouts that fail the job at once

    @classmethod
    def from_env(cls, env: dict[str, str]) -> CapacityConfig:
        def places(name: str) -> tuple[tuple[str, str], ...]:
            return tuple((k.split("/", 1)[0].lower(), k.split("/", 1)[1].lower())
                         for k, _ in _pairs(name, env.get(name)))

        stock = places("LOCAL_BATCH_STOCKOUT")
        failing = places("LOCAL_BATCH_STOCKOUT_FAIL")
        ttc = {k.lower(): _number("LOCAL_BATCH_TIME_TO_CAPACITY", k, v) for k, v in
               _pairs("LOCAL_BATCH_TIME_TO_CAPACITY", env.get("LOCAL_BATCH_TIME_TO_CAPACITY"))}
        gpus = {k.lower(): int(_number("LOCAL_BATCH_GPUS", k, v))
                for k, v in _pairs("LOCAL_BATCH_GPUS", env.get("LOCAL_BATCH_GPUS"))}
        quotas = []
        for key, value in _pairs("LOCAL_BATCH_QUOTAS", env.get("LOCAL_BATCH_QUOTAS")):
            location, _, rest = key.partition("/")
            quota_id, _, dim_value = rest.partition(":")
            dims = {} if location == "global" else {"region": location}
            if dim_value:
                dims[_DIMENSION_OF.get(quota_id, "gpu_family")] = dim_value
            quotas.append(QuotaValue(quota_id, dims,
                                     int(_number("LOCAL_BATCH_QUOTAS", key, value))))
        return cls(stock, ttc, gpus, tuple(quotas), failing)

    # ---- persistence (server -> submit) -----------------------------------------------------
    def write(self, root: Path) -> None:
        data = {"stockouts": [list(s) for s in self.stockouts],
                "failing": [list(s) for s in self.failing],
                "time_to_capacity": self.time_to_capacity, "gpus": self.gpus,
                "quotas": [q.to_json() for q in self.quotas]}
        (root / CAPACITY_FILE).write_text(json.dumps(data, indent=1), encoding="utf-8")

    @classmethod
    def read(cls, root: Path) -> CapacityConfig:
        path = root / CAPACITY_FILE
        if not path.is_file():
            return cls()
        d = json.loads(path.read_text(encoding="utf-8"))
        return cls(tuple((a, b) for a, b in d["stockouts"]), dict(d["time_to_capacity"]),
                   dict(d["gpus"]), tuple(QuotaValue(**q) for q in d["quotas"]),
                   tuple((a, b) for a, b in d.get("failing", [])))

    # ---- the simulation -------------------------------------------------------------------
    def _lookup(self, table: dict[str, Any], region: str, model: str) -> Any:
        for key in (f"{region}/{model}", f"{region}/*", f"*/{model}", "*/*"):
            if key in table:
                return table[key]
        return None

    def admission(self, region: str, model: str, gpus_per_vm: int
                  ) -> tuple[float | None, str]:
        """(seconds until the first VM, None: never; why) for a job in `region` on `model`."""
        if self.fails(region, model):
            return None, f"{model.upper()} stockout in {region} (LOCAL_BATCH_STOCKOUT_FAIL)"
        for r, m in self.stockouts:
            if r in ("*", region) and m in ("*", model):
                return None, f"{model.upper()} stockout in {region} (LOCAL_BATCH_STOCKOUT)"
        free = self._lookup(self.gpus, region, model)
        if gpus_per_vm and free is not None and free < gpus_per_vm:
            return None, (f"{free} {model.upper()} GPUs free in {region}, a VM needs "
                          f"{gpus_per_vm} (LOCAL_BATCH_GPUS)")
        wait = self._lookup(self.time_to_capacity, region, model)
        return float(wait or 0.0), (
            f"capacity in {wait:g}s (LOCAL_BATCH_TIME_TO_CAPACITY)" if wait else "")

    def fails(self, region: str, model: str) -> bool:
        """Whether a job with no VM here fails at once (else it waits QUEUED)."""
        return any(r in ("*", region) and m in ("*", model) for r, m in self.failing)

    def max_vms(self, region: str, model: str, gpus_per_vm: int) -> int | None:
        free = self._lookup(self.gpus, region, model)
        if not gpus_per_vm or free is None:
            return None
        return max(1, free // gpus_per_vm)


def job_placement(job: Job, parent_region: str) -> tuple[str, str, int]:
    """(region, provisioning model lower-case, GPUs per VM) of a Batch job."""
    region = parent_region
    for loc in job.allocation_policy.location.allowed_locations:
        if loc.startswith("regions/"):
            region = loc.split("/", 1)[1]
            break
        if loc.startswith("zones/"):
            region = loc.split("/", 1)[1].rsplit("-", 1)[0]
            break
    model, gpus = "standard", 0
    if job.allocation_policy.instances:
        policy = job.allocation_policy.instances[0].policy
        name = policy.provisioning_model.name
        if name and name != "PROVISIONING_MODEL_UNSPECIFIED":
            model = name.lower()
        gpus = sum(int(a.count) for a in policy.accelerators)
    return region, model, gpus


def stockout_event(region: str, why: str) -> str:
    """The job status event of a job that has no VM yet."""
    return (f"Batch Error: code - CODE_GCE_{STOCKOUT_CODE}, description - no VM yet: the "
            f"region '{region}' does not have enough resources available to fulfill the "
            f"request ({why}).")
