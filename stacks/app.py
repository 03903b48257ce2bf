"""Build and synthesize the CDK app; write each job's rendered Batch JSON beside the stacks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from stacks.deferred import resolve_file
from stacks.platform import PlatformStack
from stacks.provider import App
from stacks.settings import EnvironmentSettings
from stacks.shards import platform_of, shard_stack_name


def build_app(
    environments: list[EnvironmentSettings], outdir: str | None = None
) -> tuple[App, list[PlatformStack]]:
    app = App(outdir=outdir) if outdir else App()
    stacks = [PlatformStack(app, env) for env in environments]
    return app, stacks


def write_job_json(outdir: Path, stacks: list[PlatformStack]) -> list[Path]:
    """cdktf.out/jobs/<stack>/<job>.json: what the submit helper and reviewers read. The JSON
    of a job no longer declared is removed, so `bin/check` never checks a job that is gone."""
    written = []
    for stack in stacks:
        folder = outdir / "jobs" / stack.settings.stack_name
        folder.mkdir(parents=True, exist_ok=True)
        for name, job in stack.jobs.items():
            path = folder / f"{name}.json"
            path.write_text(json.dumps(job.job_json, indent=2, sort_keys=True) + "\n")
            written.append(path)
        for stale in set(folder.glob("*.json")) - set(written):
            stale.unlink()
    return written


def write_environments(outdir: Path, stacks: list[PlatformStack]) -> list[Path]:
    """cdktf.out/environments/<stack>.json: each stack's settings as synthesized, clients
    onboarded with `onboard_client` included (the one list `bin/submit` should read)."""
    folder = outdir / "environments"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for stack in stacks:
        path = folder / f"{stack.settings.stack_name}.json"
        path.write_text(stack.settings.model_dump_json(indent=2) + "\n")
        written.append(path)
    return written


def write_moved(folder: Path, moved: list[dict[str, str]]) -> None:
    """`moved.tf`: one `moved` block per address change (HCL: Terraform reads it with the
    stack's JSON; developer.hashicorp.com/terraform/language/modules/develop/refactoring)."""
    path = folder / "moved.tf"
    blocks = [f"moved {{\n  from = {m['from']}\n  to   = {m['to']}\n}}\n" for m in moved]
    if blocks:
        path.write_text("# Written by stacks/app.py: address changes kept for existing states.\n"
                        + "\n".join(blocks), encoding="utf-8")
    elif path.exists():
        path.unlink()


def remove_stale_shards(stacks_dir: Path, stack: PlatformStack) -> None:
    """A shard folder the app no longer declares (client_shards.count went down) goes, so no
    reader, `bin/check` or deploy ever sees its old clients (its state stays in the backend:
    docs/clients.md "Shards")."""
    declared = {shard.node.id for shard in stack.shards}
    for folder in stacks_dir.glob(shard_stack_name(stack.settings.stack_name, "*")):
        if folder.is_dir() and folder.name not in declared and \
                platform_of(folder.name) == stack.settings.stack_name:
            shutil.rmtree(folder)


def finish(outdir: Path, stacks: list[PlatformStack]) -> None:
    """After `app.synth()`: client tables and workflow sources into the stack files (see
    stacks/deferred.py), then the job JSON and the environment files."""
    from stacks.outputs import write_outputs

    for stack in stacks:
        resolve_file(outdir / "stacks" / stack.settings.stack_name / "cdk.tf.json")
        for shard in stack.shards:
            resolve_file(outdir / "stacks" / shard.node.id / "cdk.tf.json")
        remove_stale_shards(outdir / "stacks", stack)
        write_moved(outdir / "stacks" / stack.settings.stack_name, stack.moved())
        write_outputs(outdir / "stacks" / stack.settings.stack_name / "cdk.tf.json",
                      stack.settings)
    write_job_json(outdir, stacks)
    write_environments(outdir, stacks)


def synth(environments: list[EnvironmentSettings], outdir: str | None = None) -> Path:
    app, stacks = build_app(environments, outdir)
    app.synth()
    out = Path(app.outdir)
    finish(out, stacks)
    return out
