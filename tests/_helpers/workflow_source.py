"""The workflow source builder's steps by name for tests, and workflows-emulator made
importable; the parameters they start from are `bench.workflow_fake.params` (shared with
bench/intake.py)."""

from __future__ import annotations

from typing import Any

from stacks.workflow_source import WorkflowParams, build_workflow


def steps(p: WorkflowParams) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for step in build_workflow(p)["main"]["steps"]:
        out.update(step)
    return out


def emulator() -> Any:
    """workflows_emulator.main with the local cloud's patches (local/workflows.py)."""
    from local.workflows import _emulator

    return _emulator()
