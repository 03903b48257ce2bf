"""`bin/refresh-prices`: write a fresh Compute Engine SKU snapshot from the Cloud Billing Catalog.

Needs network and an API key (`CLOUD_BILLING_API_KEY`) or Application Default Credentials, so
it never runs in CI; commit the file it writes (`jobs/prices/compute_skus.json`, dated). The
API (`services.skus.list`, https://cloud.google.com/billing/docs/reference/rest/v1/services.skus/list)
pages up to 5,000 SKUs at a time with `nextPageToken`
(https://cloud.google.com/billing/v1/how-tos/catalog-api). tests/test_sku_refresh.py replays a
recorded response in that shape through a local HTTP server.

Every failure is one line: no credentials or bad arguments exit 2, an API or network failure
exits 4.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from jobs.sku_prices import COMPUTE_SERVICE, SNAPSHOT

API = f"https://cloudbilling.googleapis.com/v1/{COMPUTE_SERVICE}/skus"
GROUPS = {"CPU", "RAM", "GPU"}
USAGE = {"OnDemand", "Preemptible"}
KEY_ENV = "CLOUD_BILLING_API_KEY"


class RefreshError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


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


def pages(session: Any, params: dict[str, str], api: str = API) -> Iterator[dict[str, Any]]:
    """Every SKU of every page (`skus`, `nextPageToken`)."""
    token = ""
    while True:
        try:
            response = session.get(api, params={**params, "pageToken": token}, timeout=60)
        except OSError as exc:  # requests' ConnectionError and Timeout are OSErrors
            raise RefreshError(f"cannot reach {api}: {type(exc).__name__}", 4) from None
        if response.status_code != 200:
            raise RefreshError(f"{api} answered HTTP {response.status_code}: "
                               f"{response.text[:200]!r}", 4)
        try:
            body = response.json()
        except ValueError:
            raise RefreshError(f"{api} answered something that is not JSON", 4) from None
        yield from body.get("skus", [])
        token = body.get("nextPageToken", "")
        if not token:
            return


def _session() -> tuple[Any, dict[str, str]]:
    import requests

    key = os.environ.get(KEY_ENV)
    if key:
        return requests.Session(), {"key": key}
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError
    from google.auth.transport.requests import AuthorizedSession

    try:
        credentials, _ = google.auth.default(
            scopes=["https://www.googleapis.com/auth/cloud-billing.readonly"])
    except DefaultCredentialsError:
        raise RefreshError(f"no credentials: set {KEY_ENV} to an API key, or run `gcloud auth "
                           "application-default login`", 2) from None
    return AuthorizedSession(credentials), {}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + error
        raise RefreshError(f"{message} (see --help)", 2)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(prog="refresh-prices", description=__doc__)
    parser.add_argument("--region", action="append", default=[], help="region (repeatable)")
    parser.add_argument("--out", type=Path, default=SNAPSHOT)
    parser.add_argument("--endpoint", default=API,
                        help="the services.skus.list URL (a proxy, or a recorded response)")
    return parser.parse_args(argv)


def refresh(args: argparse.Namespace) -> str:
    regions = set(args.region or ["europe-west4", "us-central1"])
    session, params = _session()
    skus = [s for s in pages(session, {**params, "currencyCode": "USD", "pageSize": "5000"},
                             args.endpoint) if keep(s, regions)]
    if not skus:
        raise RefreshError(f"no machine price SKUs for {', '.join(sorted(regions))}; "
                           "nothing written", 4)
    snapshot = {
        "snapshot_date": dt.date.today().isoformat(),
        "service": COMPUTE_SERVICE,
        "source": f"{args.endpoint} (Cloud Billing Catalog API, list prices, USD)",
        "regions": sorted(regions),
        "skus": skus,
    }
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n",
                            encoding="utf-8")
    except OSError as exc:
        raise RefreshError(f"--out: cannot write {args.out}: {exc.strerror}", 2) from None
    return f"refresh-prices: {len(skus)} SKUs for {', '.join(sorted(regions))} -> {args.out}"


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parse(argv)
        print(refresh(args))
    except RefreshError as exc:
        print(f"refresh-prices: error: {exc}", file=sys.stderr)
        return exc.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
