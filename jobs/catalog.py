"""Machine catalog: machine shapes, the GPUs they carry, and their prices.

The data lives next to this module: `machine_families.yaml` (every predefined shape of the
families Batch runs on, and the custom-type series) and `machines.yaml` (prices and GPUs).
This module only loads and queries them, so shapes and prices change in reviewed data files,
never in logic. `machine_shape(name)` knows every predefined and custom type;
`get_machine(name)` only the priced ones (what cost estimates need).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from jobs.machines import AttachableGpu as AttachableGpu  # re-exported: the catalog's models
from jobs.machines import MachineShape as MachineShape
from jobs.machines import MachineType as MachineType
from jobs.sku_prices import SNAPSHOT, SkuSnapshot

_DATA = Path(__file__).with_name("machines.yaml")
_FAMILIES = Path(__file__).with_name("machine_families.yaml")
# "n2-custom-8-32768", "e2-custom-32-98304", "n2-custom-4-65536-ext", N1: "custom-8-30720".
CUSTOM_RE = re.compile(
    r"^(?:(?P<series>[a-z][a-z0-9]*)-)?custom-(?P<vcpus>\d+)-(?P<mib>\d+)(-ext)?$"
)


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
    """Priced machines: from the SKU snapshot when one is committed, else machines.yaml."""
    out = _yaml_priced()
    if SNAPSHOT.is_file():
        out.update(priced_from_snapshot(SkuSnapshot.load(SNAPSHOT), _raw()["defaults"]["regions"]))
    return out


def priced_from_snapshot(snapshot: Any, regions: list[str]) -> dict[str, MachineType]:
    """Every known shape the snapshot prices in the first of `regions` (on-demand and Spot)."""
    region = regions[0]
    out: dict[str, MachineType] = {}
    for name in sorted(set(_shapes())):
        shape = _shapes()[name]
        on_demand = snapshot.price_usd_h(shape, region, "OnDemand")
        if on_demand is None:
            continue
        region_prices: dict[str, tuple[float, float | None]] = {}
        for where in regions:
            od = snapshot.price_usd_h(shape, where, "OnDemand")
            if od is not None:
                region_prices[where] = (od, snapshot.price_usd_h(shape, where, "Preemptible"))
        out[name] = MachineType(
            **shape.model_dump(),
            price_on_demand_usd_h=on_demand,
            price_spot_usd_h=snapshot.price_usd_h(shape, region, "Preemptible"),
            price_exact=True,
            regions=list(regions),
            region_prices=region_prices,
        )
    return out


def _yaml_priced() -> dict[str, MachineType]:
    raw = _raw()
    regions = list(raw["defaults"]["regions"])
    out: dict[str, MachineType] = {}
    for name, m in raw["machines"].items():
        spot = None if m.get("spot") is None else float(m["spot"])
        region_prices: dict[str, tuple[float, float | None]] = {
            regions[0]: (float(m["on_demand"]), spot)}
        for where, (od, sp) in (m.get("other_regions") or {}).items():
            region_prices[str(where)] = (float(od), None if sp is None else float(sp))
        out[name] = MachineType(
            name=name,
            vcpus=int(m["vcpus"]),
            memory_mib=int(m["memory_mib"]),
            gpu_type=m.get("gpu"),
            gpu_count=int(m.get("gpu_count", 0)),
            price_on_demand_usd_h=float(m["on_demand"]),
            price_spot_usd_h=None if m.get("spot") is None else float(m["spot"]),
            price_exact=bool(m.get("price_exact", False)),
            regions=list(region_prices),
            region_prices=region_prices,
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
SPOT_PRICE_DATE: str = str(_raw().get("spot_price_date", PRICE_DATE))


def get_machine(name: str) -> MachineType | None:
    """The priced catalog entry for `name`, or None when the catalog has no price for it."""
    return _machines().get(name)


@cache
def _shapes() -> dict[str, MachineShape]:
    with _FAMILIES.open(encoding="utf-8") as fh:
        data: dict[str, Any] = yaml.load(fh, Loader=_Loader)
    out: dict[str, MachineShape] = {}
    for series, classes in data["families"].items():
        for cls, rule in classes.items():
            for vcpus in rule["vcpus"]:
                name = f"{series}-{cls}-{vcpus}"
                mib = round(vcpus * float(rule["gib_per_vcpu"]) * 1024)
                out[name] = MachineShape(name=name, vcpus=vcpus, memory_mib=mib)
    for name, (vcpus, gib, *gpu) in data["shapes"].items():
        out[name] = MachineShape(
            name=name,
            vcpus=int(vcpus),
            memory_mib=round(float(gib) * 1024),
            gpu_type=gpu[0] if gpu else None,
            gpu_count=int(gpu[1]) if gpu else 0,
        )
    return out


@cache
def _custom_series() -> frozenset[str]:
    with _FAMILIES.open(encoding="utf-8") as fh:
        data: dict[str, Any] = yaml.load(fh, Loader=_Loader)
    return frozenset(data["custom_series"])


def machine_shape(name: str) -> MachineShape | None:
    """The shape of any predefined or custom machine type Batch runs; None when unknown."""
    priced = _machines().get(name)
    if priced is not None:
        return priced
    shape = _shapes().get(name)
    if shape is not None:
        return shape
    m = CUSTOM_RE.match(name)
    if m and (m["series"] or "n1") in _custom_series():
        return MachineShape(name=name, vcpus=int(m["vcpus"]), memory_mib=int(m["mib"]))
    return None


def shape_names() -> list[str]:
    """Every predefined machine type the catalog knows the shape of."""
    return sorted(set(_shapes()) | set(_machines()))


def machine_names() -> list[str]:
    return list(_machines())


def gpu_types() -> list[str]:
    """Every accelerator type the catalog knows ("nvidia-l4", "nvidia-tesla-t4", ...)."""
    return list(_raw()["gpus"])


def attachable_gpu(gpu_type: str) -> AttachableGpu | None:
    """How `gpu_type` attaches to a general-purpose series, or None if it is built in only."""
    return _attachable().get(gpu_type)


def attached_gpu_prices(gpu_type: str) -> dict[str, tuple[float, float | None]]:
    """region -> (on-demand, Spot) USD per GPU-hour of an attached GPU; {} when unpriced."""
    entry = _raw()["gpus"].get(gpu_type) or {}
    return {str(r): (float(od), None if sp is None else float(sp))
            for r, (od, sp) in (entry.get("prices") or {}).items()}


def gpu_family(gpu_type: str) -> str:
    """Quota family of an accelerator type: "nvidia-l4" -> "L4", "nvidia-tesla-t4" -> "T4"."""
    entry = _raw()["gpus"].get(gpu_type)
    if entry is not None:
        return str(entry["family"])
    # Unknown types still get a stable family name (quota ids are upper case).
    return gpu_type.removeprefix("nvidia-").removeprefix("tesla-").upper()


def gpu_fit_problem(machine: MachineShape, gpu_type: str, count: int) -> str | None:
    """Why `count` x `gpu_type` cannot run on `machine` (what Batch/Compute refuse), or None.

    The one home of this rule: JobSpec validation and the GPUB_JOB_1 guardrail both use it.
    """
    if machine.gpu_type is not None:
        if gpu_type != machine.gpu_type:
            return f"{machine.name} needs {machine.gpu_type}; got {gpu_type}"
        if count != machine.gpu_count:
            return f"{machine.name} carries {machine.gpu_count} {machine.gpu_type}; got {count}"
        return None
    att = attachable_gpu(gpu_type)
    if att is None:
        return (
            f"{gpu_type} is built into its own machine series only; {machine.name} carries "
            "no GPU (use g2-* for nvidia-l4, a2-* for A100, a3-* for H100)"
        )
    if att.series != machine.series:
        return f"{gpu_type} attaches to {att.series}-* machines only; got {machine.name}"
    if count not in att.max_vcpus:
        allowed = ", ".join(str(c) for c in sorted(att.max_vcpus))
        return f"{gpu_type} on {att.series} comes in counts {allowed}; got {count}"
    if machine.vcpus > att.max_vcpus[count]:
        return (
            f"{count} {gpu_type} supports at most {att.max_vcpus[count]} vCPUs; "
            f"{machine.name} has {machine.vcpus}"
        )
    return None
