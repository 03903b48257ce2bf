"""bin/demo's story (examples/demo.py) end to end, with IAM on, on its own local cloud and
synth dir: it must pass and stay fast (docs/operations.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stacks.environments import dev

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_the_demo_tells_the_client_story_with_iam_on(tmp_path: Path) -> None:
    from local.backend import LocalBackend

    root, synth = tmp_path / "local", tmp_path / "cdktf.out"
    env = {**os.environ, "GPUB_LOCAL_ROOT": str(root), "GPUB_SYNTH_DIR": str(synth),
           "PYTHONPATH": str(REPO)}
    env.pop("STORAGE_EMULATOR_HOST", None)
    try:
        proc = subprocess.run([sys.executable, "-m", "examples.demo"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=240)
    finally:
        LocalBackend(root=root).stop(timeout=5)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["exit"] == 0
    err = " ".join(proc.stderr.split())  # rich wraps long lines
    # The steps of the story, in order, each as it happened.
    marker = dev().layout.job_markers("uppercase")  # the batch marker started the run
    assert f"batch-uppercase <- {marker}" in err and ": SUCCEEDED" in err, err[-3000:]
    assert "run-acme@" in err  # the job's identity (the table may shorten the email)
    assert '"THE QUICK BROWN FOX"' in proc.stdout  # bin/submit cat, as client-acme
    assert "acme/" in err and ": SUCCEEDED (4 inputs" in err
    assert "403 Forbidden" in err and (
        "client-acme@example-ml-dev-clients.iam.gserviceaccount.com does not have "
        "storage.objects.get access") in err
    # The demo reads the root and synth dir every command reads (one rule).
    assert (root / "servers.json").is_file() and (synth / "stacks" / "platform-dev").is_dir()
