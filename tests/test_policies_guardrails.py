"""Job guardrails, run on the real code with job JSON fixtures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from policies.guardrails import RULES, GuardrailLimits, check_job, looks_secret, run_cost_bound_usd

JOBS = Path(__file__).parent / "fixtures" / "policies" / "jobs"
DEV = GuardrailLimits(
    max_run_duration_s=6 * 3600,
    allowed_regions=("europe-west4",),
    max_gpus_per_job=4,
    max_parallelism=50,
    max_cost_per_run_usd=50.0,
)


def load(name: str) -> dict:
    return json.loads((JOBS / f"{name}.json").read_text())


@pytest.mark.parametrize("name", ["good_gpu_spot", "good_n1_t4_standard"])
def test_good_jobs_pass(name: str) -> None:
    assert check_job(load(name), DEV, env_name="dev") == []


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_rule_has_a_failing_fixture(rule: str) -> None:
    violations = check_job(load(f"{rule.lower()}_fail"), DEV, env_name="dev")
    assert rule in {v.rule_id for v in violations}, violations
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
        ("KEYBOARD_LAYOUT", False),
        ("TOKENIZER_NAME", False),
        ("GPUB_BATCH_SIZE", False),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert looks_secret(name) is secret


def test_guardrails_import_stays_light() -> None:
    code = (
        "import sys, policies.guardrails; "
        "bad = [m for m in sys.modules if m.startswith(('checkov', 'cdktn', 'stacks'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
