"""THE GPU-demand computation of an environment: what its quota preferences ask for
(stacks/quotas.py), what the submit planner caps parallelism by (`gpu_limit`) and the
project-wide total, all read `EnvironmentSettings.gpu_demand()`, which is this function.

(region, GPU family, spot) -> GPUs: each job's peak demand (parallelism x GPUs per VM) in its
region under its provisioning model, plus what its capacity ladder may hold instead: each rung
in each candidate region that differs from the job's default adds the job's peak there (a
SPOT or FLEX_START rung asks for the preemptible GPU quota, a STANDARD rung for the on-demand
one; reservation rungs need no quota, their VMs were counted when the reservation was made);
every total is raised to the guardrail's `gpu_quota` for the family.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from jobs.spec import EnvKind, JobSpec

Key = tuple[str, str, bool]


class _Guardrails(Protocol):
    @property
    def gpu_quota(self) -> Mapping[str, int]: ...


class _Environment(Protocol):
    """What the computation reads of `stacks.settings.EnvironmentSettings` (no import: the
    settings call this module)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> EnvKind: ...
    @property
    def region(self) -> str: ...
    @property
    def jobs(self) -> Sequence[JobSpec]: ...
    @property
    def guardrails(self) -> _Guardrails: ...


def environment_demand(settings: _Environment, *, ladders: bool = True
                       ) -> dict[Key, int]:
    """The demand; `ladders=False`: each job at its default rung only (a job holds one rung at
    a time, so the project-wide GPUS-ALL-REGIONS total counts each job once)."""
    from jobs.catalog import gpu_family
    from jobs.spec import PREEMPTIBLE_QUOTA_MODELS

    floor = settings.guardrails.gpu_quota
    totals: dict[Key, int] = {}
    for spec in settings.jobs:
        peak = spec.peak_gpu_demand(settings.kind)
        if peak is None:
            continue
        home = (spec.region or settings.region, peak.family, peak.spot)
        totals[home] = totals.get(home, 0) + peak.count
        if not ladders or not (spec.ladder or spec.candidate_regions):
            continue
        regions = spec.candidate_regions or [home[0]]
        keys = {(region, gpu_family(spec.gpu_type or ""),
                 rung.provisioning in PREEMPTIBLE_QUOTA_MODELS)
                for rung in spec.rungs_for(settings.kind) for region in regions
                if rung.reservation in (None, "NO_RESERVATION")}
        for key in sorted(keys - {home}):
            totals[key] = totals.get(key, 0) + peak.count
    return {key: max(count, floor.get(key[1], 0)) for key, count in totals.items()}
