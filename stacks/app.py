"""Build and synthesize the CDK app; write each job's rendered Batch JSON beside the stacks."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from stacks.client_resources import forgotten
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


# `removed` blocks are Terraform 1.7+ (developer.hashicorp.com/terraform/language/resources/
# syntax#removing-resources): a stack that has them says so, in its moved.tf (checkov's JSON
# parser refuses a `required_version` string in cdk.tf.json's `terraform` block; Terraform
# merges the `terraform` blocks of a folder's files).
REMOVED_TERRAFORM_VERSION = ">= 1.7.0"


def write_moved(folder: Path, moved: list[dict[str, str]], removed: Sequence[str] = ()) -> None:
    """`moved.tf`: one `moved` block per address change, and one `removed` block with
    `lifecycle { destroy = false }` per resource the stack no longer declares whose objects
    stay (Terraform forgets every instance of it: `from` names a whole resource, never an
    instance). HCL: Terraform reads it with the stack's JSON (developer.hashicorp.com/
    terraform/language/modules/develop/refactoring); checkov's JSON parser refuses both."""
    path = folder / "moved.tf"
    blocks = [f"moved {{\n  from = {m['from']}\n  to   = {m['to']}\n}}\n" for m in moved]
    if removed:
        blocks.insert(0, f'terraform {{\n  required_version = "{REMOVED_TERRAFORM_VERSION}"\n}}\n')
    blocks += [f"removed {{\n  from = {address}\n\n  lifecycle {{\n    destroy = false\n  }}\n}}\n"
               for address in removed]
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
        # The member grants the clients' policies replaced: only a stack that holds clients
        # (client_shards.count 0) had them; a shard's state starts with the policies.
        write_moved(outdir / "stacks" / stack.settings.stack_name, stack.moved(),
                    forgotten() if stack.home is not None else ())
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
