"""Shared fixtures: the example platform synthesized once per test session (the provider
import costs seconds, so every synth test reads the same output)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stacks.app import synth
    from stacks.environments import load_environments

    out = tmp_path_factory.mktemp("cdktf.out")
    return synth(load_environments(), str(out))


@pytest.fixture(scope="session")
def stacks_json(synth_dir: Path) -> dict[str, dict[str, Any]]:
    """{"dev": cdk.tf.json, "prod": cdk.tf.json} of the example app."""
    return {
        env: json.loads((synth_dir / "stacks" / f"platform-{env}" / "cdk.tf.json").read_text())
        for env in ("dev", "prod")
    }
