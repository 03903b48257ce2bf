"""Local mode: the embedded backend (local/), started on demand.

Only the endpoint differs from production: the Batch client talks gRPC to the local server,
google-cloud-storage talks to fake-gcs-server (its endpoint is a client option; this module
never sets environment variables).
"""

from __future__ import annotations

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


def start() -> Any:
    """Start (or find) the local servers; returns their endpoints."""
    try:
        endpoints = backend().ensure_running()
    except (RuntimeError, OSError) as exc:
        raise ServiceError(f"--local: the local backend did not start: {exc}".splitlines()[0]
                           ) from None
    return endpoints
