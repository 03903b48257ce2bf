"""The environment's guardrails on the job about to be created (`policies.guardrails`, the
same checks CI runs on every synthesized job, now with the real task count filled in)."""

from __future__ import annotations

from typing import Any


def violations(job_json: dict[str, Any], limits: Any, env_name: str) -> list[str]:
    from policies.guardrails import check_job

    return [str(v) for v in check_job(job_json, limits, env_name=env_name)]


def worst_case_usd(job_json: dict[str, Any]) -> float | None:
    """Every task using every retry for its whole maxRunDuration (guardrail GPUB_JOB_7)."""
    from policies.guardrails import run_cost_bound_usd

    return run_cost_bound_usd(job_json)
