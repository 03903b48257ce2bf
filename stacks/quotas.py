"""GPU quota preferences from declared demand.

Jobs add their peak demand (parallelism x GPUs per VM) per region, GPU family and provisioning
model; the environment asks Cloud Quotas for the sum. A preference only asks: Google may grant
less, which the submit planner copes with by capping parallelism.
"""

from __future__ import annotations

from dataclasses import dataclass

from constructs import Construct

from stacks.provider import CloudQuotasQuotaPreference, CloudQuotasQuotaPreferenceQuotaConfig
from stacks.settings import EnvironmentSettings

# Families with a quota id of their own; newer ones (H100, H200, B200) share one id with a
# gpu_family dimension.
_OWN_QUOTA_ID = {"L4", "T4", "V100", "P100", "P4", "A100", "A100-80GB"}
_FAMILY_DIMENSION = {"H100": "NVIDIA_H100", "H100-MEGA": "NVIDIA_H100_MEGA", "H200": "NVIDIA_H200"}


@dataclass(frozen=True)
class GpuDemand:
    region: str
    family: str  # quota family as in jobs.catalog.gpu_family: "L4", "A100", "H100"...
    spot: bool
    count: int


def quota_id_and_dimensions(demand: GpuDemand) -> tuple[str, dict[str, str]]:
    """Cloud Quotas id and dimensions for one kind of GPU demand."""
    prefix = "PREEMPTIBLE-" if demand.spot else ""
    dims = {"region": demand.region}
    if demand.family in _OWN_QUOTA_ID:
        return f"{prefix}NVIDIA-{demand.family}-GPUS-per-project-region", dims
    if demand.family in _FAMILY_DIMENSION:
        dims["gpu_family"] = _FAMILY_DIMENSION[demand.family]
        return f"{prefix}GPUS-PER-GPU-FAMILY-per-project-region", dims
    raise ValueError(f"gpu family {demand.family!r} has no known Cloud Quotas id")


class GpuQuotas(Construct):
    """One quota preference per (region, family, spot), updated as demand is added."""

    def __init__(self, scope: Construct, id_: str, settings: EnvironmentSettings, depends_on: list):
        super().__init__(scope, id_)
        self.settings = settings
        self._depends_on = depends_on
        self.totals: dict[tuple[str, str, bool], int] = {}
        self.preferences: dict[tuple[str, str, bool], CloudQuotasQuotaPreference] = {}
        self.reasons: dict[tuple[str, str, bool], list[str]] = {}

    def add_demand(self, demand: GpuDemand, reason: str) -> CloudQuotasQuotaPreference:
        key = (demand.region, demand.family, demand.spot)
        self.totals[key] = self.totals.get(key, 0) + demand.count
        total = self.totals[key]
        self.reasons.setdefault(key, []).append(reason)
        pref = self.preferences.get(key)
        if pref is None:
            quota_id, dims = quota_id_and_dimensions(demand)
            kind = "spot" if demand.spot else "standard"
            pref = CloudQuotasQuotaPreference(
                self,
                f"{demand.family.lower()}-{kind}-{demand.region}",
                parent=f"projects/{self.settings.project_id}",
                service="compute.googleapis.com",
                quota_id=quota_id,
                dimensions=dims,
                contact_email=self.settings.quota_contact_email,
                justification=self._justification(key),
                quota_config=CloudQuotasQuotaPreferenceQuotaConfig(preferred_value=str(total)),
                depends_on=self._depends_on,
            )
            self.preferences[key] = pref
        else:
            pref.put_quota_config(preferred_value=str(total))
            pref.justification = self._justification(key)
        return pref

    def _justification(self, key: tuple[str, str, bool]) -> str:
        region, family, spot = key
        kind = "spot" if spot else "standard"
        jobs = ", ".join(self.reasons[key])
        return (
            f"GPU batch platform ({self.settings.name}): peak {kind} {family} demand in {region} "
            f"of declared jobs ({jobs}) is {self.totals[key]} GPUs"
        )
