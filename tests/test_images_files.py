"""Static checks of the image definitions: Dockerfiles, local.json, build config."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "images"
NAMES = ["runner", "uppercase", "embed"]


def dockerfile(name: str) -> str:
    return (IMAGES / name / "Dockerfile").read_text()


@pytest.mark.parametrize("name", NAMES)
def test_dockerfile_is_pinned_non_root_and_runs_the_runner(name: str) -> None:
    text = dockerfile(name)
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert froms and all(re.search(r"@sha256:[0-9a-f]{64}$", f) for f in froms), froms
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert 'ENTRYPOINT ["python", "-m", "gpub_runner"]' in text
    # Every COPY source exists in the build context (the images/ folder).
    for src in re.findall(r"^COPY\s+(?:--\S+\s+)*(\S+)\s+\S+$", text, re.M):
        assert (IMAGES / src).exists(), f"{name}/Dockerfile copies missing {src}"


@pytest.mark.parametrize("name", ["uppercase", "embed"])
def test_image_handler_matches_local_json(name: str) -> None:
    handler = re.search(r"GPUB_HANDLER=(\S+)", dockerfile(name))
    assert handler is not None
    local = json.loads((IMAGES / name / "local.json").read_text())
    assert local["entrypoint"] == ["python", "-m", "gpub_runner"]
    assert local["env"]["GPUB_HANDLER"] == handler.group(1).rstrip("\\").strip()
    for path in local["pythonpath"]:
        assert (ROOT / path).is_dir(), path
    module, _, func = local["env"]["GPUB_HANDLER"].partition(":")
    assert (ROOT / local["pythonpath"][-1] / f"{module}.py").is_file()
    if name == "uppercase":  # cheap to import; embed's import is covered by its own test
        assert callable(getattr(importlib.import_module(module), func))


def test_cloudbuild_builds_the_named_image_into_the_registry() -> None:
    """One parameterized build (images/build.sh runs it once per image of versions.json):
    `_IMAGE` picks the Dockerfile, the tag is `_TAG` (the image's version)."""
    config = yaml.safe_load((IMAGES / "cloudbuild.yaml").read_text())
    (step,) = config["steps"]
    args = step["args"]
    ref = "${_REGION}-docker.pkg.dev/${PROJECT_ID}/${_REPO}/${_IMAGE}:${_TAG}"
    assert args[args.index("-f") + 1] == "${_IMAGE}/Dockerfile"
    assert args[args.index("-t") + 1] == ref and config["images"] == [ref]
    assert config["substitutions"]["_REPO"] == "batch-images"
    versions = json.loads((IMAGES / "versions.json").read_text())["images"]
    assert sorted(versions) == sorted(NAMES)
    for name in versions:
        assert (IMAGES / name / "Dockerfile").is_file(), name


def test_build_script_parses_and_refuses_missing_args() -> None:
    script = IMAGES / "build.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert proc.returncode == 2 and "--project" in proc.stderr


def test_runner_package_is_installable_metadata() -> None:
    meta = tomllib.loads((IMAGES / "runner" / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "gpub-runner"
    assert all("==" in dep for dep in meta["project"]["dependencies"])
    assert (IMAGES / "runner" / "src" / "gpub_runner" / "__main__.py").is_file()


def test_embed_requirements_match_root_pins() -> None:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = set(root["project"]["optional-dependencies"]["embed"]) | set(
        root["project"]["dependencies"])
    reqs = [line for line in (IMAGES / "embed" / "requirements.txt").read_text().splitlines()
            if line and not line.startswith("#")]
    assert reqs and all(r in pins for r in reqs), reqs
