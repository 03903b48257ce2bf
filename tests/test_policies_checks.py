"""The CKV_GPUB rule pack through the real checkov, one in-process scan for every fixture."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

from policies.guardrails import GuardrailLimits
from policies.scan import StackInput, run_checkov
from policies.terraform_rules import rules
from tfjson import StackFacts, facts_from_document

FIXTURES = Path(__file__).parent / "fixtures" / "policies" / "terraform"
RULES = list(rules())  # the registry (policies/terraform_rules.yaml): every declared rule

# (file stem, check id) -> {resource address: result name}
Results = dict[tuple[str, str], dict[str, str]]


@pytest.fixture(scope="session")
def results() -> Results:
    stacks = [
        StackInput(
            path.name.removesuffix(".tf.json"),
            path,
            facts_from_document(json.loads(path.read_text())),
            GuardrailLimits(),
        )
        for path in sorted(FIXTURES.glob("*.tf.json"))
    ]
    report, _ = run_checkov(stacks)
    out: Results = defaultdict(dict)
    for record in report.get_all_records():
        stem = Path(record.file_abs_path).name.removesuffix(".tf.json")
        out[(stem, record.check_id)][record.resource] = record.check_result["result"].name
    return out


@pytest.mark.parametrize("rule", RULES)
def test_passing_fixture_passes(results: Results, rule: str) -> None:
    got = results[(f"{rule.lower()}_pass", rule)]
    if rule == "CKV_GPUB_13":  # a key resource always fails: passing means there is none
        assert "FAILED" not in got.values()
        return
    assert got, f"{rule} evaluated nothing in its passing fixture"
    assert set(got.values()) == {"PASSED"}, got


@pytest.mark.parametrize("rule", RULES)
def test_failing_fixture_fails(results: Results, rule: str) -> None:
    got = results[(f"{rule.lower()}_fail", rule)]
    bad = {res: state for res, state in got.items() if res.split(".", 1)[1].startswith("bad_")}
    assert bad, f"{rule} evaluated no bad_* resource in its failing fixture"
    assert set(bad.values()) == {"FAILED"}, bad


def test_records_carry_type_and_name(results: Results) -> None:
    # checkov's terraform_json runner says "resource.<name>"; we report real addresses.
    assert (
        "google_project_iam_member.bad_editor_by_ref" in results[("ckv_gpub_1_fail", "CKV_GPUB_1")]
    )


def test_reference_members_are_resolved(results: Results) -> None:
    # CKV_GCP_42-style checks miss "serviceAccount:${google_service_account.x.email}".
    got = results[("ckv_gpub_3_fail", "CKV_GPUB_3")]
    assert got["google_storage_bucket_iam_member.bad_client_no_condition_by_ref"] == "FAILED"
    assert got["google_storage_bucket_iam_binding.bad_binding_client"] == "FAILED"


def test_environment_rules_do_not_apply_elsewhere(results: Results) -> None:
    # CMEK and prod-only rules stay silent in a dev, non-CMEK file.
    assert not results.get(("ckv_gpub_5_pass", "CKV_GPUB_10"))
    assert not results.get(("ckv_gpub_9_pass", "CKV_GPUB_11"))


def test_facts_from_labels_and_overrides() -> None:
    doc = {
        "provider": {"google": [{"default_labels": {"env": "prod", "cmek": "on"}}]},
        "resource": {"google_service_account": {"sa_1": {"account_id": "client-acme"}}},
    }
    facts = facts_from_document(doc)
    assert facts.prod and facts.cmek
    assert facts.service_account_id("serviceAccount:${google_service_account.sa_1.email}") == (
        "client-acme"
    )
    assert facts_from_document(doc, env="dev", cmek=False) == StackFacts(
        env="dev", cmek=False, service_accounts={"sa_1": "client-acme"}
    )


# ---- for_each resources: every map entry is checked --------------------------------------
FOREACH = {"CKV_GPUB_1": "invokers", "CKV_GPUB_3": "client_grants", "CKV_GPUB_9": "workflows"}


@pytest.mark.parametrize(("rule", "name"), sorted(FOREACH.items()))
def test_for_each_entries_are_each_checked(results: Results, rule: str, name: str) -> None:
    good = results[("foreach_pass", rule)]
    bad = results[("foreach_fail", rule)]
    # Same resources, one entry (globex) differs: the whole resource fails on that entry.
    assert set(good.values()) == {"PASSED"}, good
    assert [state for res, state in bad.items() if res.endswith(f".bad_{name}")] == ["FAILED"]


def test_for_each_failure_names_the_key() -> None:
    path = FIXTURES / "foreach_fail.tf.json"
    stack = StackInput("foreach", path, facts_from_document(json.loads(path.read_text())),
                       GuardrailLimits())
    report, _ = run_checkov([stack])
    details = {r.check_id: r.details for r in report.failed_checks}
    assert details["CKV_GPUB_1"] == ["[globex] basic role roles/editor granted; grant a "
                                     "predefined role instead"]
    assert details["CKV_GPUB_3"][0].startswith("[globex/create-inputs] serviceAccount:")
    assert details["CKV_GPUB_3"][0].endswith("covers the whole bucket")
    # The workflow source comes from a Terraform local (one template per job): resolved.
    assert details["CKV_GPUB_9"] == [
        "[globex/embed] workflow source names the default compute service account"
    ]


def test_for_each_references_resolve_per_key() -> None:
    from tfjson import for_each_entries

    doc = {"resource": {"google_service_account": {"clients-sa": {
        "for_each": {"acme": {"account_id": "client-acme"}},
        "account_id": "${each.value.account_id}",
    }}}}
    facts = facts_from_document(doc)
    member = 'serviceAccount:${google_service_account.clients-sa["acme"].email}'
    assert facts.service_account_id(member) == "client-acme"
    assert facts.service_account_id(member.replace("acme", "other")) is None
    conf = {"for_each": [{"k": [{"v": ["a $${x}"], "m": [{"a": 1}]}]}],
            "x": ["${each.value.v}/${each.key}"], "y": ["${each.value.m}"]}
    assert for_each_entries(conf) == [("k", {"x": ["a ${x}/k"], "y": [{"a": 1}]})]
    expr = {"for_each": {"k": {"t": "embed"}},
            "s": '${replace(local.x[each.value.t], "P", each.key)}'}
    assert for_each_entries(expr) == [("k", {"s": '${replace(local.x["embed"], "P", "k")}'})]
    assert for_each_entries({"for_each": ["${var.m}"], "x": [1]}) == []
    assert for_each_entries({"x": [1]}) is None


def test_limit_failures_say_the_figure() -> None:
    """bin/check names the count and the limit, so the fix is obvious."""
    stacks = [
        StackInput(stem, FIXTURES / f"{stem}.tf.json",
                   facts_from_document(json.loads((FIXTURES / f"{stem}.tf.json").read_text())),
                   GuardrailLimits())
        for stem in ("ckv_gpub_lim_1_fail", "ckv_gpub_lim_2_fail", "ckv_gpub_lim_9_fail",
                     "ckv_gpub_lim_11_fail")
    ]
    report, _ = run_checkov(stacks)
    by_resource = {(r.check_id, r.resource): r.details for r in report.failed_checks
                   if r.check_id.startswith("CKV_GPUB_LIM_")}
    # The member form (acme's bucket) first; the policy form (globex's) below.
    details = {check: found for (check, resource), found in sorted(by_resource.items())
               if "_policy" not in resource}
    assert details["CKV_GPUB_LIM_1"][0].endswith(
        "501 triggers in europe-west4; Eventarc allows 500 per project and location "
        "(not raisable)")
    assert "21 conditional bindings of roles/storage.objectViewer" in details["CKV_GPUB_LIM_2"][0]
    assert details["CKV_GPUB_LIM_11"] == [
        "2501 resource instances in the state of this stack; at most 2500 in one state (each "
        "plan refreshes every one): spread the clients over more states, raise "
        'client_shards.count (environments.yaml, docs/clients.md "Shards")']
    # v1's run grants: no list (object-name conditions only), no delete (objectCreator).
    assert details["CKV_GPUB_LIM_9"] == [
        "[acme] run-acme on example-ml-dev-acme cannot: delete outputs/job/batch/x; "
        "list outputs/job/batch/; list inputs/job/batch/"]
    # One authoritative bucket policy: 21 conditional bindings of one role for one member
    # (conditions read from policy_data), and a run identity whose policy lacks its outputs
    # binding.
    policy = "google_storage_bucket_iam_policy.bad_policy_grants"
    assert by_resource[("CKV_GPUB_LIM_2", policy)] == [
        "21 conditional bindings of roles/storage.objectViewer for serviceAccount:y@p.iam."
        "gserviceaccount.com on google_storage_bucket:example-ml-dev-globex; IAM allows 20"]
    assert by_resource[("CKV_GPUB_LIM_9", "google_service_account.bad_policy_run_sa")] == [
        "[globex] run-globex on example-ml-dev-globex cannot: create outputs/job/batch/x; "
        "delete outputs/job/batch/x"]


@pytest.mark.parametrize("bucket", ["p-acme", "p-acme-eu"])
def test_memoized_cel_gives_the_literal_answer(bucket: str) -> None:
    """CKV_GPUB_LIM_9 evaluates each client's grants with the bucket name replaced by a
    stand-in (one evaluation for 1,000 clients); the answers equal the literal evaluation."""
    from policies.checks.gpub_apply import _allows, _cel_allows

    obj = "storage.googleapis.com/Object"
    expressions = [
        'resource.name.startsWith("projects/_/buckets/p-acme/objects/outputs/")',
        'resource.name.startsWith("projects/_/buckets/p-acme-eu/objects/outputs/")',
        'resource.type == "storage.googleapis.com/Bucket" && '
        'resource.name == "projects/_/buckets/p-acme"',
        'api.getAttribute("storage.googleapis.com/objectListPrefix", "").startsWith("in/")',
    ]
    requests = [
        (obj, f"projects/_/buckets/{bucket}/objects/outputs/x", {}),
        (obj, f"projects/_/buckets/{bucket}/objects/in/x", {}),
        ("storage.googleapis.com/Bucket", f"projects/_/buckets/{bucket}",
         {"storage.googleapis.com/objectListPrefix": "in/a/"}),
    ]
    for expression in expressions:
        for rtype, name, attrs in requests:
            assert _allows(bucket, expression, rtype, name, attrs) == _cel_allows(
                expression, rtype, name, attrs), (expression, name)


def test_bin_check_fails_on_a_stack_over_each_limit(tmp_path: Path) -> None:
    """The rules run in bin/check itself: one run over every failing limit fixture."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    files = sorted(FIXTURES.glob("ckv_gpub_lim_*_fail.tf.json"))
    args = [a for f in files for a in ("--stack-file", str(f))]
    proc = subprocess.run(
        [str(root / "bin" / "check"), "--reports", str(tmp_path / "reports"), "--env", "dev",
         *args],
        capture_output=True, text=True, check=False,
        env={"COLUMNS": "300", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failed = set(re.findall(r"FAILED (CKV_GPUB_LIM_\d+) ", proc.stdout))
    assert failed == {f"CKV_GPUB_LIM_{n}" for n in range(1, 12)}, proc.stdout[-3000:]
