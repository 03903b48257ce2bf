"""What a planned run may cost on Google Batch (pure; prices from jobs/machines.yaml).

Without a throughput model the honest figure is an upper bound: each task runs at most
`min(maxRunDuration, files x GPUB_FILE_TIMEOUT_S)` on its VM, at the catalog price of the
job's machine and provisioning model. That bound is what `--max-cost` and the environment's
`max_cost_per_run_usd` are checked against, so a refusal never under-counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs.catalog import get_machine
from jobs.cost import vm_hours_bound
from jobs.cost_bound import regions_of
from jobs.machines_prices import SPOT_MODELS, Price, price
from submit.errors import SubmitError
from submit.planner import Plan


@dataclass(frozen=True)
class JobShape:
    """The facts about a job's VMs that price and parallelism depend on (from the job JSON)."""

    machine_type: str
    spot: bool
    gpu_type: str | None
    gpus_per_vm: int
    tasks_per_node: int
    max_run_duration_s: float
    file_timeout_s: float | None
    provisioning: str = "STANDARD"  # the job's provisioningModel (FLEX_START, ...)
    region: str = "europe-west4"  # the first of its allowedLocations, else the environment's


def _duration_s(text: str | None, default: float) -> float:
    if not text:
        return default
    try:
        return float(str(text).removesuffix("s"))
    except ValueError:
        return default


def job_shape(job: dict[str, Any], default_region: str = "europe-west4") -> JobShape:
    group = job["taskGroups"][0]
    spec = group.get("taskSpec", {})
    instances = job.get("allocationPolicy", {}).get("instances") or [{}]
    policy = instances[0].get("policy", {})
    machine_type = policy.get("machineType")
    if not machine_type:
        raise SubmitError("job JSON: allocationPolicy.instances[0].policy.machineType is missing")
    machine = get_machine(machine_type)
    accels = policy.get("accelerators") or []
    if accels:
        gpu_type: str | None = accels[0].get("type")
        gpus = sum(int(a.get("count", 0)) for a in accels)
    else:
        gpu_type = machine.gpu_type if machine else None
        gpus = machine.gpu_count if machine else 0
    timeout = spec.get("environment", {}).get("variables", {}).get("GPUB_FILE_TIMEOUT_S")
    return JobShape(
        machine_type=machine_type,
        spot=policy.get("provisioningModel") in SPOT_MODELS,
        gpu_type=gpu_type,
        gpus_per_vm=gpus,
        tasks_per_node=int(group.get("taskCountPerNode") or 1),
        max_run_duration_s=_duration_s(spec.get("maxRunDuration"), 7 * 24 * 3600.0),
        file_timeout_s=float(timeout) if timeout else None,
        provisioning=str(policy.get("provisioningModel") or "STANDARD"),
        region=regions_of(job, default_region)[0],
    )


def vm_price(shape: JobShape) -> Price:
    """The VM-hour price of `shape` in its region and provisioning model (jobs/machines_prices)."""
    model = "SPOT" if shape.spot else (
        "STANDARD" if shape.provisioning in SPOT_MODELS else shape.provisioning)
    found = price(shape.machine_type, shape.region, model)
    if found is None:
        known = "" if get_machine(shape.machine_type) else " (not priced at all)"
        raise SubmitError(
            f"job JSON: cannot bound: the price catalog (jobs/machines.yaml) has no price for "
            f"{shape.machine_type} in {shape.region}{known}; add it or run bin/refresh-prices")
    return found


def vm_price_per_hour(shape: JobShape) -> float:
    return vm_price(shape).usd_h


def usd(amount: float) -> str:
    """Dollars for humans: cents, or four decimals for sub-cent local test runs."""
    return f"${amount:,.2f}" if amount >= 0.01 or amount == 0 else f"${amount:.4f}"


@dataclass(frozen=True)
class CostEstimate:
    usd: float  # upper bound
    vm_hours: float
    price_usd_h: float
    task_bound_s: float  # longest a task may run
    basis: str = ""  # "g2-standard-8 in europe-west4, Spot"
    price_date: str = ""

    def describe(self, shape: JobShape, plan: Plan) -> str:
        del shape  # the basis names machine, region and provisioning model
        return (
            f"estimated cost: at most {usd(self.usd)} ({plan.task_count} tasks x <= "
            f"{self.task_bound_s / 60:.0f} min at ${self.price_usd_h:.4f}/h, {self.basis}; "
            f"catalog prices of {self.price_date})"
        )


def estimate(shape: JobShape, plan: Plan) -> CostEstimate:
    found = vm_price(shape)
    price = found.usd_h
    total_s = 0.0
    longest = 0.0
    for index in range(plan.task_count):
        bound = shape.max_run_duration_s
        if shape.file_timeout_s is not None:
            bound = min(bound, plan.task_size(index) * shape.file_timeout_s)
        total_s += bound
        longest = max(longest, bound)
    vm_hours = vm_hours_bound(total_s, shape.tasks_per_node)
    return CostEstimate(vm_hours * price, vm_hours, price, longest, found.basis, found.date)
