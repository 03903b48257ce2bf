"""The workflow source builder's inputs for tests (a render context, the `embed` job's
parameters), its steps by name, and workflows-emulator made importable."""

from __future__ import annotations

from typing import Any

from jobs.declared import embed
from jobs.render import RenderContext, render_job
from stacks.workflow_source import WorkflowParams, build_workflow

CTX = RenderContext(
    env_name="dev", env_kind="dev", project_id="p-dev", region="europe-west4",
    registry_host="europe-west4-docker.pkg.dev/p-dev/batch-images",
    job_service_account_email="job-embed@p-dev.iam.gserviceaccount.com",
)


def params(job_json: dict[str, Any] | None = None, **kw: Any) -> WorkflowParams:
    base: dict[str, Any] = dict(
        job="embed", env="dev", project_id="p-dev", job_region="europe-west4",
        clients=("acme", "globex"),
        job_json=job_json if job_json is not None else render_job(embed.SPEC, CTX),
        files_per_task=20, max_parallelism=4,
    )
    base.update(kw)
    return WorkflowParams(**base)


def steps(p: WorkflowParams) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for step in build_workflow(p)["main"]["steps"]:
        out.update(step)
    return out


def emulator() -> Any:
    """workflows_emulator.main with the local cloud's patches (local/workflows.py)."""
    from local.workflows import _emulator

    return _emulator()
