"""The environment's job rules on the job about to be created (`policies.guardrails`, the same
checks CI runs on every synthesized job, now with the real task count filled in), split by
severity (policies/job_rules.py): errors refuse, warnings and info are printed."""

from __future__ import annotations

from typing import Any

from jobs.cost_bound import CostBound


def violations(job_json: dict[str, Any], limits: Any, env_name: str,
               region: str | None = None) -> list[str]:
    """The errors: what refuses the run."""
    from policies.guardrails import check_job

    return [str(v) for v in check_job(job_json, limits, env_name=env_name, region=region)
            if v.severity == "error"]


def findings(job_json: dict[str, Any], limits: Any, env_name: str,
             region: str | None = None) -> list[str]:
    """Warnings and info, as `warning: <rule> <path>: <message>` lines."""
    from policies.guardrails import check_job

    return [f"{v.severity}: {v}" for v in check_job(job_json, limits, env_name=env_name,
                                                     region=region)
            if v.severity != "error"]


def cost_bound(job_json: dict[str, Any], region: str) -> CostBound:
    """Every task using every retry for its whole maxRunDuration (GPUB_JOB_7), or why not."""
    from jobs.cost_bound import job_cost_bound

    return job_cost_bound(job_json, region)


def worst_case_usd(job_json: dict[str, Any], region: str = "europe-west4") -> float | None:
    return cost_bound(job_json, region).usd


def price_warnings(job_json: dict[str, Any], cost: CostBound) -> list[str]:
    """`note:` and `warning:` lines: approximate prices, Batch's 14-day limit standing in for
    maxRunDuration, and Spot prices older than Google's 30-day change window."""
    from jobs.machines_prices import SPOT_MODELS, spot_staleness

    models = {str((i.get("policy") or {}).get("provisioningModel") or "").upper()
              for i in (job_json.get("allocationPolicy") or {}).get("instances") or []
              if isinstance(i, dict)}
    stale = spot_staleness() if models & SPOT_MODELS else None
    return [*(f"note: {n}" for n in cost.notes), *([f"warning: {stale}"] if stale else [])]
