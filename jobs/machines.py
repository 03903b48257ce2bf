"""Machine models: a Compute Engine machine type's shape, its price, attachable GPUs.

Plain models with no data loading, so the catalog (`jobs/catalog.py`) and the SKU price reader
(`jobs/sku_prices.py`) both build on them without importing each other.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class MachineShape(BaseModel):
    """A Compute Engine machine type's shape: what validation needs, no price."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    vcpus: int
    memory_mib: int
    gpu_type: str | None = None  # built-in accelerator, e.g. "nvidia-l4"
    gpu_count: int = 0

    @property
    def series(self) -> str:
        """Machine series ("g2", "n1", ...): GPUs attach by series ("custom-*" is N1)."""
        head = self.name.split("-", 1)[0]
        return "n1" if head == "custom" else head


class MachineType(MachineShape):
    """One priced Compute Engine machine type."""

    price_on_demand_usd_h: float
    price_spot_usd_h: float | None = None
    price_exact: bool = False  # False: approximate figure, re-check before budgeting
    regions: list[str]
    # region -> (on-demand, Spot or None): every region the catalog prices this type in.
    region_prices: dict[str, tuple[float, float | None]] = {}

    def price_usd_h(self, spot: bool) -> float:
        """USD per VM-hour: the spot price for spot VMs when the catalog has one, else on-demand
        (without a spot figure, budget at the on-demand price rather than guess)."""
        if spot and self.price_spot_usd_h is not None:
            return self.price_spot_usd_h
        return self.price_on_demand_usd_h


class AttachableGpu(BaseModel):
    """A GPU that attaches to machines of one series as a separate accelerator (T4 on n1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu_type: str
    series: str
    max_vcpus: dict[int, int]  # allowed GPU count -> the most vCPUs that count supports
