"""Local mode: the embedded backend (local/), started on demand.

Only the endpoint differs from production: the Batch client talks gRPC to the local server,
google-cloud-storage talks to fake-gcs-server through STORAGE_EMULATOR_HOST.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from submit.errors import ServiceError


def root() -> Path:
    """Where the local backend keeps its state: GPUB_LOCAL_ROOT, else <repo>/.local."""
    env = os.environ.get("GPUB_LOCAL_ROOT")
    return Path(env) if env else Path(__file__).resolve().parents[1] / ".local"


def backend() -> Any:
    try:
        from local.backend import LocalBackend
    except ImportError as exc:  # the backend is an optional part of a checkout
        raise ServiceError(f"--local: the local backend is not available ({exc})") from None
    return LocalBackend(root=root())


def start() -> Any:
    """Start (or find) the local servers and point google-cloud-storage at fake-gcs-server."""
    try:
        endpoints = backend().ensure_running()
    except (RuntimeError, OSError) as exc:
        raise ServiceError(f"--local: the local backend did not start: {exc}".splitlines()[0]
                           ) from None
    os.environ["STORAGE_EMULATOR_HOST"] = endpoints.gcs_endpoint
    return endpoints
