"""Issue 22: the bootstrap and the first deploy, tested offline.

The generated gcloud commands, the Workload Identity subjects against what the pipeline's
jobs send, the state-bucket condition evaluated with cel-python, the first-deploy order
against .github/workflows/deploy.yml, and docs/operations.md's bootstrap block run as written
(dry-run form: no Google call).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml

from stacks.bootstrap import (
    bootstrap_steps,
    first_deploy_steps,
    github_environment,
    script,
    state_condition,
    subjects,
)
from stacks.environments import load_environments

REPO = Path(__file__).resolve().parents[1]
ENVS = {e.name: e for e in load_environments()}
GITHUB_REPO = "example-org/gpu-batch-platform"


def _argvs(env: str) -> list[tuple[str, ...]]:
    return [s.argv for s in bootstrap_steps(ENVS[env], GITHUB_REPO, "example-ml-admin")]


def _workflow() -> dict[str, Any]:
    data = yaml.safe_load((REPO / ".github" / "workflows" / "deploy.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_state_bucket_is_made_before_anything_uses_it() -> None:
    argvs = _argvs("prod")
    create = next(i for i, a in enumerate(argvs) if a[:4] == ("gcloud", "storage", "buckets",
                                                             "create"))
    assert argvs[create][4:7] == ("gs://example-ml-tfstate", "--project", "example-ml-admin")
    assert {"--uniform-bucket-level-access", "--public-access-prevention"} <= set(argvs[create])
    assert ("gcloud", "storage", "buckets", "update", "gs://example-ml-tfstate",
            "--versioning") in argvs
    grants = [a for a in argvs if a[:4] == ("gcloud", "storage", "buckets",
                                           "add-iam-policy-binding")]
    assert len(grants) == 2 and all(create < argvs.index(g) for g in grants)
    members = {a[a.index("--member") + 1] for a in grants}
    assert members == {"serviceAccount:deployer@example-ml-prod.iam.gserviceaccount.com",
                       "serviceAccount:planner@example-ml-prod.iam.gserviceaccount.com"}


def test_deployer_has_every_grant_and_no_basic_role() -> None:
    argvs = _argvs("prod")
    deployer = "serviceAccount:deployer@example-ml-prod.iam.gserviceaccount.com"
    on_project = {a[a.index("--role") + 1] for a in argvs if a[:3] == (
        "gcloud", "projects", "add-iam-policy-binding") and a[3] == "example-ml-prod"
        and deployer in a}
    assert {"roles/serviceusage.serviceUsageAdmin", "roles/iam.serviceAccountAdmin",
            "roles/resourcemanager.projectIamAdmin", "roles/cloudkms.admin",
            "roles/compute.networkAdmin", "roles/compute.securityAdmin"} <= on_project
    everything = {r for a in argvs if "--role" in a for r in [a[a.index("--role") + 1]]}
    assert not everything & {"roles/owner", "roles/editor", "roles/viewer",
                             "roles/iam.serviceAccountUser"}
    billing = [a for a in argvs if a[:4] == ("gcloud", "billing", "accounts",
                                            "add-iam-policy-binding")]
    assert {(a[4], a[a.index("--role") + 1]) for a in billing} == {
        ("012345-6789AB-CDEF01", "roles/billing.costsManager"),
        ("012345-6789AB-CDEF01", "roles/billing.viewer")}
    clients = {a[a.index("--role") + 1] for a in argvs if a[:4] == (
        "gcloud", "projects", "add-iam-policy-binding", "example-ml-prod-clients")
        and deployer in a}
    assert clients == {"roles/iam.serviceAccountAdmin", "roles/serviceusage.serviceUsageAdmin"}


def test_dev_without_billing_and_cmek_asks_for_neither() -> None:
    argvs = _argvs("dev")
    assert not any(a[:3] == ("gcloud", "billing", "accounts") for a in argvs)
    assert not any("roles/cloudkms.admin" in a for a in argvs)


def test_subjects_are_what_the_pipeline_sends() -> None:
    """Defect: the binding expected `repo:R:ref:refs/heads/main` while the deploy job names an
    environment, whose token's subject is `repo:R:environment:NAME`."""
    wf = _workflow()
    deploy, diff = wf["jobs"]["deploy"], wf["jobs"]["diff"]
    assert deploy["environment"] == "${{ matrix.env }}"
    assert "environment" not in diff  # a pull request token: repo:R:pull_request
    for name, settings in ENVS.items():
        assert github_environment(settings) in deploy["strategy"]["matrix"]["env"]
        assert subjects(GITHUB_REPO, settings) == {
            "deployer": f"repo:{GITHUB_REPO}:environment:{name}",
            "planner": f"repo:{GITHUB_REPO}:pull_request"}
        members = [a[a.index("--member") + 1] for a in _argvs(name)
                   if "roles/iam.workloadIdentityUser" in a]
        assert [m.rsplit("/subject/", 1)[1] for m in members] == [
            f"repo:{GITHUB_REPO}:environment:{name}", f"repo:{GITHUB_REPO}:pull_request"]
        assert all(m.startswith("principal://iam.googleapis.com/projects/${PROJECT_NUMBER}/"
                                "locations/global/workloadIdentityPools/github/") for m in members)


def test_one_credential_set_per_environment_project() -> None:
    """Defect: one credential set served two projects."""
    pools = {a[a.index("--project") + 1] for env in ENVS for a in _argvs(env)
             if a[:4] == ("gcloud", "iam", "workload-identity-pools", "create")}
    assert pools == {"example-ml-dev", "example-ml-prod"}
    diff = _workflow()["jobs"]["diff"]["strategy"]["matrix"]["include"]
    assert {(m["stack"], m["provider"], m["planner"]) for m in diff} == {
        ("platform-dev", "GCP_WIF_PROVIDER_DEV", "GCP_PLANNER_SA_DEV"),
        ("platform-prod", "GCP_WIF_PROVIDER_PROD", "GCP_PLANNER_SA_PROD")}


def _allows(expression: str, rtype: str, name: str, prefix: str | None = None) -> bool:
    env = celpy.Environment()
    program = env.program(env.compile(expression), functions={
        "getAttribute": lambda api, key, default: api.get(key, default)})
    attrs = {"storage.googleapis.com/objectListPrefix": prefix} if prefix is not None else {}
    result = program.evaluate({
        "resource": celpy.json_to_cel({"type": rtype, "name": name}),
        "api": celpy.json_to_cel(attrs)})
    return bool(result) if isinstance(result, celpy.celtypes.BoolType) else False


def test_state_condition_scopes_each_environment_to_its_prefix() -> None:
    expression = state_condition("example-ml-tfstate", "gpu-batch/prod")
    obj, bucket = "storage.googleapis.com/Object", "storage.googleapis.com/Bucket"
    base = "projects/_/buckets/example-ml-tfstate"
    assert _allows(expression, obj, f"{base}/objects/gpu-batch/prod/default.tfstate")
    assert _allows(expression, obj, f"{base}/objects/gpu-batch/prod/default.tflock")
    assert not _allows(expression, obj, f"{base}/objects/gpu-batch/dev/default.tfstate")
    assert not _allows(expression, obj, f"{base}/objects/gpu-batch/production/x")
    assert _allows(expression, bucket, base, "gpu-batch/prod/")
    assert not _allows(expression, bucket, base, "gpu-batch/")
    assert not _allows(expression, bucket, base, "")
    assert not _allows(expression, bucket, "projects/_/buckets/other", "gpu-batch/prod/")


def test_dry_run_prints_a_valid_script_and_calls_nothing(tmp_path: Path) -> None:
    called = tmp_path / "called"
    fake = tmp_path / "gcloud"  # a gcloud that records any call
    fake.write_text(f"#!/bin/sh\ntouch {called}\nexit 1\n")
    fake.chmod(0o755)
    out = subprocess.run([str(REPO / "bin" / "bootstrap"), "prod", "--repo", GITHUB_REPO,
                          "--dry-run"], capture_output=True, text=True, cwd=REPO,
                         timeout=60, env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert not called.exists()
    assert out.stdout == script(ENVS["prod"], bootstrap_steps(ENVS["prod"], GITHUB_REPO))
    (tmp_path / "s.sh").write_text(out.stdout)
    assert subprocess.run(["bash", "-n", str(tmp_path / "s.sh")]).returncode == 0
    commands = [shlex.split(line) for line in out.stdout.splitlines()
                if line.startswith("gcloud ")]
    assert len(commands) == len(bootstrap_steps(ENVS["prod"], GITHUB_REPO))


@pytest.mark.parametrize("args, says", [
    (["staging", "--repo", GITHUB_REPO], "env 'staging' is not an environment"),
    (["prod", "--repo", "not a repo"], "--repo 'not a repo' must be ORG/REPO"),
    (["prod", "--repo", GITHUB_REPO, "--parent", "org/1"], "--parent 'org/1'"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], says: str) -> None:
    out = subprocess.run([str(REPO / "bin" / "bootstrap"), *args, "--dry-run"],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().count("\n") == 0 and says in out.stderr


def _deploy_runs() -> list[str]:
    steps = _workflow()["jobs"]["deploy"]["steps"]
    runs = []
    for step in steps:
        for line in str(step.get("run", "")).splitlines():
            if line.strip():
                env = step.get("env") or {}
                prefix = " ".join(f"{k}={v}" for k, v in env.items())
                runs.append(f"{prefix} {line.strip()}".strip())
    return runs


def test_first_deploy_order_is_the_pipelines() -> None:
    """Defect: the pipeline ran bin/check with GPUB_REQUIRE_IMAGE_DIGESTS=1 before any
    registry existed. Registry (deploy) and images come first; the digest check last."""
    runs = _deploy_runs()
    vars_ = {"${{ vars.GCP_PROJECT }}": "example-ml-prod", "${{ vars.GCP_REGION }}":
             "europe-west4", "${{ matrix.env }}": "prod"}
    resolved = []
    for line in runs:
        for k, v in vars_.items():
            line = line.replace(k, v)
        resolved.append(line.replace('"', ""))
    expected = []
    for step in first_deploy_steps(ENVS["prod"]):
        argv = list(step.argv)
        if argv[0] == "env":
            argv = argv[1:]
        expected.append(" ".join(argv))
    assert resolved == expected
    digests = [i for i, r in enumerate(runs) if "GPUB_REQUIRE_IMAGE_DIGESTS=1" in r]
    deploy = next(i for i, r in enumerate(runs) if r.startswith("bin/cdktn deploy"))
    build = next(i for i, r in enumerate(runs) if r.startswith("images/build.sh"))
    assert digests == [len(runs) - 1] and deploy < build < digests[0]


def test_operations_bootstrap_block_runs_in_dry_run_form(tmp_path: Path) -> None:
    text = (REPO / "docs" / "operations.md").read_text()
    section = text.split("## Bootstrap and first deploy", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    runnable = [b for b in blocks if not b.startswith("# doc: no-run")]
    assert runnable, "the bootstrap section has no runnable block"
    for block in runnable:
        assert "--dry-run" in block
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "gcloud iam workload-identity-pools create github" in done.stdout
        assert "bin/cdktn deploy 'platform-prod{,-clients-*}' --auto-approve" in done.stdout
