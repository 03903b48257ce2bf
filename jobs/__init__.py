"""Typed Google Batch jobs: declare once (`JobSpec`), render to Batch JSON, import it back.

Importing this package stays light (pydantic + PyYAML): no CDK provider, no `stacks`, no
Batch client, so the submit path starts fast.
"""

from jobs.catalog import PRICE_DATE, PRICE_SOURCE, MachineType, get_machine, gpu_family
from jobs.errors import JobSpecError, one_line
from jobs.render import RUNTIME_VARIABLES, RenderContext, fill_runtime, render_job
from jobs.spec import GcsVolume, GpuDemand, GpuSpec, JobSpec, Notification

__all__ = [
    "PRICE_DATE",
    "PRICE_SOURCE",
    "RUNTIME_VARIABLES",
    "GcsVolume",
    "GpuDemand",
    "GpuSpec",
    "JobSpec",
    "JobSpecError",
    "MachineType",
    "Notification",
    "RenderContext",
    "fill_runtime",
    "get_machine",
    "gpu_family",
    "one_line",
    "render_job",
]
