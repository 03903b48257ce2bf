"""GPU quota preferences from declared demand.

Jobs add their peak demand (parallelism x GPUs per VM) per region, GPU family and provisioning
model; the environment asks Cloud Quotas for the sum. A preference only asks: Google may grant
less, which the submit planner copes with by capping parallelism.
"""

from __future__ import annotations

from constructs import Construct

from jobs import GpuDemand  # the one model of GPU demand (with its region here)
from stacks.provider import (
    CloudQuotasQuotaPreference,
    CloudQuotasQuotaPreferenceQuotaConfig,
    DataGoogleCloudQuotasQuotaInfo,
)
from stacks.settings import EnvironmentSettings

# Families with a quota id of their own; newer ones (H100, H200, B200) share one id with a
# gpu_family dimension.
_OWN_QUOTA_ID = {"L4", "T4", "V100", "P100", "P4", "A100", "A100-80GB"}
_FAMILY_DIMENSION = {"H100": "NVIDIA_H100", "H100-MEGA": "NVIDIA_H100_MEGA", "H200": "NVIDIA_H200"}


def quota_id_and_dimensions(demand: GpuDemand) -> tuple[str, dict[str, str]]:
    """Cloud Quotas id and dimensions for one kind of GPU demand."""
    if demand.region is None:
        raise ValueError(f"gpu demand {demand}: a quota preference needs the region")
    prefix = "PREEMPTIBLE-" if demand.spot else ""
    dims = {"region": demand.region}
    if demand.family in _OWN_QUOTA_ID:
        return f"{prefix}NVIDIA-{demand.family}-GPUS-per-project-region", dims
    if demand.family in _FAMILY_DIMENSION:
        dims["gpu_family"] = _FAMILY_DIMENSION[demand.family]
        return f"{prefix}GPUS-PER-GPU-FAMILY-per-project-region", dims
    raise ValueError(f"gpu family {demand.family!r} has no known Cloud Quotas id")


GLOBAL_GPU_QUOTA_ID = "GPUS-ALL-REGIONS-per-project"


def demand_with_ladders(settings: EnvironmentSettings) -> dict[tuple[str, str, bool], int]:
    """`settings.gpu_demand()` plus what the jobs' ladders may hold instead (docs/capacity.md): each
    rung in each candidate region that differs from the job's default (region, family,
    spot) adds the job's peak there. So a SPOT or FLEX_START rung asks for the preemptible GPU
    quota, a STANDARD rung for the on-demand one. Reservation rungs need no quota (their VMs
    were counted when the reservation was made)."""
    from jobs.catalog import gpu_family
    from jobs.spec import PREEMPTIBLE_QUOTA_MODELS

    totals = dict(settings.gpu_demand())
    for spec in settings.jobs:
        peak = spec.peak_gpu_demand(settings.kind)
        if peak is None or not (spec.ladder or spec.candidate_regions):
            continue
        home = (spec.region or settings.region, peak.family, peak.spot)
        regions = spec.candidate_regions or [home[0]]
        keys = {(region, gpu_family(spec.gpu_type or ""), rung.provisioning in
                 PREEMPTIBLE_QUOTA_MODELS)
                for rung in spec.rungs_for(settings.kind) for region in regions
                if rung.reservation in (None, "NO_RESERVATION")}
        for key in sorted(keys - {home}):
            totals[key] = max(totals.get(key, 0) + peak.count,
                              settings.guardrails.gpu_quota.get(key[1], 0))
    return totals


def preferred_value_expression(info: str, demand: int, dims: dict[str, str]) -> str:
    """`preferred_value` that never asks for less than the project has now.

    A preference is a target, not a floor: asking below the current value lowers the quota, or
    fails Cloud Quotas' safety checks (QUOTA_DECREASE_BELOW_USAGE, QUOTA_DECREASE_PERCENTAGE_
    TOO_HIGH, cloud.google.com/docs/quotas/reference/rest/v1/QuotaSafetyCheck). So Terraform
    reads the current value (`google_cloud_quotas_quota_info`) and asks for the larger of the
    two; -1 (unlimited) stays -1.
    """
    match = " && ".join(f'lookup(d.dimensions, "{k}", "") == "{v}"' for k, v in sorted(
        dims.items()))
    where = f" if {match}" if match else ""
    current = f"[for d in {info}.dimensions_infos : tonumber(d.details[0].value){where}]"
    return f"${{contains({current}, -1) ? -1 : max({demand}, {current}...)}}"


class GpuQuotas(Construct):
    """One quota preference per (region, family, spot) from `settings.gpu_demand()` (the one
    GPU-demand computation the guardrails and the submit planner also read), plus the global
    GPUS-ALL-REGIONS-per-project quota that every GPU VM also consumes."""

    def __init__(
        self, scope: Construct, id_: str, settings: EnvironmentSettings, depends_on: list
    ) -> None:
        super().__init__(scope, id_)
        self._depends_on = depends_on
        self._infos: dict[str, str] = {}
        self.preferences: dict[tuple[str, str, bool] | str, CloudQuotasQuotaPreference] = {}
        self.totals: dict[tuple[str, str, bool], int] = {}
        self.update(settings)

    def update(self, settings: EnvironmentSettings) -> None:
        """(Re)state the preferences for `settings` (called again when a job is added)."""
        self.settings = settings
        self.totals = demand_with_ladders(settings)
        wanted: dict[tuple[str, str, bool] | str, tuple[str, str, dict[str, str], int, str]] = {}
        for key, total in sorted(self.totals.items()):
            region, family, spot = key
            quota_id, dims = quota_id_and_dimensions(
                GpuDemand(region=region, family=family, spot=spot, count=total)
            )
            kind = "spot" if spot else "standard"
            wanted[key] = (f"{family.lower()}-{kind}-{region}", quota_id, dims, total,
                           f"peak {kind} {family} demand in {region} of declared jobs")
        if self.totals:
            wanted[GLOBAL_GPU_QUOTA_ID] = (
                "gpus-all-regions", GLOBAL_GPU_QUOTA_ID, {}, settings.gpus_all_regions(),
                "GPUs of all declared jobs at peak, all regions")
        for wanted_key, (id_, quota_id, dims, total, why) in wanted.items():
            pref = self.preferences.get(wanted_key)
            if pref is None:
                self.preferences[wanted_key] = self._preference(id_, quota_id, dims, total, why,
                                                         self._depends_on)
            else:
                info = self._infos[id_]
                pref.put_quota_config(preferred_value=preferred_value_expression(info, total,
                                                                                 dims))
                pref.justification = self._justification(why, total)

    @property
    def global_preference(self) -> CloudQuotasQuotaPreference | None:
        return self.preferences.get(GLOBAL_GPU_QUOTA_ID)

    def _justification(self, why: str, total: int) -> str:
        return f"GPU batch platform ({self.settings.name}): {why} is {total} GPUs"

    def _preference(
        self, id_: str, quota_id: str, dims: dict[str, str], total: int, why: str,
        depends_on: list,
    ) -> CloudQuotasQuotaPreference:
        parent = f"projects/{self.settings.project_id}"
        info = DataGoogleCloudQuotasQuotaInfo(
            self, f"{id_}-current", parent=parent, service="compute.googleapis.com",
            quota_id=quota_id, depends_on=depends_on,
        )
        info_ref = f"data.google_cloud_quotas_quota_info.{info.friendly_unique_id}"
        self._infos[id_] = info_ref
        return CloudQuotasQuotaPreference(
            self,
            id_,
            parent=parent,
            service="compute.googleapis.com",
            quota_id=quota_id,
            dimensions=dims or None,
            contact_email=self.settings.quota_contact_email,
            justification=self._justification(why, total),
            quota_config=CloudQuotasQuotaPreferenceQuotaConfig(
                preferred_value=preferred_value_expression(info_ref, total, dims)
            ),
            depends_on=depends_on,
        )
