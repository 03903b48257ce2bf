"""Local mode: the embedded backend (local/), started on demand.

Only the endpoint differs from production: the Batch client talks gRPC to the local server,
google-cloud-storage talks to fake-gcs-server (its endpoint is a client option; this module
never sets environment variables).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from submit.errors import ServiceError, SubmitError


def root() -> Path:
    """Where the local backend keeps its state: the one rule, `local.backend.default_root()`
    (GPUB_LOCAL_ROOT, else <repo>/.local)."""
    try:
        from local.backend import default_root
    except ImportError as exc:
        raise ServiceError(f"--local: the local backend is not available ({exc})") from None
    return default_root()


# The synthesized stacks whose IAM, topics and workflows the local cloud runs; set by a
# command that knows its environment (`bin/submit run --env E --local`). Empty: the stacks
# the running local cloud already has (or GPUB_LOCAL_STACKS).
_STACKS: list[Path] = []


def use_stacks(paths: list[Path]) -> None:
    _STACKS[:] = paths


def backend() -> Any:
    try:
        from local.backend import LocalBackend
    except ImportError as exc:  # the backend is an optional part of a checkout
        raise ServiceError(f"--local: the local backend is not available ({exc})") from None
    return LocalBackend(root=root(), stacks=list(_STACKS) or None)


def start() -> Any:
    """Start (or find) the local servers; returns their endpoints. Refused (exit 2, one line)
    when the root's running cloud is another environment's stack, or a fault knob
    (LOCAL_PUBSUB_*, LOCAL_CONNECTOR_ERROR_RATE, LOCAL_FAULT_SEED) is outside what it allows."""
    local = backend()  # ServiceError when the local backend is not part of this checkout
    from local.backend import CloudMismatch
    from local.faults import FaultConfigError

    try:
        endpoints = local.ensure_running()
        if local.stacks:  # the local `terraform apply`: the stack's buckets exist
            from local.apply import apply_buckets

            apply_buckets(endpoints.gcs_upstream, local.stacks)
    except (CloudMismatch, FaultConfigError) as exc:
        raise SubmitError(f"--local: {exc}") from None
    except (RuntimeError, OSError) as exc:
        raise ServiceError(f"--local: the local backend did not start: {exc}".splitlines()[0]
                           ) from None
    return endpoints
