"""Cost estimates against the public Robotoff figure and basic scaling."""

from __future__ import annotations

import pytest

from jobs import JobSpec
from jobs.cost import estimate
from jobs.registry import ALL_JOBS


def test_robotoff_1000_products_on_g2_standard_8() -> None:
    # Robotoff: 1000 products, ~90 s of processing, 205 s for the whole job on one
    # g2-standard-8 at $0.8963/h -> about $0.05.
    est = estimate(ALL_JOBS["embed"], 1000, 0.09, files_per_task=1000, parallelism=1,
                   provisioning="standard")  # fmt: skip
    assert est.tasks == 1 and est.vms == 1
    assert est.wall_s == pytest.approx(205, rel=0.1)
    assert est.usd_on_demand == pytest.approx(0.05, rel=0.15)
    assert est.usd == est.usd_on_demand
    assert est.usd_spot is not None and est.usd_spot < est.usd_on_demand
    assert "g2-standard-8" in est.summary()


def test_parallel_runs_cost_overhead_per_vm_and_finish_sooner() -> None:
    spec = JobSpec(name="cpu", image="images/uppercase", machine_type="e2-standard-2",
                   files_per_task=10, max_parallelism=10)  # fmt: skip
    one = estimate(spec, 1000, 1.0, parallelism=1)
    ten = estimate(spec, 1000, 1.0)
    assert (one.tasks, ten.tasks, ten.parallelism, ten.vms) == (100, 100, 10, 10)
    assert ten.wall_s < one.wall_s
    assert ten.vm_hours > one.vm_hours * 0.99  # same work plus overhead on more VMs
    spot = estimate(spec, 1000, 1.0, provisioning="spot")
    assert spot.usd == spot.usd_spot


def test_rejects_negative_input() -> None:
    with pytest.raises(ValueError):
        estimate(ALL_JOBS["uppercase"], -1, 1.0)


def test_one_worst_case_billing_model() -> None:
    """The guardrail's and the submit helper's worst-case bounds share one formula:
    task-seconds x attempts, tasks sharing a VM split its hours."""
    import inspect

    from jobs.cost import vm_hours_bound
    from policies import guardrails
    from submit import costing

    assert vm_hours_bound(7200) == 2.0
    assert vm_hours_bound(7200, tasks_per_node=4, attempts=3) == pytest.approx(1.5)
    assert vm_hours_bound(3600, tasks_per_node=0) == 1.0  # never divides by zero
    from jobs import cost_bound

    # The guardrail bounds through jobs.cost_bound, which (like the submit estimate) calls it.
    for module in (cost_bound, costing):
        assert "vm_hours_bound(" in inspect.getsource(module)
    assert "job_cost_bound(" in inspect.getsource(guardrails)
