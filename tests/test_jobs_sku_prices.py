"""Machine prices composed from Cloud Billing Catalog SKUs (a test document in the API's shape
with invented unit prices: the arithmetic and the SKU matching are under test, not prices)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.catalog import machine_shape
from jobs.sku_prices import SkuSnapshot
from jobs.sku_refresh import keep

TEST_SKUS = Path(__file__).parent / "fixtures" / "billing" / "compute_skus_test.json"


@pytest.fixture(scope="module")
def snapshot() -> SkuSnapshot:
    return SkuSnapshot.load(TEST_SKUS)


def shape(name: str):  # type: ignore[no-untyped-def]
    found = machine_shape(name)
    assert found is not None
    return found


def test_units_and_nanos_make_the_unit_price(snapshot: SkuSnapshot) -> None:
    by_id = {s.sku_id: s for s in snapshot.skus}
    assert by_id["TEST-0001"].usd == pytest.approx(0.03)
    assert by_id["TEST-0010"].usd == pytest.approx(1.0)
    assert by_id["TEST-0002"].usage_unit == "GiBy.h"


def test_price_is_cores_plus_ram_plus_gpus(snapshot: SkuSnapshot) -> None:
    n2 = snapshot.price_usd_h(shape("n2-standard-8"), "europe-west4", "OnDemand")
    assert n2 == pytest.approx(8 * 0.03 + 32 * 0.004)
    spot = snapshot.price_usd_h(shape("n2-standard-8"), "europe-west4", "Preemptible")
    assert spot == pytest.approx(8 * 0.007 + 32 * 0.001)
    g2 = snapshot.price_usd_h(shape("g2-standard-24"), "europe-west4", "OnDemand")
    assert g2 == pytest.approx(24 * 0.025 + 96 * 0.003 + 2 * 0.6)
    custom = snapshot.price_usd_h(shape("e2-custom-32-98304"), "us-central1", "OnDemand")
    assert custom == pytest.approx(32 * 0.022 + 96 * 0.003)


def test_missing_parts_give_no_price(snapshot: SkuSnapshot) -> None:
    assert (
        snapshot.price_usd_h(shape("n2-standard-8"), "us-central1", "OnDemand") is None
    )  # no RAM SKU
    assert snapshot.price_usd_h(shape("g2-standard-8"), "europe-west4", "Preemptible") is None
    assert snapshot.price_usd_h(shape("c3-standard-8"), "europe-west4", "OnDemand") is None


def test_refresh_keeps_only_machine_price_skus() -> None:
    skus = json.loads(TEST_SKUS.read_text())["skus"]
    assert all(keep(s, {"europe-west4", "us-central1"}) for s in skus)
    assert not keep(skus[0], {"asia-east1"})
    disk = {**skus[0], "category": {**skus[0]["category"], "resourceGroup": "SSD"}}
    assert not keep(disk, {"europe-west4"})


def test_a_snapshot_prices_every_shape_it_covers(snapshot: SkuSnapshot) -> None:
    from jobs.catalog import priced_from_snapshot

    priced = priced_from_snapshot(snapshot, ["europe-west4"])
    assert {"n2-standard-2", "n2-highmem-128", "g2-standard-96"} <= set(priced)
    assert not any(n.startswith(("c3-", "e2-")) for n in priced)  # no SKUs for those here
    n2 = priced["n2-standard-2"]
    assert (n2.price_on_demand_usd_h, n2.price_spot_usd_h) == (
        pytest.approx(2 * 0.03 + 8 * 0.004),
        pytest.approx(2 * 0.007 + 8 * 0.001),
    )
    assert priced["g2-standard-96"].price_spot_usd_h is None  # no Spot GPU SKU in the test data


def test_series_with_their_own_sku_words(snapshot: SkuSnapshot) -> None:
    """N2D SKUs say "N2D AMD Instance Core"; older Spot SKUs start with "Preemptible "."""
    assert snapshot.price_usd_h(shape("n2d-standard-4"), "europe-west4", "OnDemand") == (
        pytest.approx(4 * 0.027 + 16 * 0.0036)
    )
    assert snapshot.price_usd_h(shape("n2d-standard-4"), "europe-west4", "Preemptible") == (
        pytest.approx(4 * 0.006 + 16 * 0.0009)
    )
