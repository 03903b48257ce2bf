"""Every declared job by name: what environments, the submit helper and CI iterate over.

A new job is one file: every module of `jobs/declared/` that defines `SPEC = JobSpec(...)` is
collected here (in file-name order), so declaring a job never means editing this list.
"""

from __future__ import annotations

import importlib
import pkgutil

from jobs.spec import JobSpec

DECLARED = "jobs.declared"


def discover(package: str = DECLARED) -> dict[str, JobSpec]:
    """{job name: spec} of every `SPEC` in `package`'s modules (`_private` modules skipped).

    A module without a JobSpec `SPEC`, or two modules declaring the same job name, is an error
    naming the file: a half-declared job must not vanish silently."""
    pkg = importlib.import_module(package)
    found: dict[str, JobSpec] = {}
    where: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        spec = getattr(module, "SPEC", None)
        if not isinstance(spec, JobSpec):
            raise TypeError(f"{package}.{info.name}: a declared job module defines "
                            "SPEC = JobSpec(...)")
        if spec.name in found:
            raise ValueError(f"{package}.{info.name}: job {spec.name!r} is already declared "
                             f"in {where[spec.name]}")
        found[spec.name] = spec
        where[spec.name] = f"{package}.{info.name}"
    return found


ALL_JOBS: dict[str, JobSpec] = discover()
