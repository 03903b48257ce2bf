"""Job documents in the shapes of Google's Batch docs and samples (tests/fixtures/asis/jobs/,
written for this repo): each imports exactly AND dry-runs as written in dev, with exit 0 (its
printed changes and a cost bound) or exit 2 naming the field, the limit and the fix."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.cloud import batch_v1

from jobs import from_batch_json, to_batch_json
from jobs.batch_proto import OUTPUT_ONLY
from stacks.environments import dev
from submit import asis
from submit.errors import SubmitError

REPO = Path(__file__).resolve().parents[1]
JOBS = REPO / "tests" / "fixtures" / "asis" / "jobs"
FILES = sorted(JOBS.iterdir())
# file -> ("ok", changes that must be printed) or ("refused", the message's field.*fix)
EXPECTED: dict[str, tuple[str, str]] = {
    "hello_script.json": ("ok", "maxRunDuration: unset -> '21600s'"),
    "no_allocation_policy.json": ("refused", r"GPUB_JOB_20 allocationPolicy.instances\[0\]."
                                  r"policy.machineType: cannot bound.*set policy.machineType.*"
                                  r"ceiling of 50.00 USD"),
    "default_compute_account.json": ("refused", r"allocationPolicy.serviceAccount.email: "
                                     r"'123456789012-compute@.*remove the field"),
    "instance_template.json": ("refused", r"allocationPolicy.serviceAccount.email: this job "
                               r"uses instance template.*create the template with"),
    "long_run_duration.json": ("refused", r"GPUB_JOB_3 taskGroups\[0\].taskSpec.maxRunDuration:"
                               r" 604800s exceeds the dev ceiling of 21600s: set"),
    "gcs_volume.json": ("ok", "serviceAccount.email: unset -> 'batch-adhoc@"),
    "gcs_volume_gs_scheme.json": ("refused", r"GPUB_JOB_15 taskGroups\[0\].taskSpec.volumes\[0\]"
                                  r".gcs.remotePath: 'gs://.*write 'example-ml-dev-shared/"),
    "nfs_volume.json": ("ok", "allowedLocations: unset -> ['regions/europe-west4']"),
    "secret_manager.json": ("ok", "serviceAccount.email: unset"),
    "spot_retries_no_policy.json": ("ok", "serviceAccount.email: unset"),
    "spot_retry_on_preemption.json": ("ok", "allowedLocations: unset"),
    "spot_no_retries.json": ("ok", "serviceAccount.email: unset"),
    "several_task_groups.json": ("ok", "serviceAccount.email: unset"),
    "gpu_l4_spot.yaml": ("ok", "allowedLocations: unset"),
    "gpu_t4_n1.json": ("ok", "serviceAccount.email: unset"),
    "task_environments.json": ("ok", "serviceAccount.email: unset"),
    "other_region.json": ("refused", r"GPUB_JOB_4 allocationPolicy.location.allowedLocations: "
                          r"regions/us-central1 is outside.*use regions/R"),
    "flex_start_l4.json": ("ok", "serviceAccount.email: unset"),
}


def _expected_doc(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())  # JSON is YAML too
    return {k: v for k, v in data.items() if k not in OUTPUT_ONLY}


def test_at_least_fifteen_shapes_each_with_an_expectation() -> None:
    assert len(FILES) >= 15
    assert {p.name for p in FILES} == set(EXPECTED)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_imports_exactly(path: Path) -> None:
    spec = from_batch_json(path.read_text(), name="sample")
    rendered = json.dumps(to_batch_json(spec))
    assert batch_v1.Job.from_json(rendered) == batch_v1.Job.from_json(
        json.dumps(_expected_doc(path)))


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_dry_runs_as_written_in_dev(path: Path) -> None:
    outcome, pattern = EXPECTED[path.name]
    try:
        a, conn, created = asis.run_as_written(
            job=None, config=path, env=dev(), backend=None,  # type: ignore[arg-type]
            client=None, parallelism=None, max_cost=None, out_dir=None, submitter="ci",
            dry_run=True)
    except SubmitError as exc:
        assert outcome == "refused", f"{path.name} refused: {exc}"
        assert re.search(pattern, str(exc)), str(exc)
        return
    assert outcome == "ok", f"{path.name} was not refused"
    assert (conn, created) == (None, None)
    assert any(pattern in c for c in a.changes), a.changes
    assert a.cost.usd is not None and a.cost.usd <= dev().guardrails.max_cost_per_run_usd
    assert a.job["allocationPolicy"]["serviceAccount"]["email"] == dev().adhoc_sa_email


def test_flex_start_is_bounded_by_on_demand() -> None:
    a = asis.adapt(dev(), "flex", asis.load_config(JOBS / "flex_start_l4.json"), client=None,
                   parallelism=None, submitter="ci")
    assert "FLEX_START (the on-demand price bounds it)" in a.cost.why


def test_bin_submit_dry_run_prints_changes_and_the_bound() -> None:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'images/runner/src'}"}
    ok = subprocess.run([sys.executable, "-m", "submit", "run", "--config",
                         str(JOBS / "hello_script.json"), "--env", "dev", "--dry-run"],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "changed: taskGroups[0].taskSpec.maxRunDuration: unset -> '21600s'" in ok.stderr
    assert "cost: worst case $" in ok.stderr
    refused = subprocess.run([sys.executable, "-m", "submit", "run", "--config",
                              str(JOBS / "no_allocation_policy.json"), "--env", "dev",
                              "--dry-run"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    lines = [ln for ln in refused.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "cannot bound" in lines[0] and "Traceback" not in refused.stderr
