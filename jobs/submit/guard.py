"""Run the environment's guardrails on the job about to be created.

`policies.guardrails.check_job` is the one implementation (CI runs it on synthesized jobs).
Until it is importable this module falls back to the few ceilings the submit path itself
must never cross, so a submit is never unguarded.
"""

from __future__ import annotations

from typing import Any


def violations(job_json: dict[str, Any], limits: Any, env_name: str) -> list[str]:
    try:
        from policies.guardrails import check_job
    except ImportError:
        return _fallback(job_json, limits)
    return [str(v) for v in check_job(job_json, limits, env_name=env_name)]


def _fallback(job: dict[str, Any], limits: Any) -> list[str]:
    out: list[str] = []
    group = job["taskGroups"][0]
    parallelism = int(group.get("parallelism") or 1)
    if parallelism > limits.max_parallelism:
        out.append(f"taskGroups[0].parallelism {parallelism} > max_parallelism "
                   f"{limits.max_parallelism}")
    run = str(group.get("taskSpec", {}).get("maxRunDuration", "0s")).removesuffix("s")
    if float(run or 0) > limits.max_run_duration_s:
        out.append(f"taskSpec.maxRunDuration {run}s > max_run_duration_s "
                   f"{limits.max_run_duration_s}")
    locations = job.get("allocationPolicy", {}).get("location", {}).get("allowedLocations", [])
    for loc in locations:
        region = loc.split("/", 1)[-1].rsplit("-", 1)[0] if loc.startswith("zones/") else \
            loc.split("/", 1)[-1]
        if region not in limits.allowed_regions:
            out.append(f"allocationPolicy.location {loc} is outside {limits.allowed_regions}")
    return out
