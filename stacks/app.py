"""Build and synthesize the CDK app; write each job's rendered Batch JSON beside the stacks."""

from __future__ import annotations

import json
from pathlib import Path

from stacks.platform import PlatformStack
from stacks.provider import App
from stacks.settings import EnvironmentSettings


def build_app(
    environments: list[EnvironmentSettings], outdir: str | None = None
) -> tuple[App, list[PlatformStack]]:
    app = App(outdir=outdir) if outdir else App()
    stacks = [PlatformStack(app, env) for env in environments]
    return app, stacks


def write_job_json(outdir: Path, stacks: list[PlatformStack]) -> list[Path]:
    """cdktf.out/jobs/<stack>/<job>.json: what the submit helper and reviewers read."""
    written = []
    for stack in stacks:
        folder = outdir / "jobs" / stack.settings.stack_name
        folder.mkdir(parents=True, exist_ok=True)
        for name, job in stack.jobs.items():
            path = folder / f"{name}.json"
            path.write_text(json.dumps(job.job_json, indent=2, sort_keys=True) + "\n")
            written.append(path)
    return written


def synth(environments: list[EnvironmentSettings], outdir: str | None = None) -> Path:
    app, stacks = build_app(environments, outdir)
    app.synth()
    out = Path(app.outdir)
    write_job_json(out, stacks)
    return out
