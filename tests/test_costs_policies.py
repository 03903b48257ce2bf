"""CKV_GPUB_COST_1/2 through the real checkov: their fixtures, and the synthesized prod stack
passes them and fails them once its budgets or alerts are taken out (issue 24)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from policies.guardrails import GuardrailLimits
from policies.scan import StackInput, run_checkov
from tfjson import facts_from_document

FIXTURES = Path(__file__).parent / "fixtures" / "policies" / "terraform"
RULES = ("CKV_GPUB_COST_1", "CKV_GPUB_COST_2")


def _scan(docs: dict[str, dict[str, Any]], tmp: Path) -> dict[tuple[str, str], dict[str, str]]:
    stacks = []
    for stem, doc in docs.items():
        path = tmp / f"{stem}.tf.json"
        path.write_text(json.dumps(doc))
        stacks.append(StackInput(stem, path, facts_from_document(doc), GuardrailLimits()))
    report, _ = run_checkov(stacks)
    out: dict[tuple[str, str], dict[str, str]] = {}
    for r in report.get_all_records():
        if r.check_id in RULES:
            stem = Path(r.file_abs_path).name.removesuffix(".tf.json")
            result: Any = r.check_result["result"]
            out.setdefault((stem, r.check_id), {})[r.resource] = result.name
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory,
            stacks_json: dict[str, dict[str, Any]]) -> dict[tuple[str, str], dict[str, str]]:
    docs = {p.name.removesuffix(".tf.json"): json.loads(p.read_text())
            for p in sorted(FIXTURES.glob("ckv_gpub_cost_*.tf.json"))}
    prod = stacks_json["prod"]
    docs["prod"] = prod
    docs["dev"] = stacks_json["dev"]
    no_budgets = copy.deepcopy(prod)
    no_budgets["resource"]["google_billing_budget"] = {
        k: v for k, v in prod["resource"]["google_billing_budget"].items()
        if "labels" not in v.get("budget_filter", {})}
    docs["prod_without_client_budgets"] = no_budgets
    no_alerts = copy.deepcopy(prod)
    del no_alerts["resource"]["google_monitoring_alert_policy"]
    docs["prod_without_alerts"] = no_alerts
    no_dashboard = copy.deepcopy(prod)
    del no_dashboard["resource"]["google_monitoring_dashboard"]
    docs["prod_without_dashboard"] = no_dashboard
    return _scan(docs, tmp_path_factory.mktemp("cost-rules"))


@pytest.mark.parametrize("rule", RULES)
def test_passing_fixture_passes(results: dict[tuple[str, str], dict[str, str]],
                                rule: str) -> None:
    got = results[(f"{rule.lower()}_pass", rule)]
    assert got and set(got.values()) == {"PASSED"}, got


@pytest.mark.parametrize("rule", RULES)
def test_failing_fixture_fails(results: dict[tuple[str, str], dict[str, str]],
                               rule: str) -> None:
    got = results[(f"{rule.lower()}_fail", rule)]
    bad = {r: s for r, s in got.items() if r.split(".", 1)[1].startswith("bad_")}
    assert bad and set(bad.values()) == {"FAILED"}, got
    assert all(s == "PASSED" for r, s in got.items() if r not in bad), got


def test_the_synthesized_stacks_pass(results: dict[tuple[str, str], dict[str, str]]) -> None:
    budgets = results[("prod", "CKV_GPUB_COST_1")]
    assert budgets and set(budgets.values()) == {"PASSED"}, budgets  # every prod client
    for env in ("prod", "dev"):
        assert set(results[(env, "CKV_GPUB_COST_2")].values()) == {"PASSED"}
    assert ("dev", "CKV_GPUB_COST_1") not in results  # dev has no billing account: silent


@pytest.mark.parametrize("stem", ["prod_without_client_budgets", "prod_without_alerts",
                                  "prod_without_dashboard"])
def test_a_prod_stack_without_them_fails(results: dict[tuple[str, str], dict[str, str]],
                                         stem: str) -> None:
    rule = "CKV_GPUB_COST_1" if stem.endswith("budgets") else "CKV_GPUB_COST_2"
    assert "FAILED" in results[(stem, rule)].values(), results.get((stem, rule))
