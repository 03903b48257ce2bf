"""The worst-case cost of one run of a Batch job JSON, or why it cannot be bounded (never a silent
"unknown": guardrails GPUB_JOB_7 / GPUB_JOB_20 and `bin/submit --max-cost` read this).

Each task attempt holds its VM for at most `maxRunDuration` (Batch itself stops a job after 14
days and sets no task timeout of its own, https://cloud.google.com/batch/docs/set-timeouts, so
an unset maxRunDuration counts as 14 days), and a task runs at most `maxRetryCount + 1` times
(https://cloud.google.com/batch/docs/automate-task-retries), so a run costs at most

    sum over task groups: tasks x (maxRetryCount + 1) x maxRunDuration[h] / taskCountPerNode
                          x the highest VM-hour price among its instance policies and regions

with tasks = len(taskEnvironments) or taskCount (taskEnvironments overrides taskCount). The
price is per machine type, region (`allowedLocations`, else the environment's region) and
provisioning model (`jobs/machines_prices.py`). Parallelism changes the wall time, not the
VM-hours. It cannot be bounded when a policy names no machine type (Batch picks one), an
instance template holds the machine type (submit does not read templates), or the catalog has
no price for the type in that region.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jobs.catalog import machine_shape
from jobs.cost import vm_hours_bound
from jobs.machines_prices import Price, gpu_price, price

BATCH_MAX_RUN_S = 14 * 24 * 3600
_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)s$")


def as_int(raw: Any, default: int | None = None) -> int | None:
    """int64 fields serialise as strings in Batch JSON."""
    if raw is None or raw == "" or isinstance(raw, bool):
        return default
    try:
        return int(raw)
    except (TypeError, ValueError):
        return default


def as_seconds(raw: Any) -> float | None:
    """"3600s" (or a number) -> 3600.0; None when unset or not a duration."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    m = _DURATION_RE.match(str(raw or ""))
    return float(m.group(1)) if m else None


@dataclass(frozen=True)
class CostBound:
    usd: float | None  # None: cannot be bounded, see `why`
    why: str  # the formula's figures, or the reason it cannot be bounded
    path: str = ""  # the JSON path of the reason when unbounded
    notes: tuple[str, ...] = field(default_factory=tuple)  # approximate or stale prices

    @property
    def bounded(self) -> bool:
        return self.usd is not None

    def describe(self) -> str:
        if self.usd is None:
            return f"cannot bound: {self.why}"
        amount = f"${self.usd:,.2f}" if self.usd >= 0.01 or self.usd == 0 else f"${self.usd:.4f}"
        return f"worst case {amount} ({self.why})"


def regions_of(job: Mapping[str, Any], default_region: str) -> list[str]:
    """The regions a job may run in: `regions/R` and `zones/R-x` of allowedLocations."""
    location = ((job.get("allocationPolicy") or {}).get("location") or {})
    found: list[str] = []
    for loc in location.get("allowedLocations") or []:
        kind, _, name = str(loc).partition("/")
        region = name if kind == "regions" else name.rsplit("-", 1)[0] if kind == "zones" else ""
        if region and region not in found:
            found.append(region)
    return found or [default_region]


def built_in_gpu(machine: str) -> bool:
    shape = machine_shape(machine)
    return shape is not None and shape.gpu_type is not None


def _highest_price(job: Mapping[str, Any], regions: list[str]) -> Price | CostBound:
    instances = (job.get("allocationPolicy") or {}).get("instances") or [{}]
    best: Price | None = None
    for ii, inst in enumerate(instances):
        base = f"allocationPolicy.instances[{ii}]"
        inst = inst if isinstance(inst, Mapping) else {}
        if inst.get("instanceTemplate"):
            return CostBound(None, f"the machine type is in instance template "
                             f"{inst['instanceTemplate']!r}, which submit does not read; set "
                             "policy.machineType instead", f"{base}.instanceTemplate")
        policy = inst.get("policy") or {}
        machine = str(policy.get("machineType") or "")
        if not machine:
            return CostBound(None, "no machine type (Batch picks one from computeResource); set "
                             "policy.machineType, e.g. e2-standard-4", f"{base}.policy.machineType")
        model = str(policy.get("provisioningModel") or "STANDARD")
        # Built-in GPUs (G2, A2, ...) are in the machine's price; attached ones (T4 on N1) not.
        accs = [] if built_in_gpu(machine) else [
            a for a in policy.get("accelerators") or [] if isinstance(a, Mapping)]
        for region in regions:
            found = price(machine, region, model)
            if found is None:
                return CostBound(None, f"the price catalog (jobs/machines.yaml) has no price for "
                                 f"{machine} in {region}; add it or run bin/refresh-prices",
                                 f"{base}.policy.machineType")
            for ai, acc in enumerate(accs):
                gpu, count = str(acc.get("type") or ""), as_int(acc.get("count"), 1) or 1
                each = gpu_price(gpu, region, model)
                if each is None:
                    return CostBound(None, f"the price catalog (jobs/machines.yaml) has no price "
                                     f"for the attached GPU {gpu} in {region}; add it under "
                                     "gpus", f"{base}.policy.accelerators[{ai}]")
                found = Price(found.usd_h + count * each, f"{found.basis} + {count} x {gpu}",
                              False, found.date)
            if best is None or found.usd_h > best.usd_h:
                best = found
    assert best is not None
    return best


def job_cost_bound(job: Mapping[str, Any], default_region: str) -> CostBound:
    """The worst-case cost of one run of `job` (see the module docstring)."""
    groups = [g for g in job.get("taskGroups") or [] if isinstance(g, Mapping)]
    if not groups:
        return CostBound(None, "the job has no task group", "taskGroups")
    best = _highest_price(job, regions_of(job, default_region))
    if isinstance(best, CostBound):
        return best
    total_h = 0.0
    parts: list[str] = []
    notes: list[str] = [] if best.exact else [f"{best.basis}: an approximate catalog price"]
    for gi, group in enumerate(groups):
        spec = group.get("taskSpec") or {}
        seconds = as_seconds(spec.get("maxRunDuration"))
        if seconds is None:
            seconds = float(BATCH_MAX_RUN_S)
            notes.append(f"taskGroups[{gi}] sets no maxRunDuration: Batch's 14-day limit counts")
        tasks = len(group.get("taskEnvironments") or []) or as_int(group.get("taskCount"), 1) or 1
        per_node = max(as_int(group.get("taskCountPerNode"), 1) or 1, 1)
        attempts = (as_int(spec.get("maxRetryCount"), 0) or 0) + 1
        total_h += vm_hours_bound(tasks * seconds, per_node, attempts)
        per = f" / {per_node} per VM" if per_node > 1 else ""
        span = f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min"
        parts.append(f"{tasks} tasks x {attempts} attempts x {span}{per}")
    why = (f"{' + '.join(parts)} at ${best.usd_h:.4f}/h, {best.basis}; catalog of {best.date}")
    return CostBound(total_h * best.usd_h, why, "", tuple(notes))
