"""`bin/refresh-prices` on a recorded `services.skus.list` response (the Cloud Billing Catalog
API's JSON shape, two pages joined by nextPageToken), replayed by a local HTTP server, through
the real requests session; and one line without credentials."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from jobs.catalog import machine_shape
from jobs.sku_prices import SkuSnapshot
from jobs.sku_refresh import main

REPO = Path(__file__).resolve().parents[1]
BILLING = REPO / "tests" / "fixtures" / "billing"
PAGES = {"": BILLING / "skus_list_page1.json", "page-2": BILLING / "skus_list_page2.json"}


@pytest.fixture()
def catalog_api() -> Iterator[tuple[str, list[dict[str, list[str]]]]]:
    seen: list[dict[str, list[str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlparse(self.path).query, keep_blank_values=True)
            seen.append(query)
            page = PAGES.get(query.get("pageToken", [""])[0])
            body = page.read_bytes() if page else b'{"error": {"code": 400}}'
            self.send_response(200 if page else 400)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1/services/6F81-5844-456A/skus", seen
    finally:
        server.shutdown()


def test_recorded_response_becomes_a_snapshot_that_prices_machines(
        catalog_api: tuple[str, list[dict[str, list[str]]]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    url, seen = catalog_api
    monkeypatch.setenv("CLOUD_BILLING_API_KEY", "test-key")
    out = tmp_path / "compute_skus.json"
    assert main(["--region", "europe-west4", "--endpoint", url, "--out", str(out)]) == 0
    assert [q["pageToken"] for q in seen] == [[""], ["page-2"]]  # followed nextPageToken
    assert all(q["key"] == ["test-key"] and q["pageSize"] == ["5000"] for q in seen)
    written = json.loads(out.read_text())
    # kept: the machine-price SKUs of europe-west4 only (not the disk, not asia-east1)
    assert sorted(s["skuId"] for s in written["skus"]) == [
        "REC-0001", "REC-0002", "REC-0004", "REC-0005", "REC-0006", "REC-0007"]
    snapshot = SkuSnapshot.load(out)
    g2 = machine_shape("g2-standard-8")
    assert g2 is not None
    on_demand = snapshot.price_usd_h(g2, "europe-west4", "OnDemand")
    spot = snapshot.price_usd_h(g2, "europe-west4", "Preemptible")
    assert on_demand == pytest.approx(8 * 0.024988 + 32 * 0.002928 + 0.617)
    assert spot == pytest.approx(8 * 0.010 + 32 * 0.001171 + 0.2468)


def test_api_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CLOUD_BILLING_API_KEY", "k")
    # port 9 (discard) on loopback: nothing listens, the connection is refused
    assert main(["--endpoint", "http://127.0.0.1:9/v1/skus", "--out",
                 str(tmp_path / "x.json")]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("refresh-prices: error: cannot reach")


def test_without_credentials_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("CLOUD_BILLING_API_KEY", "GOOGLE_APPLICATION_CREDENTIALS")}
    env.update(HOME=str(tmp_path), CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),
               GCE_METADATA_HOST="127.0.0.1:9", GCE_METADATA_IP="127.0.0.1:9",
               NO_GCE_CHECK="True")
    proc = subprocess.run([str(REPO / "bin" / "refresh-prices"), "--out",
                           str(tmp_path / "x.json")], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "no credentials" in proc.stderr
    assert not (tmp_path / "x.json").exists()
