"""One severity model (issue 23 item 2): a job rule refuses in bin/import-job (job scope),
bin/check and bin/submit exactly when its severity is error; warnings and info print. Run on
each rule's failing fixture through the three commands' own code paths."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from policies import job_rules
from policies.check_cli import _demote_warnings
from policies.import_cli import main as import_job
from policies.scan import StackInput, run_guardrails
from stacks.environments import dev
from submit import asis
from submit.errors import SubmitError
from tfjson import facts_from_document

# What bin/submit fills in as a printed change, so the finding cannot remain at submit; and
# GPUB_JOB_14 (an unknown machine type), which has no price either, so GPUB_JOB_20 refuses it.
FILLED_BY_SUBMIT = {"GPUB_JOB_18", "GPUB_JOB_19", "GPUB_JOB_9", "GPUB_JOB_14"}
CHECKED = [r for r in job_rules.RULES if r.scope != "declared"]


def _import_refuses(path: Path) -> bool:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return import_job([str(path)]) == 2


def _submit_refuses(path: Path) -> bool:
    job = json.loads(path.read_text())
    job.get("allocationPolicy", {}).pop("serviceAccount", None)  # submit sets its identity
    try:
        asis.adapt(dev(), "rule", job, client=None, parallelism=None, submitter="ci")
    except SubmitError:
        return True
    return False


def _check_fails(path: Path, rule_id: str, strict: bool = False) -> bool:
    env = dev()
    stack = StackInput(env.stack_name, None, facts_from_document({}, env=env.name, cmek=False),
                       env.guardrails, [path])
    report, located = run_guardrails([stack])
    _demote_warnings(report, located, [stack], strict)
    return rule_id in {r.check_id for r in report.failed_checks}


@pytest.mark.parametrize("rule", CHECKED, ids=lambda r: r.id)
def test_refused_exactly_when_error(rule: job_rules.JobRule) -> None:
    failing = rule.fixture("failing")
    error = rule.severity == "error"
    assert _check_fails(failing, rule.id) is error
    assert _check_fails(failing, rule.id, strict=True) is (rule.severity != "info")
    if rule.scope == "job":
        assert _import_refuses(failing) is error
    if rule.id not in FILLED_BY_SUBMIT:
        assert _submit_refuses(failing) is error


def test_import_checks_no_environment_ceiling(tmp_path: Path) -> None:
    """A week-long maxRunDuration is an environment's business (GPUB_JOB_3), not the importer's."""
    job = json.loads(job_rules.rule("GPUB_JOB_3").fixture("failing").read_text())
    job["taskGroups"][0]["taskSpec"]["maxRunDuration"] = "604800s"
    path = tmp_path / "week.json"
    path.write_text(json.dumps(job))
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        assert import_job([str(path)]) == 0
    assert "GPUB_JOB_3" not in err.getvalue()


def test_an_environment_can_make_warnings_fail_check() -> None:
    env = dev()
    strict_env = env.guardrails.model_copy(update={"warnings_fail_check": True})
    path = job_rules.rule("GPUB_JOB_11").fixture("failing")
    stack = StackInput(env.stack_name, None, facts_from_document({}, env=env.name, cmek=False),
                       strict_env, [path])
    report, located = run_guardrails([stack])
    _demote_warnings(report, located, [stack], strict=False)
    assert "GPUB_JOB_11" in {r.check_id for r in report.failed_checks}
