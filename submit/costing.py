"""What a planned run may cost on Google Batch (pure; prices from jobs/machines.yaml).

Without a throughput model the honest figure is an upper bound: each task runs at most
`min(maxRunDuration, files x GPUB_FILE_TIMEOUT_S)` on its VM, at the catalog price of the
job's machine and provisioning model. That bound is what `--max-cost` and the environment's
`max_cost_per_run_usd` are checked against, so a refusal never under-counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs.catalog import PRICE_DATE, get_machine
from jobs.cost import vm_hours_bound
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


def _duration_s(text: str | None, default: float) -> float:
    if not text:
        return default
    try:
        return float(str(text).removesuffix("s"))
    except ValueError:
        return default


def job_shape(job: dict[str, Any]) -> JobShape:
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
        spot=policy.get("provisioningModel") in ("SPOT", "PREEMPTIBLE"),
        gpu_type=gpu_type,
        gpus_per_vm=gpus,
        tasks_per_node=int(group.get("taskCountPerNode") or 1),
        max_run_duration_s=_duration_s(spec.get("maxRunDuration"), 7 * 24 * 3600.0),
        file_timeout_s=float(timeout) if timeout else None,
    )


def vm_price_per_hour(shape: JobShape) -> float:
    machine = get_machine(shape.machine_type)
    if machine is None:
        raise SubmitError(
            f"job JSON: machine type {shape.machine_type!r} is not in the price catalog "
            "(jobs/machines.yaml); cannot estimate the cost"
        )
    return machine.price_usd_h(shape.spot)
    # Attached GPUs (T4 on n1) are priced into the catalog's machine entry or not at all;
    # the catalog owner decides, this module never hard-codes a price.


def usd(amount: float) -> str:
    """Dollars for humans: cents, or four decimals for sub-cent local test runs."""
    return f"${amount:,.2f}" if amount >= 0.01 or amount == 0 else f"${amount:.4f}"


@dataclass(frozen=True)
class CostEstimate:
    usd: float  # upper bound
    vm_hours: float
    price_usd_h: float
    task_bound_s: float  # longest a task may run

    def describe(self, shape: JobShape, plan: Plan) -> str:
        model = "spot" if shape.spot else "on-demand"
        return (
            f"estimated cost: at most {usd(self.usd)} ({plan.task_count} tasks x <= "
            f"{self.task_bound_s / 60:.0f} min on {shape.machine_type} {model} at "
            f"${self.price_usd_h:.4f}/h; catalog prices of {PRICE_DATE})"
        )


def estimate(shape: JobShape, plan: Plan) -> CostEstimate:
    price = vm_price_per_hour(shape)
    total_s = 0.0
    longest = 0.0
    for index in range(plan.task_count):
        bound = shape.max_run_duration_s
        if shape.file_timeout_s is not None:
            bound = min(bound, plan.task_size(index) * shape.file_timeout_s)
        total_s += bound
        longest = max(longest, bound)
    vm_hours = vm_hours_bound(total_s, shape.tasks_per_node)
    return CostEstimate(vm_hours * price, vm_hours, price, longest)
