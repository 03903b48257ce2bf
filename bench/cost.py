"""The cost estimator on public figures, and what spot and file packing save.

1. Robotoff (Open Food Facts): 1000 products, ~90 s of processing, 205 s for the whole job on
   one g2-standard-8 at $0.8963/h -> about $0.05 on demand. We estimate the same run, then the
   same work on spot, and with one product per task (one VM start-up each) for comparison.
2. 10,000 files: one file per task (each task pays 60 s of VM start-up, as some peers do)
   against the planner's packing (`submit.planner.plan_tasks`, the job's files per task).

    .venv/bin/python -m bench.cost    # pure arithmetic, well under a second
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

from bench._common import emit, machine, say

if TYPE_CHECKING:
    from jobs.spec import JobSpec

ROBOTOFF = {"items": 1000, "processing_s": 90.0, "wall_s": 205.0, "usd_h": 0.8963, "usd": 0.05}
VM_STARTUP_S = 60.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=10_000, help="files in the packing comparison")
    p.add_argument("--quick", action="store_true", help="same as the default (it is instant)")
    a = p.parse_args(argv)
    from jobs.registry import ALL_JOBS

    t0 = time.perf_counter()
    m = machine()
    spec = ALL_JOBS["embed"]  # g2-standard-8, 1 x L4
    robotoff_as_run(spec, m)
    robotoff_packing(spec, m)
    files_packing(spec, a.files, m, t0)
    return 0


def robotoff_as_run(spec: JobSpec, m: dict[str, Any]) -> None:
    """Robotoff as it ran: one task, one VM; on demand and on spot."""
    from jobs.cost import estimate

    per_item, n = ROBOTOFF["processing_s"] / ROBOTOFF["items"], int(ROBOTOFF["items"])
    ran = estimate(spec, n, per_item, files_per_task=n, parallelism=1, provisioning="standard")
    spot = estimate(spec, n, per_item, files_per_task=n, parallelism=1, provisioning="spot")
    emit("cost", "robotoff_as_run", wall_s=round(ran.wall_s, 1),
         public_wall_s=ROBOTOFF["wall_s"], usd_on_demand=round(ran.usd_on_demand, 4),
         public_usd=ROBOTOFF["usd"], usd_spot=round(spot.usd_spot or 0, 4),
         spot_saving_pct=round(100 * (1 - (spot.usd_spot or 0) / ran.usd_on_demand), 1),
         catalog_usd_h=spec.machine.price_on_demand_usd_h, public_usd_h=ROBOTOFF["usd_h"], **m)
    say(f"Robotoff: estimate {ran.wall_s:.0f} s (public {ROBOTOFF['wall_s']:.0f} s), "
        f"${ran.usd_on_demand:.4f} on demand (public ~${ROBOTOFF['usd']}), "
        f"${spot.usd_spot:.4f} on spot")


def robotoff_packing(spec: JobSpec, m: dict[str, Any]) -> None:
    """The same 1000 products, one per task on one VM slot (every task pays a VM start-up),
    vs the planner's packing on spot."""
    from jobs.cost import estimate
    from submit.manifest import ObjectInfo
    from submit.planner import plan_tasks

    per_item, n = ROBOTOFF["processing_s"] / ROBOTOFF["items"], int(ROBOTOFF["items"])
    single = estimate(spec, n, per_item + VM_STARTUP_S, files_per_task=1, parallelism=1,
                      startup_s=0, image_pull_s=0, provisioning="standard")
    packed_plan = plan_tasks([ObjectInfo(f"p{i:04d}.jsonl", 1, "1") for i in range(n)],
                             files_per_task=spec.files_per_task,
                             parallelism_caps=[("job maximum", spec.max_parallelism)])
    packed = estimate(spec, n, per_item, files_per_task=packed_plan.files_per_task,
                      parallelism=packed_plan.parallelism, startup_s=VM_STARTUP_S,
                      provisioning="spot")
    emit("cost", "robotoff_packing", one_per_task_usd=round(single.usd, 4),
         one_per_task_wall_s=round(single.wall_s), planner_tasks=packed_plan.task_count,
         planner_parallelism=packed_plan.parallelism, planner_spot_usd=round(packed.usd, 4),
         planner_wall_s=round(packed.wall_s), saving_vs_one_per_task_pct=round(
             100 * (1 - packed.usd / single.usd), 1), **m)
    say(f"Robotoff one product per task: ${single.usd:.2f}, {single.wall_s / 3600:.1f} h; "
        f"planner ({packed_plan.task_count} tasks x {packed_plan.files_per_task} files, "
        f"{packed_plan.parallelism} VMs, spot): ${packed.usd:.4f}, {packed.wall_s:.0f} s")


def files_packing(spec: JobSpec, f: int, m: dict[str, Any], t0: float) -> None:
    """`f` files: one file per task (60 s start-up each) vs the planner's packing."""
    from jobs.cost import estimate
    from submit.manifest import ObjectInfo
    from submit.planner import plan_tasks

    per_item = ROBOTOFF["processing_s"] / ROBOTOFF["items"]
    objects = [ObjectInfo(f"f{i:05d}.jsonl", 10_000, "1") for i in range(f)]
    rows = []
    for label, fpt in (("one_file_per_task", 1), ("planner_packing", spec.files_per_task)):
        plan = plan_tasks(objects, files_per_task=fpt,
                          parallelism_caps=[("job maximum", spec.max_parallelism)])
        # Per-task start-up: the overhead is paid by every task, so fold it into task time.
        tasks_overhead = VM_STARTUP_S / (plan.files_per_task or 1)
        est = estimate(spec, f, per_item + tasks_overhead, files_per_task=plan.files_per_task,
                       parallelism=plan.parallelism, startup_s=0, image_pull_s=0,
                       provisioning="standard")
        overhead_h = plan.task_count * VM_STARTUP_S / 3600
        rows.append((label, plan.task_count, est))
        emit("cost", f"files_{f}_{label}", files=f, tasks=plan.task_count,
             parallelism=plan.parallelism, wall_s=round(est.wall_s),
             vm_hours=round(est.vm_hours, 3),
             startup_vm_hours=round(overhead_h, 3), usd_on_demand=round(est.usd_on_demand, 3),
             usd_spot=round(est.usd_spot or 0, 3), **m)
        say(f"{f} files, {label}: {plan.task_count} tasks on {plan.parallelism} VMs, wall "
            f"{est.wall_s / 3600:.2f} h, {est.vm_hours:.2f} VM-h ({overhead_h:.2f} of start-up), "
            f"${est.usd_on_demand:.2f} on demand / ${est.usd_spot:.2f} spot")
    one, packed10 = rows[0][2], rows[1][2]
    emit("cost", f"files_{f}_ratio", cost_ratio_one_per_task_vs_packing=round(
        one.usd_on_demand / packed10.usd_on_demand, 2), wall_ratio=round(
        one.wall_s / packed10.wall_s, 2), seconds=round(time.perf_counter() - t0, 3))
    say(f"one file per task costs x{one.usd_on_demand / packed10.usd_on_demand:.1f} the "
        f"planner's packing and takes x{one.wall_s / packed10.wall_s:.1f} as long")


if __name__ == "__main__":
    sys.exit(main())
