"""Shared fixtures: the example platform synthesized once per test session (the provider
import costs seconds, so every synth test reads the same output)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

# Every image's source folder is importable in tests (images/<name>/src: a handler module),
# found here rather than listed, so a new job's image needs no test-path edit.
for _src in sorted((Path(__file__).resolve().parents[1] / "images").glob("*/src")):
    if str(_src) not in sys.path:
        sys.path.append(str(_src))


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stacks.app import synth
    from stacks.environments import example_environments

    out = tmp_path_factory.mktemp("cdktf.out")
    return synth(example_environments(), str(out))


@pytest.fixture(scope="session")
def stacks_json(synth_dir: Path) -> dict[str, dict[str, Any]]:
    """{"dev": cdk.tf.json, "prod": cdk.tf.json} of the example app."""
    return {
        env: json.loads((synth_dir / "stacks" / f"platform-{env}" / "cdk.tf.json").read_text())
        for env in ("dev", "prod")
    }
