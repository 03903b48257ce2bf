"""Every declared job by name: what environments, the submit helper and CI iterate over."""

from __future__ import annotations

from jobs.declared import embed, uppercase
from jobs.spec import JobSpec

ALL_JOBS: dict[str, JobSpec] = {spec.name: spec for spec in (embed.SPEC, uppercase.SPEC)}
