"""Quota preflight: which (rung, region) of a run's ladder its Compute Engine quota allows.

The values come from the Cloud Quotas API's QuotaInfo (`backend.quotas`), or from the local
simulation (LOCAL_BATCH_QUOTAS) through the same seam. A QuotaInfo holds one DimensionsInfo
per combination of dimensions; "If a dimension does not appear in the map of dimensions, the
dimensions info applies to all the dimension values except for those that have another
DimensionsInfo instance configured for the specific value", and -1 means unlimited
(https://cloud.google.com/docs/quotas/reference/rest/v1/projects.locations.services.quotaInfos).

A quota is a limit, not what is free: usage by other jobs is not in QuotaInfo, so a rung that
passes here may still wait for capacity (the ladder's deadlines cover that).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from jobs.catalog import get_machine, gpu_family

# The quota ids of Compute Engine GPUs (docs/capacity.md; the same rule as stacks/quotas.py,
# which submit cannot import: it loads the provider bindings; tests/test_capacity_quota.py
# checks that both agree). Families with an id of their own, and the newer ones that share
# one id with a gpu_family dimension.
_OWN_QUOTA_ID = {"L4", "T4", "V100", "P100", "P4", "A100", "A100-80GB"}
_FAMILY_DIMENSION = {"H100": "NVIDIA_H100", "H100-MEGA": "NVIDIA_H100_MEGA", "H200": "NVIDIA_H200"}
GLOBAL_GPU_QUOTA_ID = "GPUS-ALL-REGIONS-per-project"
# vCPUs per machine family (https://cloud.google.com/docs/quotas/terminology: "the quota
# CPUS-PER-VM-FAMILY-per-project-region defines the number of Compute Engine virtual CPUs
# (vCPUs) available to your project for a specific VM family in a particular region").
CPU_QUOTA_ID = "CPUS-PER-VM-FAMILY-per-project-region"
# Models that draw on preemptible GPU quota (FLEX_START too: docs/capacity.md).
PREEMPTIBLE_MODELS = ("spot", "preemptible", "flex_start")


class QuotaValue(NamedTuple):
    """One DimensionsInfo: `value` of `quota_id` where `dimensions` apply (-1: unlimited)."""

    quota_id: str
    dimensions: dict[str, str]
    value: int


@dataclass(frozen=True)
class QuotaNeed:
    quota_id: str
    dimensions: dict[str, str]
    amount: int
    what: str  # for people: "spot L4 GPUs"

    def where(self) -> str:
        return self.dimensions.get("region", "all regions")


def gpu_quota_id(family: str, preemptible: bool, region: str) -> tuple[str, dict[str, str]]:
    prefix = "PREEMPTIBLE-" if preemptible else ""
    dims = {"region": region}
    if family in _OWN_QUOTA_ID:
        return f"{prefix}NVIDIA-{family}-GPUS-per-project-region", dims
    if family in _FAMILY_DIMENSION:
        return f"{prefix}GPUS-PER-GPU-FAMILY-per-project-region", dims | {
            "gpu_family": _FAMILY_DIMENSION[family]}
    raise ValueError(f"gpu family {family!r} has no known Cloud Quotas id")


def needs(*, machine_type: str, gpu_type: str | None, gpus_per_vm: int, vms: int,
          provisioning: str, reservation: str | None, region: str) -> list[QuotaNeed]:
    """What one rung in one region needs at peak (`vms` VMs at once).

    A rung that consumes a named reservation needs no further quota: the reservation's VMs
    were counted against quota when it was created."""
    if reservation and reservation != "NO_RESERVATION":
        return []
    out: list[QuotaNeed] = []
    machine = get_machine(machine_type)
    if machine is not None:
        family = machine.series.upper()
        out.append(QuotaNeed(CPU_QUOTA_ID, {"region": region, "vm_family": family},
                             vms * machine.vcpus, f"{family} vCPUs"))
    if gpu_type and gpus_per_vm > 0:
        fam = gpu_family(gpu_type)
        pre = provisioning in PREEMPTIBLE_MODELS
        quota_id, dims = gpu_quota_id(fam, pre, region)
        kind = "preemptible " if pre else ""
        out.append(QuotaNeed(quota_id, dims, vms * gpus_per_vm, f"{kind}{fam} GPUs"))
        out.append(QuotaNeed(GLOBAL_GPU_QUOTA_ID, {}, vms * gpus_per_vm, "GPUs (all regions)"))
    return out


def peak_vms(parallelism: int, tasks_per_node: int) -> int:
    return math.ceil(parallelism / max(1, tasks_per_node))


def limit_for(need: QuotaNeed, values: Iterable[QuotaValue]) -> int | None:
    """The quota value that applies to `need`: the most specific DimensionsInfo whose
    dimensions all match; None when the quota is unknown (then it is not checked)."""
    best: QuotaValue | None = None
    for v in values:
        if v.quota_id != need.quota_id:
            continue
        if any(need.dimensions.get(k) != val for k, val in v.dimensions.items()):
            continue
        if best is None or len(v.dimensions) > len(best.dimensions):
            best = v
    return None if best is None else best.value


def shortfalls(wanted: list[QuotaNeed], values: list[QuotaValue]) -> list[str]:
    """One line per quota too small for `wanted` (empty: the quota allows the rung)."""
    out = []
    for need in wanted:
        limit = limit_for(need, values)
        if limit is None or limit < 0 or limit >= need.amount:
            continue
        out.append(f"{need.quota_id} in {need.where()} is {limit}, the run needs "
                   f"{need.amount} {need.what}")
    return out


def read_quota_values(client: Any, project: str, quota_ids: Iterable[str]) -> list[QuotaValue]:
    """QuotaInfo of each id (`client`: a cloudquotas_v1.CloudQuotasClient): GET
    projects/P/locations/global/services/compute.googleapis.com/quotaInfos/ID
    (https://cloud.google.com/docs/quotas/reference/rest/v1/projects.locations.services.quotaInfos/get).
    An id the project does not have (NotFound) is left out, so it is not checked."""
    from google.api_core import exceptions as gexc

    from submit.batch import api_errors

    out: list[QuotaValue] = []
    for quota_id in dict.fromkeys(quota_ids):
        name = (f"projects/{project}/locations/global/services/compute.googleapis.com/"
                f"quotaInfos/{quota_id}")
        with api_errors(f"Cloud Quotas {quota_id}"):
            try:
                info = client.get_quota_info(name=name, timeout=30.0)
            except gexc.NotFound:
                continue
        out += [QuotaValue(quota_id, dict(d.dimensions), int(d.details.value))
                for d in info.dimensions_infos]
    return out
