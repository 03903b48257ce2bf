"""Machine catalog: machine shapes, the GPUs they carry, and their prices.

The data lives in `machines.yaml` next to this module; this module only loads and queries it,
so prices and shapes are changed in one reviewed data file, never in logic.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

_DATA = Path(__file__).with_name("machines.yaml")


class MachineType(BaseModel):
    """One Compute Engine machine type as the catalog knows it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    vcpus: int
    memory_mib: int
    gpu_type: str | None = None  # built-in accelerator, e.g. "nvidia-l4"
    gpu_count: int = 0
    price_on_demand_usd_h: float
    price_spot_usd_h: float | None = None
    price_exact: bool = False  # False: approximate figure, re-check before budgeting
    regions: list[str]

    def price_usd_h(self, spot: bool) -> float:
        """USD per VM-hour: the spot price for spot VMs when the catalog has one, else on-demand
        (without a spot figure, budget at the on-demand price rather than guess)."""
        if spot and self.price_spot_usd_h is not None:
            return self.price_spot_usd_h
        return self.price_on_demand_usd_h

    @property
    def series(self) -> str:
        """Machine series ("g2", "n1", ...): GPUs attach by series."""
        return self.name.split("-", 1)[0]


class AttachableGpu(BaseModel):
    """A GPU that attaches to machines of one series as a separate accelerator (T4 on n1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu_type: str
    series: str
    max_vcpus: dict[int, int]  # allowed GPU count -> the most vCPUs that count supports


try:  # the C loader is several times faster; the submit path reads this file on start
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader


@cache
def _raw() -> dict[str, Any]:
    with _DATA.open(encoding="utf-8") as fh:
        data: dict[str, Any] = yaml.load(fh, Loader=_Loader)
    return data


@cache
def _machines() -> dict[str, MachineType]:
    raw = _raw()
    regions = list(raw["defaults"]["regions"])
    out: dict[str, MachineType] = {}
    for name, m in raw["machines"].items():
        out[name] = MachineType(
            name=name,
            vcpus=int(m["vcpus"]),
            memory_mib=int(m["memory_mib"]),
            gpu_type=m.get("gpu"),
            gpu_count=int(m.get("gpu_count", 0)),
            price_on_demand_usd_h=float(m["on_demand"]),
            price_spot_usd_h=None if m.get("spot") is None else float(m["spot"]),
            price_exact=bool(m.get("price_exact", False)),
            regions=list(m.get("regions", regions)),
        )
    return out


@cache
def _attachable() -> dict[str, AttachableGpu]:
    out: dict[str, AttachableGpu] = {}
    for gpu, g in _raw()["gpus"].items():
        if "attach_to" in g:
            att = g["attach_to"]
            out[gpu] = AttachableGpu(
                gpu_type=gpu,
                series=att["series"],
                max_vcpus={int(k): int(v) for k, v in att["max_vcpus"].items()},
            )
    return out


PRICE_SOURCE: str = " ".join(str(_raw()["price_source"]).split())
PRICE_DATE: str = str(_raw()["price_date"])


def get_machine(name: str) -> MachineType | None:
    """The catalog entry for `name`, or None when the catalog does not know it."""
    return _machines().get(name)


def machine_names() -> list[str]:
    return list(_machines())


def gpu_types() -> list[str]:
    """Every accelerator type the catalog knows ("nvidia-l4", "nvidia-tesla-t4", ...)."""
    return list(_raw()["gpus"])


def attachable_gpu(gpu_type: str) -> AttachableGpu | None:
    """How `gpu_type` attaches to a general-purpose series, or None if it is built in only."""
    return _attachable().get(gpu_type)


def gpu_family(gpu_type: str) -> str:
    """Quota family of an accelerator type: "nvidia-l4" -> "L4", "nvidia-tesla-t4" -> "T4"."""
    entry = _raw()["gpus"].get(gpu_type)
    if entry is not None:
        return str(entry["family"])
    # Unknown types still get a stable family name (quota ids are upper case).
    return gpu_type.removeprefix("nvidia-").removeprefix("tesla-").upper()
