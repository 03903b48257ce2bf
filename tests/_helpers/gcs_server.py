"""Test-only helper: a throwaway in-memory fake-gcs-server (the real GCS JSON API) on a free
local port. Binary lookup, ports and readiness come from the product's `local/` launcher; only
the in-memory backend and the context manager are specific to tests."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from local.gcs import gcs_binary, gcs_ready
from local.procs import free_port


@contextmanager
def fake_gcs(timeout_s: float = 15.0) -> Iterator[str]:
    """Yield the endpoint for STORAGE_EMULATOR_HOST, e.g. "http://127.0.0.1:PORT"."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(gcs_binary()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
         "-port", str(port), "-external-url", url, "-log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while not gcs_ready(url):
            if proc.poll() is not None:
                raise RuntimeError(f"fake-gcs-server exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("fake-gcs-server did not start")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
