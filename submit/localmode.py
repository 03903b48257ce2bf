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
    """Where the local backend keeps its state: the one rule, `local.backend.default_root()`
    (GPUB_LOCAL_ROOT, else <repo>/.local)."""
    try:
        from local.backend import default_root
    except ImportError as exc:
        raise ServiceError(f"--local: the local backend is not available ({exc})") from None
    return default_root()


def backend() -> Any:
    try:
        from local.backend import LocalBackend
    except ImportError as exc:  # the backend is an optional part of a checkout
        raise ServiceError(f"--local: the local backend is not available ({exc})") from None
    return LocalBackend(root=root())


def start(principal: str | None = None) -> Any:
    """Start (or find) the local servers and point google-cloud-storage at fake-gcs-server.

    `principal` (bin/submit: `settings.operator_sa_email`) is who local storage calls act as,
    unless GPUB_LOCAL_PRINCIPAL already names someone (see local.identity)."""
    if principal:
        os.environ.setdefault("GPUB_LOCAL_PRINCIPAL", principal)
    try:
        endpoints = backend().ensure_running()
    except (RuntimeError, OSError) as exc:
        raise ServiceError(f"--local: the local backend did not start: {exc}".splitlines()[0]
                           ) from None
    os.environ["STORAGE_EMULATOR_HOST"] = endpoints.gcs_endpoint
    return endpoints
