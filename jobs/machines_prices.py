"""The price of one VM-hour of a machine type in a region under a provisioning model, from the one
dated catalog (`jobs/machines.yaml`, or the SKU snapshot `bin/refresh-prices` writes).

Provisioning models (Batch `allocationPolicy.instances[].policy.provisioningModel`,
https://cloud.google.com/batch/docs/reference/rest/v1/projects.locations.jobs#ProvisioningModel):
- STANDARD (or unset): the on-demand price;
- SPOT, PREEMPTIBLE: the Spot price; without a Spot figure the on-demand price bounds it (Spot
  is never billed above on-demand, https://cloud.google.com/spot-vms/pricing);
- FLEX_START: the on-demand price bounds it (flex-start VMs are billed at a discount to
  on-demand, https://cloud.google.com/compute/docs/instances/flex-start-vms);
- RESERVATION_BOUND: the on-demand price (reserved VMs are billed at on-demand rates,
  https://cloud.google.com/compute/docs/instances/reservations-overview).
Spot prices may change up to once every 30 days (https://cloud.google.com/spot-vms/pricing):
`spot_staleness` says so when the catalog's Spot figures are older.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from jobs.catalog import PRICE_DATE, SPOT_PRICE_DATE, attached_gpu_prices, get_machine

SPOT_MODELS = frozenset({"SPOT", "PREEMPTIBLE"})
ON_DEMAND_BOUNDED = frozenset({"FLEX_START", "RESERVATION_BOUND"})
SPOT_PRICE_MAX_AGE_DAYS = 30


@dataclass(frozen=True)
class Price:
    usd_h: float
    basis: str  # how the figure was chosen, said next to the bound
    exact: bool
    date: str


def price(machine: str, region: str, model: str) -> Price | None:
    """USD per VM-hour of `machine` in `region` under `model`; None: the catalog has no price."""
    entry = get_machine(machine)
    if entry is None or region not in entry.region_prices:
        return None
    on_demand, spot = entry.region_prices[region]
    model = (model or "STANDARD").upper()
    where = f"{machine} in {region}"
    if model in SPOT_MODELS:
        if spot is not None:
            return Price(spot, f"{where}, Spot", entry.price_exact, SPOT_PRICE_DATE)
        return Price(on_demand, f"{where}, Spot (no Spot figure: the on-demand price bounds it)",
                     entry.price_exact, PRICE_DATE)
    if model in ON_DEMAND_BOUNDED:
        return Price(on_demand, f"{where}, {model} (the on-demand price bounds it)",
                     entry.price_exact, PRICE_DATE)
    return Price(on_demand, f"{where}, on-demand", entry.price_exact, PRICE_DATE)


def gpu_price(gpu_type: str, region: str, model: str) -> float | None:
    """USD per hour of one attached GPU (T4, V100 on N1: billed apart from the VM)."""
    prices = attached_gpu_prices(gpu_type).get(region)
    if prices is None:
        return None
    on_demand, spot = prices
    if (model or "").upper() in SPOT_MODELS and spot is not None:
        return spot
    return on_demand


def spot_staleness(today: dt.date | None = None) -> str | None:
    """A warning when the catalog's Spot prices are older than Google's 30-day change window."""
    today = today or dt.date.today()
    age = (today - dt.date.fromisoformat(SPOT_PRICE_DATE)).days
    if age <= SPOT_PRICE_MAX_AGE_DAYS:
        return None
    return (f"Spot prices are from {SPOT_PRICE_DATE}, {age} days ago; Google may change them "
            f"every {SPOT_PRICE_MAX_AGE_DAYS} days (cloud.google.com/spot-vms/pricing): run "
            "bin/refresh-prices")
