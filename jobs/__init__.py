"""Typed Google Batch jobs: declare once (`JobSpec`), render to Batch JSON, import it back.

`to_batch_json(spec, env)` renders; `from_batch_json(text)` imports any Batch job JSON or YAML.
Importing this package stays light (pydantic + PyYAML): no CDK provider, no `stacks`, no
Batch client (the importer loads google-cloud-batch only when called), so the submit path
starts fast.
"""

from __future__ import annotations

from typing import Any

from jobs.catalog import PRICE_DATE, PRICE_SOURCE, MachineType, get_machine, gpu_family
from jobs.errors import JobSpecError, one_line
from jobs.render import RUNTIME_VARIABLES, RenderContext, fill_runtime, render_job
from jobs.spec import (
    GcsVolume,
    GpuDemand,
    GpuPeak,
    GpuSpec,
    JobSpec,
    Notification,
    Rung,
    Runnable,
)


def to_batch_json(spec: JobSpec, env: RenderContext | None = None) -> dict[str, Any]:
    """The Batch job JSON (camelCase dict) of `spec`; with `env`, the environment's defaults."""
    return render_job(spec, env)


def from_batch_json(text: str, *, name: str = "imported") -> JobSpec:
    """Import Batch job JSON or YAML: a JobSpec that renders (without an environment) to an
    equal `batch_v1.Job`. Fields the typed model lacks are kept in `batch_overrides`. Raises
    JobSpecError, with every problem and its JSON path, only for input Batch would refuse."""
    from jobs.importer import spec_from_batch_json  # google-cloud-batch: only when importing

    return spec_from_batch_json(text, name=name)


__all__ = [
    "PRICE_DATE",
    "PRICE_SOURCE",
    "RUNTIME_VARIABLES",
    "GcsVolume",
    "GpuDemand",
    "GpuPeak",
    "GpuSpec",
    "JobSpec",
    "JobSpecError",
    "MachineType",
    "Notification",
    "RenderContext",
    "Rung",
    "Runnable",
    "fill_runtime",
    "from_batch_json",
    "get_machine",
    "gpu_family",
    "one_line",
    "render_job",
    "to_batch_json",
]
