"""The environments the user declares (`environments.yaml` at the repository root, or the file
GPUB_ENVIRONMENTS names): the one source main.py, bin/check and bin/submit read.

Each top-level key is an environment's name; its body holds the `EnvironmentSettings` fields
(docs/contracts.md, "Environments"), with `jobs:` either `all` (every declared job,
jobs/declared/*.py) or a list of job names. Bad input raises `EnvironmentsError`: one line
naming the file, the field and what is allowed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from jobs import one_line
from jobs.registry import ALL_JOBS
from stacks.settings import EnvironmentSettings

ENV_VAR = "GPUB_ENVIRONMENTS"
DEFAULT_FILE = Path(__file__).resolve().parents[1] / "environments.yaml"


class EnvironmentsError(ValueError):
    """The environments file cannot be read or is not valid (one line, names the field)."""


def environments_file() -> Path:
    """GPUB_ENVIRONMENTS, else environments.yaml at the repository root."""
    value = os.environ.get(ENV_VAR, "").strip()
    return Path(value) if value else DEFAULT_FILE


def _jobs(path: Path, env: str, declared: Any) -> list[Any]:
    if declared == "all":
        return list(ALL_JOBS.values())
    if not isinstance(declared, list) or not all(isinstance(n, str) for n in declared):
        raise EnvironmentsError(f"{path}: {env}.jobs: expected `all` or a list of job names; "
                                f"got {declared!r}")
    unknown = [n for n in declared if n not in ALL_JOBS]
    if unknown:
        raise EnvironmentsError(f"{path}: {env}.jobs: unknown job(s) {', '.join(unknown)} "
                                f"(declared: {', '.join(sorted(ALL_JOBS))})")
    return [ALL_JOBS[n] for n in declared]


def parse_environments(text: str, path: Path) -> list[EnvironmentSettings]:
    """The environments declared in `text` (the content of `path`), in file order."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EnvironmentsError(f"{path}: not YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict) or not raw:
        raise EnvironmentsError(f"{path}: expected one mapping per environment "
                                "(`dev: {kind: dev, project_id: ...}`)")
    envs = []
    for name, body in raw.items():
        if not isinstance(body, dict):
            raise EnvironmentsError(f"{path}: {name}: expected a mapping of settings")
        if "name" in body:
            raise EnvironmentsError(f"{path}: {name}.name: the key is the name; remove the field")
        fields = {**body, "name": str(name), "jobs": _jobs(path, str(name), body.get("jobs", []))}
        try:
            envs.append(EnvironmentSettings.model_validate(fields))
        except ValidationError as exc:
            raise EnvironmentsError(f"{path}: {name}: {one_line(exc)}") from None
    return envs


def load_environments(path: Path | None = None) -> list[EnvironmentSettings]:
    """The declared environments (`environments_file()` unless `path` is given)."""
    path = path or environments_file()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EnvironmentsError(f"{path}: cannot read the environments file: "
                                f"{exc.strerror or exc}") from None
    return parse_environments(text, path)


def environment(name: str, path: Path | None = None) -> EnvironmentSettings:
    """The declared environment `name`."""
    envs = {e.name: e for e in load_environments(path)}
    if name not in envs:
        raise EnvironmentsError(f"{path or environments_file()}: no environment {name!r} "
                                f"(declared: {', '.join(envs)})")
    return envs[name]


def dev() -> EnvironmentSettings:
    """The example `dev` environment (the tests, the benchmarks and the demo use it)."""
    return environment("dev")


def prod() -> EnvironmentSettings:
    """The example `prod` environment."""
    return environment("prod")
