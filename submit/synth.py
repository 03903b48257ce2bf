"""Find the environment, the declared job and the job JSON the synth wrote for them.

Imports only the pure settings (`stacks.settings`, `stacks.environments`) and the job model,
never the provider bindings.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from submit.errors import SubmitError

if TYPE_CHECKING:
    from jobs.spec import JobSpec
    from stacks.settings import EnvironmentSettings

REPO_ROOT = Path(__file__).resolve().parents[1]  # submit/ is a top-level package


def synth_dir(out: str | None) -> Path:
    """--out, else GPUB_SYNTH_DIR, else <repo>/cdktf.out."""
    value = out or os.environ.get("GPUB_SYNTH_DIR")
    return Path(value) if value else REPO_ROOT / "cdktf.out"


def environments() -> dict[str, EnvironmentSettings]:
    """The declared environments and their clients (environments.yaml: the one source the
    synth and bin/check read too)."""
    from stacks.environments import EnvironmentsError, load_environments

    try:
        return {e.name: e for e in load_environments()}
    except EnvironmentsError as exc:
        raise SubmitError(str(exc)) from None


def load_environment(name: str) -> EnvironmentSettings:
    envs = environments()
    if name not in envs:
        raise SubmitError(f"--env: unknown environment {name!r} (known: {', '.join(sorted(envs))})")
    return envs[name]


def load_spec(env: EnvironmentSettings, job: str) -> JobSpec:
    try:
        return env.job(job)
    except KeyError:
        known = ", ".join(sorted(j.name for j in env.jobs)) or "none"
        raise SubmitError(
            f"JOB: unknown job {job!r} in environment {env.name!r} (known: {known})"
        ) from None


def declaration_files(spec: JobSpec) -> list[Path]:
    """Source files whose change makes the synthesized JSON stale: the module that declares
    the job (found by identity among loaded modules, since the registry imports it) and the
    environments file."""
    files: list[Path] = []
    for mod in list(sys.modules.values()):
        name = getattr(mod, "__name__", "")
        if not name.startswith("jobs.") or name == "jobs.registry":
            continue
        if any(value is spec for value in vars(mod).values()):
            src = inspect.getsourcefile(mod)
            if src:
                files.append(Path(src))
    from stacks.environments import environments_file

    files.append(environments_file())
    return files


@dataclass(frozen=True)
class SynthJob:
    path: Path
    data: dict[str, Any]


def stack_files(env: EnvironmentSettings, out: str | None = None,
                client: str | None = None) -> list[Path]:
    """The environment's synthesized stacks, as the local cloud runs them: its platform
    stack's `cdk.tf.json`, then its client shards' (`tfjson.stack_group`); [] when the
    platform stack is not synthesized. With `client`, the stack that holds the client's
    buckets, identities and topics must be among them (its shard after a change of
    `client_shards`: "run synth" otherwise)."""
    from stacks.shards import shard_of, shard_stack_name
    from tfjson import stack_group

    stacks_dir = synth_dir(out) / "stacks"
    group = [p.resolve() for p in stack_group(stacks_dir, env.stack_name)]
    if not group[0].is_file():
        return []
    known = {c.name: c for c in env.clients}
    if client in known and env.client_shards.count:
        shard = shard_stack_name(env.stack_name, shard_of(
            client, known[client].shard, env.client_shards.count))
        if not any(p.parent.name == shard for p in group):
            raise SubmitError(f"run synth: client {client!r} lives in stack {shard}, which "
                              f"{stacks_dir} does not hold (client_shards changed since)")
    return group


def job_json_path(out_dir: Path, env: EnvironmentSettings, job: str) -> Path:
    return out_dir / "jobs" / env.stack_name / f"{job}.json"


def load_job_json(out_dir: Path, env: EnvironmentSettings, spec: JobSpec) -> SynthJob:
    path = job_json_path(out_dir, env, spec.name)
    if not path.is_file():
        raise SubmitError(f"run synth: {path} is missing (`npx cdktn synth` writes it)")
    mtime = path.stat().st_mtime
    for src in declaration_files(spec):
        if src.is_file() and src.stat().st_mtime > mtime:
            raise SubmitError(f"run synth: {path} is older than {src}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SubmitError(f"run synth: cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or not data.get("taskGroups"):
        raise SubmitError(f"run synth: {path} is not a Batch job JSON (no taskGroups)")
    return SynthJob(path, data)
