"""`bin/refresh-prices`: write a fresh Compute Engine SKU snapshot from the Cloud Billing Catalog.

Needs network and an API key (`CLOUD_BILLING_API_KEY`) or Application Default Credentials, so
it never runs in CI; commit the file it writes (`jobs/prices/compute_skus.json`, dated). The
API pages 5,000 SKUs at a time (https://cloud.google.com/billing/v1/how-tos/catalog-api).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jobs.sku_prices import COMPUTE_SERVICE, SNAPSHOT

API = f"https://cloudbilling.googleapis.com/v1/{COMPUTE_SERVICE}/skus"
GROUPS = {"CPU", "RAM", "GPU"}
USAGE = {"OnDemand", "Preemptible"}


def keep(sku: dict[str, Any], regions: set[str]) -> bool:
    """The SKUs a machine price is made of, in the regions asked for."""
    category = sku.get("category", {})
    return (
        category.get("resourceFamily") == "Compute"
        and category.get("resourceGroup") in GROUPS
        and category.get("usageType") in USAGE
        and bool(regions & set(sku.get("serviceRegions", [])))
        and ("Instance" in sku.get("description", "") or "GPU" in sku.get("description", ""))
    )


def pages(session: Any, params: dict[str, str]) -> Iterator[dict[str, Any]]:
    token = ""
    while True:
        response = session.get(API, params={**params, "pageToken": token}, timeout=60)
        response.raise_for_status()
        body = response.json()
        yield from body.get("skus", [])
        token = body.get("nextPageToken", "")
        if not token:
            return


def _session() -> tuple[Any, dict[str, str]]:
    import requests

    key = os.environ.get("CLOUD_BILLING_API_KEY")
    if key:
        return requests.Session(), {"key": key}
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(
        scopes=["https://www.googleapis.com/auth/cloud-billing.readonly"]
    )
    return AuthorizedSession(credentials), {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="refresh-prices", description=__doc__)
    parser.add_argument("--region", action="append", default=[], help="region (repeatable)")
    parser.add_argument("--out", type=Path, default=SNAPSHOT)
    args = parser.parse_args(argv)
    regions = set(args.region or ["europe-west4", "us-central1"])
    session, params = _session()
    skus = [s for s in pages(session, {**params, "currencyCode": "USD", "pageSize": "5000"})
            if keep(s, regions)]  # fmt: skip
    snapshot = {
        "snapshot_date": dt.date.today().isoformat(),
        "service": COMPUTE_SERVICE,
        "source": f"{API} (Cloud Billing Catalog API, list prices, USD)",
        "regions": sorted(regions),
        "skus": skus,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"refresh-prices: {len(skus)} SKUs for {', '.join(sorted(regions))} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
