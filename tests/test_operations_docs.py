"""docs/operations.md and its pipeline file: present, consistent, and keyless."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "deploy.yml"


def _workflow() -> dict[Any, Any]:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job["steps"])


def _uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in _steps(job) if str(s.get("uses", "")).startswith(action + "@")]


def test_pipeline_tests_checks_and_uploads_sarif() -> None:
    job = _workflow()["jobs"]["test"]
    assert any(s.get("run") == "bin/test" for s in _steps(job))
    upload = _uses(job, "github/codeql-action/upload-sarif")
    assert upload and upload[0]["with"]["sarif_file"] == "reports/results_sarif.sarif"
    assert upload[0].get("if") == "always()"  # findings are published when the check fails
    assert job["permissions"]["security-events"] == "write"
    # bin/check writes exactly that file (policies/check_report.py).
    assert 'SARIF_FILE = "results_sarif.sarif"' in (REPO / "policies/check_report.py").read_text()


def test_diff_on_pull_requests_and_deploy_on_main_with_wif_only() -> None:
    wf = _workflow()
    triggers = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads `on` as true
    assert "pull_request" in triggers and triggers["push"]["branches"] == ["main"]
    diff, deploy = wf["jobs"]["diff"], wf["jobs"]["deploy"]
    assert "pull_request" in diff["if"] and "refs/heads/main" in deploy["if"]
    # One diff per state: the platform stack and each of its client shards.
    assert any("bin/cdktn diff" in str(s.get("run", "")) and "-clients-*" in str(s["run"])
               for s in _steps(diff))
    assert any(str(s.get("run", "")).startswith("bin/cdktn deploy") for s in _steps(deploy))
    assert any(s.get("run") == "bin/check" for s in _steps(deploy))
    for job in (diff, deploy):
        auth = _uses(job, "google-github-actions/auth")
        assert auth, job
        assert set(auth[0]["with"]) == {"workload_identity_provider", "service_account"}
        assert job["permissions"]["id-token"] == "write"
    text = WORKFLOW.read_text()
    assert "credentials_json" not in text and "GOOGLE_APPLICATION_CREDENTIALS" not in text
    diff_sa = _uses(diff, "google-github-actions/auth")[0]["with"]["service_account"]
    deploy_sa = _uses(deploy, "google-github-actions/auth")[0]["with"]["service_account"]
    # separate identities: the plan's come from its matrix (one per environment project)
    planners = {m["planner"] for m in diff["strategy"]["matrix"]["include"]}
    assert diff_sa == "${{ vars[matrix.planner] }}" and all("PLANNER" in p for p in planners)
    assert "DEPLOYER" in deploy_sa


def test_operations_guide_covers_the_issue() -> None:
    text = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    for heading in ("state bucket", "deployer", "Continuous deployment", "Offboarding",
                    "Upgrades", "Releases", "Terraform outputs"):
        assert re.search(rf"^## .*{heading}", text, re.MULTILINE | re.IGNORECASE), heading
    assert "roles/owner" in text and not re.search(r"\| `roles/(owner|editor)`", text)
    assert ".github/workflows/deploy.yml" in text


def test_changelog_has_the_current_version() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{version}]" in changelog and "## [Unreleased]" in changelog
