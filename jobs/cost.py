"""Cost estimate for one run of a job: wall time, VM-hours and dollars from catalog prices.

Model: items (input files) are split into tasks (`files_per_task` each, else one task per
parallel slot); tasks run `parallelism` at a time, `tasks_per_node` to a VM. Every VM pays
startup and image pull once, then runs its waves of tasks, and is billed for the whole wall
time (an upper bound when the last wave is partial). Preemptions are not modelled, so spot
figures are a lower bound.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict

from jobs.spec import JobSpec, Provisioning

DEFAULT_STARTUP_S = 60.0  # VM boot + Batch agent, typical for Batch
DEFAULT_IMAGE_PULL_S = 60.0  # a CUDA image of a few GB; ~10 s for a small CPU image


def vm_hours_bound(task_seconds: float, tasks_per_node: int = 1, attempts: int = 1) -> float:
    """Worst-case VM-hours of `task_seconds` of task time (summed over tasks), each task run
    `attempts` times, `tasks_per_node` tasks sharing a VM. The one billing model of the two
    worst-case bounds: the guardrail's (policies/guardrails.py, maxRunDuration x attempts) and
    the submit helper's (submit/costing.py, per-task bounds of one submission)."""
    return task_seconds * attempts / 3600.0 / max(1, tasks_per_node)


class RunEstimate(BaseModel):
    """The expected wall time and cost of one run (submit/costing.py bounds the worst case)."""

    model_config = ConfigDict(frozen=True)

    machine_type: str
    tasks: int
    parallelism: int
    vms: int
    wall_s: float  # whole job, first VM start to last task end
    vm_hours: float
    usd_on_demand: float
    usd_spot: float | None  # None: the catalog has no spot price
    provisioning: Provisioning
    usd: float  # the figure for `provisioning` (FLEX_START, reservations: on-demand, a bound)

    def summary(self) -> str:
        spot = f"${self.usd_spot:.4f}" if self.usd_spot is not None else "n/a"
        return (
            f"{self.tasks} tasks on {self.vms} x {self.machine_type}: wall {self.wall_s:.0f} s, "
            f"{self.vm_hours:.3f} VM-h, ${self.usd_on_demand:.4f} standard / {spot} spot"
        )


def estimate(
    spec: JobSpec,
    items: int,
    seconds_per_item: float,
    *,
    startup_s: float = DEFAULT_STARTUP_S,
    image_pull_s: float = DEFAULT_IMAGE_PULL_S,
    provisioning: Provisioning | None = None,
    files_per_task: int | None = None,
    parallelism: int | None = None,
) -> RunEstimate:
    """Expected wall time and dollars for `items` units of `seconds_per_item` each.

    `files_per_task` and `parallelism` default to the spec's (parallelism: `peak_parallelism`);
    `provisioning` defaults to the spec's explicit choice, else standard.
    """
    if items < 0 or seconds_per_item < 0:
        raise ValueError("items and seconds_per_item must be >= 0")
    per_task = files_per_task or spec.files_per_task
    slots = max(1, parallelism or spec.peak_parallelism)
    tasks = max(1, math.ceil(items / per_task)) if per_task else min(slots, max(1, items))
    slots = min(slots, tasks)
    per_node = spec.tasks_per_node or 1
    vms = math.ceil(slots / per_node)
    items_per_task = items / tasks
    waves = math.ceil(tasks / slots)
    overhead = startup_s + image_pull_s
    wall = overhead + waves * items_per_task * seconds_per_item
    # Batch keeps a job's VMs until its tasks are done: bill every VM for the whole wall time.
    vm_hours = vms * wall / 3600.0
    machine = spec.machine
    on_demand = vm_hours * machine.price_on_demand_usd_h
    spot = None if machine.price_spot_usd_h is None else vm_hours * machine.price_spot_usd_h
    chosen = provisioning or spec.provisioning or "standard"
    usd = vm_hours * machine.price_usd_h(chosen in ("spot", "preemptible"))
    return RunEstimate(
        machine_type=machine.name,
        tasks=tasks,
        parallelism=slots,
        vms=vms,
        wall_s=wall,
        vm_hours=vm_hours,
        usd_on_demand=on_demand,
        usd_spot=spot,
        provisioning=chosen,
        usd=usd,
    )

