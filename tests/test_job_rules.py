"""The job-rule registry (policies/job_rules.py): every rule has a passing and a failing fixture
that the checks agree with, the docs' table is the registry's, ids keep their meaning."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from policies import job_rules
from policies.guardrails import Violation, check_job
from policies.image_versions import check_images
from stacks.environments import dev

DOCS = Path(__file__).resolve().parents[1] / "docs" / "policies.md"


def findings(job: dict) -> list[Violation]:
    env = dev()
    return check_job(job, env.guardrails, env_name=env.name) + check_images(job)


@pytest.mark.parametrize("rule", job_rules.RULES, ids=lambda r: r.id)
def test_failing_fixture_fails_and_passing_fixture_passes(rule: job_rules.JobRule) -> None:
    for which in ("passing", "failing"):
        assert rule.fixture(which).is_file(), f"{rule.id} has no {which} fixture"
    failing = json.loads(rule.fixture("failing").read_text())
    passing = json.loads(rule.fixture("passing").read_text())
    assert rule.id in {v.rule_id for v in findings(failing)}
    assert rule.id not in {v.rule_id for v in findings(passing)}, findings(passing)


def test_passing_fixtures_have_no_errors() -> None:
    for rule in job_rules.RULES:
        job = json.loads(rule.fixture("passing").read_text())
        assert not [v for v in findings(job) if v.severity == "error"], rule.id


def test_every_finding_is_a_registered_rule() -> None:
    seen: set[str] = set()
    for path in job_rules.FIXTURES.glob("*.json"):
        seen |= {v.rule_id for v in findings(json.loads(path.read_text()))}
    assert seen <= set(job_rules.BY_ID)
    assert seen == set(job_rules.BY_ID)  # every rule fires on some fixture


def test_ids_are_numbered_once_and_keep_their_meaning() -> None:
    numbers = [int(r.id.rsplit("_", 1)[1]) for r in job_rules.RULES]
    assert numbers == list(range(1, len(numbers) + 1))
    # GPUB_JOB_3 is the run-time ceiling; "no task group" has its own id.
    assert "maxRunDuration" in job_rules.rule("GPUB_JOB_3").what
    assert "task group" in job_rules.rule("GPUB_JOB_13").what
    assert check_job({"taskGroups": []}, env_name="dev")[0].rule_id == "GPUB_JOB_13"


def test_docs_table_is_the_registry() -> None:
    text = DOCS.read_text(encoding="utf-8")
    start = text.index("| id | severity | scope |")
    end = text.index("\n\n", start)
    assert text[start:end + 1] == job_rules.markdown_table()


def test_every_rule_cites_a_google_page() -> None:
    for rule in job_rules.RULES:
        assert re.match(r"^https://cloud\.google\.com/", rule.source), rule.id
        assert rule.severity in ("error", "warning", "info")
