"""Images pinned by what a build produced: images/versions.json, images/build.sh records
digests, and bin/check rule GPUB_JOB_12 refuses a registry image no build recorded."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from policies.image_versions import ImageVersion, check_images, load_versions

REPO = Path(__file__).resolve().parents[1]
REG = "europe-west4-docker.pkg.dev/example-ml-dev/batch-images"
DIGEST = "sha256:" + "a" * 64
VERSIONS = {"uppercase": ImageVersion("1.0.0", {REG: DIGEST})}


def _job(uri: str) -> dict[str, Any]:
    return {"taskGroups": [{"taskSpec": {"runnables": [{"container": {"imageUri": uri}}]}}]}


@pytest.mark.parametrize(("uri", "needle"), [
    (f"{REG}/uppercase:1.0.0", None),
    (f"{REG}/uppercase@{DIGEST}", None),
    ("python:3.11-slim", None),  # not the platform's registry: not ours to check
    (f"{REG}/uppercase:9.9.9", "tag '9.9.9' was never built"),
    (f"{REG}/uppercase", "tag 'latest' was never built"),
    (f"{REG}/uppercase@sha256:{'b' * 64}", "digest not recorded"),
    (f"{REG}/nosuch:1.0.0", "no build of image 'nosuch'"),
])
def test_registry_images_must_be_recorded(uri: str, needle: str | None) -> None:
    found = check_images(_job(uri), VERSIONS, require_digests=False)
    if needle is None:
        assert found == []
    else:
        assert len(found) == 1 and needle in found[0].message
        assert found[0].rule_id == "GPUB_JOB_12"


def test_the_deploy_pipeline_also_requires_a_pushed_digest() -> None:
    other = "europe-west4-docker.pkg.dev/example-ml-prod/batch-images"
    assert check_images(_job(f"{REG}/uppercase:1.0.0"), VERSIONS, require_digests=True) == []
    found = check_images(_job(f"{other}/uppercase:1.0.0"), VERSIONS, require_digests=True)
    assert found and "no pushed digest recorded" in found[0].message


def test_declared_jobs_use_the_recorded_versions() -> None:
    """One place says which version of each image a job uses: versions.json."""
    from jobs.render import render_job
    from stacks.environments import load_environments

    versions = load_versions()
    for env in load_environments():
        for spec in env.jobs:
            rendered = render_job(spec, env.render_context(spec.name))
            assert check_images(rendered, versions, require_digests=False) == [], spec.name


@pytest.mark.slow
def test_bin_check_fails_on_a_tag_no_build_produced(tmp_path: Path) -> None:
    from jobs.render import render_job
    from stacks.environments import dev

    env = dev()
    job = render_job(env.job("uppercase"), env.render_context("uppercase"))
    container = job["taskGroups"][0]["taskSpec"]["runnables"][0]["container"]
    container["imageUri"] = container["imageUri"].rsplit(":", 1)[0] + ":2.0.0"
    bad = tmp_path / "uppercase.json"
    bad.write_text(json.dumps(job))
    proc = subprocess.run([str(REPO / "bin" / "check"), "--job-file", str(bad), "--env", "dev",
                           "--reports", str(tmp_path / "reports")], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "FAILED GPUB_JOB_12" in proc.stdout and "tag '2.0.0' was never built" in proc.stdout


def test_build_records_the_pushed_digest_and_never_moves_a_tag(tmp_path: Path) -> None:
    """images/build.sh against a stand-in `gcloud` (no project here): it builds each image
    with the version from versions.json, records the digest the registry reports, and
    refuses to rebuild a version whose digest is recorded."""
    images = tmp_path / "images"
    images.mkdir()
    for name in ("build.sh", "record_digest.py", "versions.json", "cloudbuild.yaml"):
        shutil.copy2(REPO / "images" / name, images / name)
    for name in ("runner", "uppercase", "embed"):
        (images / name).mkdir()
        (images / name / "Dockerfile").write_text("FROM scratch\n")
    fake = tmp_path / "bin" / "gcloud"
    fake.parent.mkdir()
    fake.write_text(f'#!/usr/bin/env bash\necho "$*" >> {tmp_path}/calls\n'
                    f'[[ "$1 $2" == "artifacts docker" ]] && echo "{DIGEST}"\nexit 0\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    args = [str(images / "build.sh"), "--project", "example-ml-dev", "--region",
            "europe-west4", "uppercase"]
    first = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    assert first.returncode == 0, first.stderr
    calls = (tmp_path / "calls").read_text()
    assert "_IMAGE=uppercase,_TAG=1.0.0" in calls
    assert f"artifacts docker images describe {REG}/uppercase:1.0.0" in calls
    recorded = json.loads((images / "versions.json").read_text())["images"]["uppercase"]
    assert recorded["digests"] == {REG: DIGEST}

    again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    assert again.returncode == 0 and "already built" in again.stderr
    assert (tmp_path / "calls").read_text() == calls  # nothing built or pushed again
