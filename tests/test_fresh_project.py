"""Issue 22, first apply on a fresh project: the dependency graph walked as Terraform would.

The fresh-project check (`policies.fresh_project`) runs on the example app (dev and prod, one
or two clients) and on the same environments at 1,000 clients x 5 jobs; mutations of the real
synthesized stack show it refuses what today's code did (no Cloud Resource Manager enablement,
no barrier, unpinned google-beta). The CKV_GPUB_DEP_* rules run through the real checkov on
their fixtures.
"""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from policies.fresh_project import Graph, findings, interpolations, provider_findings
from stacks.apis import BOOTSTRAP_APIS, CRM, RESOURCE_APIS

Stack = dict[str, Any]
FIXTURES = Path(__file__).parent / "fixtures" / "policies" / "terraform"
DEP_RULES = ["CKV_GPUB_DEP_1", "CKV_GPUB_DEP_2", "CKV_GPUB_DEP_3", "CKV_GPUB_DEP_4",
             "CKV_GPUB_SET_1",
             "CKV_GPUB_SET_2"]


@pytest.fixture(scope="module")
def thousand(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Stack]]:
    """dev and prod with 1,000 clients x 5 jobs (the bench's environments): each its platform
    stack, then its client shards (tfjson.stack_group)."""
    from bench.synth import build_environments
    from stacks.app import synth
    from tfjson import stack_group

    out = synth(build_environments(1000, 5), str(tmp_path_factory.mktemp("n1000")))
    return {env: [json.loads(p.read_text()) for p in stack_group(out / "stacks",
                                                                 f"platform-{env}")]
            for env in ("dev", "prod")}


def _address(stack: Stack, rtype: str, path_suffix: str) -> str:
    for name, body in stack["resource"][rtype].items():
        if body["//"]["metadata"]["path"].endswith(path_suffix):
            return f"{rtype}.{name}"
    raise AssertionError(f"no {rtype} at */{path_suffix}")


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_examples_apply_on_a_fresh_project(stacks_json: dict[str, Stack], env: str) -> None:
    stack = stacks_json[env]
    assert findings(stack) == {}
    assert provider_findings(stack) == []


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_thousand_clients_apply_on_a_fresh_project(thousand: dict[str, list[Stack]],
                                                   env: str) -> None:
    """The platform stack on its own, each client shard after it (applied first, whole)."""
    platform, *shards = thousand[env]
    assert findings(platform) == {}
    assert provider_findings(platform) == []
    assert len(shards) > 1
    clients = 0
    for shard in shards:
        assert findings(shard, [platform]) == {}
        assert provider_findings(shard) == []
        clients += len(shard["resource"]["google_storage_bucket"]["clients-bucket"]["for_each"])
    assert clients == 1000  # the check saw the real size


def test_every_type_in_the_stacks_has_its_apis(stacks_json: dict[str, Stack]) -> None:
    for stack in stacks_json.values():
        types = set(stack["resource"]) | {f"data.{t}" for t in stack.get("data", {})}
        assert types - {"google_project_service", "time_sleep"} <= set(RESOURCE_APIS)


def test_cloud_resource_manager_is_enabled_and_needed(stacks_json: dict[str, Stack]) -> None:
    """Defect: CRM was never enabled though project IAM, the audit config and
    data.google_project need it. Without its enablement the check names them."""
    stack = copy.deepcopy(stacks_json["prod"])
    services = stack["resource"]["google_project_service"]
    crm = [n for n, b in services.items() if b["service"] == CRM]
    assert len(crm) == 1
    del services[crm[0]]
    for body in stack["resource"]["time_sleep"].values():
        body["depends_on"] = [d for d in body.get("depends_on", [])
                              if d != f"google_project_service.{crm[0]}"]
    refused = findings(stack)
    assert "data.google_project.project" in refused
    assert "google_project_iam_audit_config.storage-audit" in refused
    assert any(a.startswith("google_project_iam_member.") for a in refused)
    assert all(CRM in str(f) for fs in refused.values() for f in fs)


def test_service_accounts_and_budget_wait_for_their_apis(stacks_json: dict[str, Stack]) -> None:
    """Defect: service accounts, their IAM members and the budget did not depend on iam /
    billingbudgets. Each now reaches its enablement through the API barrier."""
    stack = stacks_json["prod"]
    graph = Graph.of(stack)
    for address in (*[f"google_service_account.{n}" for n in stack["resource"][
            "google_service_account"]], *[f"google_billing_budget.{n}" for n in stack[
            "resource"]["google_billing_budget"]]):
        behind = graph.behind_barrier(address)
        enabled = {graph.bodies[a]["service"] for a in behind
                   if a.startswith("google_project_service.")}
        rtype = address.split(".")[0]
        assert set(RESOURCE_APIS[rtype]) <= enabled, address


def test_trigger_without_its_barrier_is_refused(stacks_json: dict[str, Stack]) -> None:
    stack = copy.deepcopy(stacks_json["dev"])
    trigger = _address(stack, "google_eventarc_trigger", "job-embed/uploads")
    body = stack["resource"]["google_eventarc_trigger"][trigger.split(".")[1]]
    body["depends_on"] = [d for d in body["depends_on"] if d != "time_sleep.triggers-ready"]
    messages = [str(f) for f in findings(stack)[trigger]]
    assert any("Eventarc agent" in m for m in messages)
    assert any("trigger-eventarceventReceiver" in m for m in messages)


def test_cmek_resource_without_key_barrier_is_refused(stacks_json: dict[str, Stack]) -> None:
    stack = copy.deepcopy(stacks_json["prod"])
    body = stack["resource"]["google_pubsub_topic"]["uploads"]
    body["depends_on"] = [d for d in body["depends_on"] if d != "time_sleep.keys-ready"]
    assert any("pubsub.googleapis.com agent's grant" in str(f)
               for f in findings(stack)["google_pubsub_topic.uploads"])


def test_notification_without_publisher_barrier_is_refused(stacks_json: dict[str, Stack]) -> None:
    """One notification per (client, job) on the job's intake topic: each entry waits for
    the barrier after the storage agent's grant on its own topic; without `embed`'s, the
    entries on `embed`'s topic are refused though `uppercase`'s barrier is still there."""
    stack = copy.deepcopy(stacks_json["dev"])
    body = stack["resource"]["google_storage_notification"]["clients-intake"]
    embed = _address(stack, "time_sleep", "job-embed/intake-ready")
    assert embed in body["depends_on"]
    body["depends_on"] = [d for d in body["depends_on"] if d != embed]
    messages = [str(f) for f in findings(stack)["google_storage_notification.clients-intake"]]
    assert messages and all("google_pubsub_topic.intake-embed" in m for m in messages), messages
    assert not any("intake-uppercase" in m for m in messages), messages


def test_unpinned_google_beta_is_refused(stacks_json: dict[str, Stack]) -> None:
    """Defect: GOOGLE_BETA_VERSION was never used; every init took the newest google-beta."""
    stack = stacks_json["prod"]
    pins = {n: p["version"] for n, p in stack["terraform"]["required_providers"].items()}
    assert pins == {"google": "8.7.0", "google-beta": "8.7.0", "time": "0.14.2"}
    loose = copy.deepcopy(stack)
    del loose["terraform"]["required_providers"]["google-beta"]["version"]
    assert provider_findings(loose) == ["provider google-beta is not pinned to an exact "
                                        "version (got '')"]


def test_barriers_wait_for_what_they_guard(stacks_json: dict[str, Stack]) -> None:
    stack = stacks_json["prod"]
    sleeps = stack["resource"]["time_sleep"]
    # One `intake-ready` per job: after the storage agent's grant on the job's intake topic.
    intake = {_address(stack, "time_sleep", f"job-{job}/intake-ready").split(".")[1]
              for job in ("embed", "uppercase")}
    assert set(sleeps) == {"apis-ready", "agents-ready", "keys-ready", "triggers-ready",
                           "uploads-ready", "deployer-ready", *intake}
    assert all(s["create_duration"] in ("60s", "120s") for s in sleeps.values())
    assert len(sleeps["apis-ready"]["depends_on"]) == len(
        stacks_json["prod"]["resource"]["google_project_service"])


def test_bootstrap_apis_include_service_usage_and_token_apis() -> None:
    assert {"serviceusage.googleapis.com", CRM, "sts.googleapis.com",
            "iamcredentials.googleapis.com"} <= set(BOOTSTRAP_APIS)


def test_interpolations_skip_escapes() -> None:
    text = 'a ${google_x.y.id} $${literal} ${max(1, length(data.google_z.w.list))}'
    assert list(interpolations(text)) == ["google_x.y.id", "max(1, length(data.google_z.w.list))"]


@pytest.fixture(scope="module")
def dep_results() -> dict[tuple[str, str], dict[str, str]]:
    from policies.guardrails import GuardrailLimits
    from policies.scan import StackInput, run_checkov
    from tfjson import facts_from_document

    stacks = [StackInput(p.name.removesuffix(".tf.json"), p,
                         facts_from_document(json.loads(p.read_text())), GuardrailLimits())
              for p in sorted([*FIXTURES.glob("ckv_gpub_dep_*.tf.json"),
                               *FIXTURES.glob("ckv_gpub_set_*.tf.json")])]
    report, _ = run_checkov(stacks)
    out: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for record in report.get_all_records():
        stem = Path(record.file_abs_path).name.removesuffix(".tf.json")
        out[(stem, record.check_id)][record.resource] = getattr(record.check_result["result"],
                                                                "name", "")
    return out


@pytest.mark.parametrize("rule", DEP_RULES)
def test_dep_rule_fixtures(dep_results: dict[tuple[str, str], dict[str, str]],
                           rule: str) -> None:
    passing = dep_results[(f"{rule.lower()}_pass", rule)]
    assert passing and set(passing.values()) == {"PASSED"}, passing
    failing = dep_results[(f"{rule.lower()}_fail", rule)]
    bad = {r: s for r, s in failing.items() if r.split(".", 1)[1].startswith("bad_")}
    assert bad and set(bad.values()) == {"FAILED"}, failing
    good = {r: s for r, s in failing.items() if r.split(".", 1)[1].startswith("good_")}
    assert set(good.values()) <= {"PASSED"}, good


def test_workflow_without_deployer_act_as_is_refused(stacks_json: dict[str, Stack]) -> None:
    """Defect: act-as was asked on accounts the first deploy creates. The stack grants the
    deployer act-as on the workflow, trigger and scheduler accounts; workflows (and the
    triggers and schedules that reference them) wait behind the barrier after it."""
    stack = copy.deepcopy(stacks_json["dev"])
    workflow = _address(stack, "google_workflows_workflow", "job-embed/workflow")
    body = stack["resource"]["google_workflows_workflow"][workflow.split(".")[1]]
    assert "time_sleep.deployer-ready" in body["depends_on"]
    body["depends_on"].remove("time_sleep.deployer-ready")
    assert any("act-as" in str(f) for f in findings(stack)[workflow])
    grants = stack["resource"]["google_service_account_iam_member"]
    deployer = {b["service_account_id"] for n, b in grants.items()
                if n.startswith("deployer-act-as-")}
    assert deployer == {f"${{google_service_account.{a}.name}}" for a in (
        "batch-workflows", "batch-trigger", "batch-scheduler")}
    assert {b["member"] for n, b in grants.items() if n.startswith("deployer-act-as-")} == {
        "serviceAccount:deployer@example-ml-dev.iam.gserviceaccount.com"}
