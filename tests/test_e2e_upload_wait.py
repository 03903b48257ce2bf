"""Issue 20's "done when", as a user types it: `bin/submit upload DIR --client acme --job
uppercase --env dev --local --wait` with 1,200 files ends in one SUCCEEDED outcome whose input
count is 1,200 (the job plans itself from the prefix: no listing in the workflow), and
`bin/submit results --client acme --env dev --local --json` shows that outcome.

The whole path is real: the synthesized dev stack, the IAM layer, the per-job marker
notification, the deployed workflow in the local Workflows runtime, the local Batch server
running the runner, the client's results subscription."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.backend import LocalBackend

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
FILES = int(os.environ.get("GPUB_E2E_UPLOAD_FILES", "1200"))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, synth_dir: Path) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("upload-wait")
    try:
        yield tmp
    finally:
        LocalBackend(root=tmp / "local").stop()


def _submit(root: Path, synth: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("STORAGE_EMULATOR_HOST", "GPUB_ENV")}
    env.update(GPUB_LOCAL_ROOT=str(root / "local"), GPUB_SYNTH_DIR=str(synth),
               GPUB_SUBMITTER="ci-test")
    return subprocess.run([str(REPO / "bin" / "submit"), *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=1200)


def test_upload_wait_of_1200_files_ends_in_one_succeeded_outcome(root: Path,
                                                                 synth_dir: Path) -> None:
    data = root / "batch"
    data.mkdir()
    for i in range(FILES):
        (data / f"f{i:04d}.jsonl").write_text(json.dumps({"id": i, "text": f"row {i}"}) + "\n")
    up = _submit(root, synth_dir, "upload", str(data), "--client", "acme", "--job", "uppercase",
                 "--env", "dev", "--local", "--wait")
    assert up.returncode == 0, (up.stdout[-2000:], up.stderr[-4000:])
    got = _submit(root, synth_dir, "results", "--client", "acme", "--env", "dev", "--local",
                  "--json")
    assert got.returncode == 0, got.stderr[-2000:]
    text = got.stdout.strip()
    outcomes = json.loads(text) if text.startswith("[") else [
        json.loads(line) for line in text.splitlines() if line.strip()]
    mine = [o for o in outcomes if o.get("job") == "uppercase"]
    assert len(mine) == 1, mine
    (outcome,) = mine
    assert outcome["state"] == "SUCCEEDED", outcome
    assert int(outcome["inputs"]) == FILES and int(outcome["refused"]) == 0
