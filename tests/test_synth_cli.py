"""Synth works three ways and all produce the same stacks: main.py, `cdktn synth`, `cdktf synth`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _strip(doc: dict) -> dict:
    # The CLIs stamp their own version into the metadata block; everything else must match.
    doc = dict(doc)
    doc.pop("//", None)
    return doc


def _cli_synth(cli: str, out: Path) -> dict[str, dict]:
    # bin/<cli> runs the npm CLI from node_modules (with the Node 20 shim for cdktn).
    binary = ROOT / "bin" / cli
    env = {
        **os.environ,
        "CHECKPOINT_DISABLE": "1",
        "CDKTF_DISABLE_PLUGIN_CACHE_ENV": "1",
        "DISABLE_VERSION_CHECK": "1",
    }
    result = subprocess.run(
        [str(binary), "synth", "--output", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "end-of-life" not in result.stdout + result.stderr
    return {
        p.parent.name: _strip(json.loads(p.read_text()))
        for p in sorted((out / "stacks").glob("*/cdk.tf.json"))
    }


@pytest.mark.slow
@pytest.mark.parametrize("cli", ["cdktn", "cdktf"])
def test_cli_synth_matches_main_py(cli: str, synth_dir: Path, tmp_path: Path) -> None:
    expected = {
        p.parent.name: _strip(json.loads(p.read_text()))
        for p in sorted((synth_dir / "stacks").glob("*/cdk.tf.json"))
    }
    got = _cli_synth(cli, tmp_path / "out")
    assert sorted(got) == ["platform-dev", "platform-prod"]
    assert got == expected
    # The job JSON lands beside the stacks whichever way synth runs.
    assert sorted(p.name for p in (tmp_path / "out" / "jobs" / "platform-dev").iterdir()) == [
        "embed.json",
        "uppercase.json",
    ]
    shutil.rmtree(tmp_path / "out", ignore_errors=True)
