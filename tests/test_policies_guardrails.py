"""Job guardrails, run on the real code with job JSON fixtures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from policies.guardrails import check_job, looks_secret, run_cost_bound_usd
from stacks.settings import Guardrails

JOBS = Path(__file__).parent / "fixtures" / "policies" / "jobs"
DEV = Guardrails(
    max_run_duration_s=6 * 3600,
    allowed_regions=["europe-west4"],
    max_gpus_per_job=4,
    max_parallelism=50,
    max_cost_per_run_usd=50.0,
)


def load(name: str) -> dict:
    return json.loads((JOBS / f"{name}.json").read_text())


@pytest.mark.parametrize("name", ["good_gpu_spot", "good_n1_t4_standard"])
def test_good_jobs_pass(name: str) -> None:
    assert check_job(load(name), DEV, env_name="dev") == []


@pytest.mark.parametrize("n", range(1, 12))
def test_the_older_failing_fixtures_still_fail(n: int) -> None:
    """The first rules' fixtures: their ids kept their meaning (the registry's own fixtures
    are in tests/test_job_rules.py)."""
    violations = check_job(load(f"gpub_job_{n}_fail"), DEV, env_name="dev")
    assert f"GPUB_JOB_{n}" in {v.rule_id for v in violations}, violations
    assert all(v.path and v.message for v in violations)


def test_messages_name_the_field_and_the_allowed_value() -> None:
    [v] = check_job(load("gpub_job_1_fail"), DEV, env_name="dev")
    assert v.path == "allocationPolicy.instances[0].policy.accelerators[0]"
    assert "g2-standard-8 carries 1 nvidia-l4; got 2" in v.message


def test_cost_bound_is_tasks_attempts_duration_price() -> None:
    job = load("good_gpu_spot")  # 1 task, 3 retries, 1 h, g2-standard-8 Spot
    from jobs.catalog import get_machine

    machine = get_machine("g2-standard-8")
    assert machine is not None and machine.price_spot_usd_h is not None
    assert run_cost_bound_usd(job) == pytest.approx(4 * 1.0 * machine.price_spot_usd_h)


def test_accepts_the_settings_guardrails_model() -> None:
    from stacks.settings import Guardrails

    limits = Guardrails(max_run_duration_s=1800)
    violations = check_job(load("good_gpu_spot"), limits, env_name="dev")
    assert [v.rule_id for v in violations] == ["GPUB_JOB_3"]


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("API_KEY", True),
        ("dbPassword", True),
        ("AUTH-TOKEN", True),
        ("CLIENT_SECRET", True),
        # names the short word list missed
        ("DB_PASS", True),
        ("PRIVATEKEY", True),
        ("CREDENTIAL", True),
        ("BEARER", True),
        ("GH_PAT", True),
        # more of the same families
        ("HF_TOKEN", True),
        ("GITHUB_TOKENS", True),
        ("APITOKEN", True),
        ("SSH_PRIVATE_KEY", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("slackWebhookSecret", True),
        ("DBPASS", True),
        ("MYSQL_PWD", True),
        ("GPG_PASSPHRASE", True),
        ("JWT", True),
        ("CREDS_FILE", True),
        ("APIKEYS", True),
        # look-alikes that are not secrets
        ("KEYBOARD_LAYOUT", False),
        ("TOKENIZER_NAME", False),
        ("GPUB_BATCH_SIZE", False),
        ("PASSAGE_COUNT", False),
        ("COMPASS_HEADING", False),
        ("PATH", False),
        ("PATTERN", False),
        ("MONKEY_MODE", False),
        ("BYPASS_CACHE", False),
        ("SECRETARY_NAME", False),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert looks_secret(name) is secret


def test_guardrails_import_stays_light() -> None:
    code = (
        "import sys, policies.guardrails; "
        "bad = [m for m in sys.modules if m.startswith(('checkov', 'cdktn', 'cdktf', "
        "'constructs', 'stacks.provider', 'stacks.platform'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_gpu_boot_disk_and_logging_findings_name_the_fix() -> None:
    job = load("good_gpu_spot")
    del job["allocationPolicy"]["instances"][0]["policy"]["bootDisk"]
    del job["logsPolicy"]
    found = {v.rule_id: v for v in check_job(job, DEV, env_name="dev")}
    assert found["GPUB_JOB_10"].path == "allocationPolicy.instances[0].policy.bootDisk.sizeGb"
    assert "add bootDisk.sizeGb >= 100" in found["GPUB_JOB_10"].message
    assert "add logsPolicy.destination: CLOUD_LOGGING" in found["GPUB_JOB_11"].message
    [small] = check_job(load("gpub_job_10_fail"), DEV, env_name="dev")
    assert "30 GB is small" in small.message


def test_cpu_jobs_need_no_big_boot_disk() -> None:
    job = load("good_gpu_spot")
    policy = job["allocationPolicy"]["instances"][0]["policy"]
    policy.update(machineType="e2-standard-4", bootDisk={"sizeGb": "10"})
    del policy["accelerators"]
    assert "GPUB_JOB_10" not in {v.rule_id for v in check_job(job, DEV, env_name="dev")}


def test_declared_jobs_rendered_for_an_environment_pass_the_job_rules() -> None:
    """Environment defaults (drivers, 100 GB GPU disk, logging) satisfy the opinions."""
    from jobs import RenderContext, to_batch_json
    from jobs.registry import ALL_JOBS
    from policies.job_rules import ids

    job_rules = ids(scope="job")
    for spec in ALL_JOBS.values():
        env = RenderContext(
            env_name="dev", env_kind="dev", project_id="p", region="europe-west4",
            registry_host="europe-west4-docker.pkg.dev/p/batch-images",
            job_service_account_email=f"job-{spec.name}@p.iam.gserviceaccount.com",
        )  # fmt: skip
        found = check_job(to_batch_json(spec, env), DEV, env_name="dev")
        assert [v for v in found if v.rule_id in job_rules] == [], spec.name
