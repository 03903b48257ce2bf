"""Machine prices from a Cloud Billing Catalog SKU snapshot (no price written by hand).

A snapshot is the Compute Engine SKU list of the Cloud Billing Catalog API
(`GET https://cloudbilling.googleapis.com/v1/services/6F81-5844-456A/skus`, see
https://cloud.google.com/billing/v1/how-tos/catalog-api), filtered to the SKUs a machine price
is made of, saved with its date by `bin/refresh-prices` (it needs an API key or credentials,
so it never runs in CI). A machine's hourly price is vCPUs x the series' core SKU + GiB x its
RAM SKU + built-in GPUs x the GPU SKU, for one region, on-demand (`OnDemand`) or Spot
(`Preemptible`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from jobs.machines import MachineShape

SNAPSHOT = Path(__file__).with_name("prices") / "compute_skus.json"
COMPUTE_SERVICE = "services/6F81-5844-456A"  # Compute Engine in the Cloud Billing Catalog
UsageType = Literal["OnDemand", "Preemptible"]
# The words before "Core"/"Ram" in a series' SKU descriptions ("N2D AMD Instance Core running
# in Netherlands"; Spot SKUs add "Preemptible " or "Spot Preemptible " in front). Series not
# listed use "<SERIES> Instance"; a SKU that matches nothing leaves the machine unpriced.
SERIES_SKU_WORDS: dict[str, str] = {
    "n1": "N1 Predefined Instance",
    "n2d": "N2D AMD Instance",
    "c2": "Compute optimized",
    "c2d": "C2D AMD Instance",
    "t2d": "T2D AMD Instance",
    "t2a": "T2A Arm Instance",
    "m1": "Memory-optimized Instance",
    "m2": "Memory-optimized Instance",
}
# SKU description words of a built-in or attached GPU type.
GPU_SKU_WORDS: dict[str, str] = {
    "nvidia-l4": "Nvidia L4 GPU",
    "nvidia-tesla-a100": "Nvidia Tesla A100 GPU",
    "nvidia-a100-80gb": "Nvidia Tesla A100 80GB GPU",
    "nvidia-h100-80gb": "Nvidia H100 80GB GPU",
    "nvidia-h100-mega-80gb": "Nvidia H100 80GB Mega GPU",
    "nvidia-h200-141gb": "Nvidia H200 141GB GPU",
    "nvidia-tesla-t4": "Nvidia Tesla T4 GPU",
    "nvidia-tesla-v100": "Nvidia Tesla V100 GPU",
    "nvidia-tesla-p100": "Nvidia Tesla P100 GPU",
    "nvidia-tesla-p4": "Nvidia Tesla P4 GPU",
}


class Sku(BaseModel):
    """The part of a Catalog API SKU a price needs."""

    model_config = ConfigDict(frozen=True)

    sku_id: str
    description: str
    resource_group: str  # "CPU", "RAM", "GPU", ... (category.resourceGroup)
    usage_type: str  # "OnDemand", "Preemptible", ... (category.usageType)
    regions: list[str]
    usage_unit: str  # "h" (per vCPU or GPU hour) or "GiBy.h"
    usd: float  # the last tiered rate's unit price

    @classmethod
    def from_api(cls, sku: dict[str, Any]) -> Sku:
        """One SKU as the Catalog API returns it."""
        category = sku.get("category", {})
        expression = sku["pricingInfo"][0]["pricingExpression"]
        price = expression["tieredRates"][-1]["unitPrice"]
        return cls(
            sku_id=sku["skuId"],
            description=sku["description"],
            resource_group=category.get("resourceGroup", ""),
            usage_type=category.get("usageType", ""),
            regions=list(sku.get("serviceRegions", [])),
            usage_unit=expression["usageUnit"],
            usd=int(price.get("units", 0) or 0) + int(price.get("nanos", 0)) / 1e9,
        )


class SkuSnapshot(BaseModel):
    model_config = ConfigDict(frozen=True)

    snapshot_date: str
    service: str = COMPUTE_SERVICE
    source: str
    skus: list[Sku] = Field(default_factory=list)

    @classmethod
    def load(cls, path: Path = SNAPSHOT) -> SkuSnapshot:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            snapshot_date=data["snapshot_date"],
            service=data.get("service", COMPUTE_SERVICE),
            source=data["source"],
            skus=[Sku.from_api(s) for s in data["skus"]],
        )

    def _find(self, pattern: re.Pattern[str], group: str, usage: str, region: str) -> Sku | None:
        for sku in self.skus:
            if (
                sku.resource_group == group
                and sku.usage_type == usage
                and region in sku.regions
                and pattern.search(sku.description)
            ):
                return sku
        return None

    def price_usd_h(self, shape: MachineShape, region: str, usage: UsageType) -> float | None:
        """USD per hour of `shape` in `region`; None when the snapshot lacks a part."""
        words = SERIES_SKU_WORDS.get(shape.series, f"{shape.series.upper()} Instance")
        if "custom" in shape.name:  # "Custom Instance Core" (N1), "E2 Custom Instance Core"
            words = (
                "Custom Instance"
                if shape.series == "n1"
                else f"{shape.series.upper()} Custom Instance"
            )
        prefix = r"^((Spot )?Preemptible )?"
        core = re.compile(rf"{prefix}{re.escape(words)} Core\b")
        ram = re.compile(rf"{prefix}{re.escape(words)} Ram\b")
        core_sku = self._find(core, "CPU", usage, region)
        ram_sku = self._find(ram, "RAM", usage, region)
        if core_sku is None or ram_sku is None:
            return None
        total = shape.vcpus * core_sku.usd + shape.memory_mib / 1024 * ram_sku.usd
        if shape.gpu_type:
            gpu_words = GPU_SKU_WORDS.get(shape.gpu_type)
            # On-demand "Nvidia L4 GPU running in ..."; Spot "Nvidia L4 GPU attached to Spot
            # Preemptible VMs running in ..." (tests/fixtures/billing/skus_list_page2.json).
            gpu = re.compile(rf"{prefix}{re.escape(gpu_words)}"
                             r"( attached to (Spot )?Preemptible VMs)? running in"
                             ) if gpu_words else None
            gpu_sku = self._find(gpu, "GPU", usage, region) if gpu else None
            if gpu_sku is None:
                return None
            total += shape.gpu_count * gpu_sku.usd
        return round(total, 6)
