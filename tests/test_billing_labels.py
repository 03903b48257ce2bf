"""Labels billing sees (allocationPolicy.labels) on every rendered, filled and as-written job,
within Batch's limits; the per-client budgets and the cost view in the synthesized stacks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.cloud import batch_v1

from jobs import billing_labels as bl
from jobs.errors import JobSpecError
from jobs.registry import ALL_JOBS
from jobs.render import fill_runtime, render_job
from stacks.billing_sql import export_table, view_sql
from stacks.budget import client_budget_usd
from stacks.environments import dev, prod
from submit import asis

ENV = dev()
REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("text", "want"), [
    ("acme", "acme"),
    ("Run_ID.2026/01", "run_id-2026-01"),
    ("--x--", "x"),
    ("", "none"),
    ("ÄÖ", "none"),
    ("a" * 80, "a" * 63),
    ("ab" + "-" * 70 + "c", "ab"),  # cut at 63, then no trailing '-'
])
def test_label_values_follow_the_label_rules(text: str, want: str) -> None:
    got = bl.label_value(text)
    assert got == want
    bl.check_vm_labels({"run": got})  # valid as a label value


@pytest.mark.parametrize("name", sorted(ALL_JOBS))
def test_every_declared_job_renders_env_and_job_on_its_vms(name: str) -> None:
    spec = ALL_JOBS[name]
    job = render_job(spec, ENV.render_context(name))
    assert job["allocationPolicy"]["labels"] == {"env": "dev", "job": name}
    filled = fill_runtime(job, task_count=2, parallelism=1,
                          vm_labels=bl.billing_labels(client="acme", run=f"{name}-0a1b2c3d4e"))
    labels = filled["allocationPolicy"]["labels"]
    assert labels == {"env": "dev", "job": name, "client": "acme", "run": f"{name}-0a1b2c3d4e"}
    assert "allocationPolicy" not in job or job["allocationPolicy"]["labels"].get("client") is None
    # Batch's own client reads them where billing sees them.
    parsed = batch_v1.Job.from_json(json.dumps(filled))
    assert dict(parsed.allocation_policy.labels) == labels


def test_a_job_with_too_many_custom_vm_labels_is_refused() -> None:
    spec = ALL_JOBS["uppercase"]
    job = render_job(spec, ENV.render_context("uppercase"))
    extra = {f"k{i}": "v" for i in range(bl.MAX_CUSTOM_VM_LABELS - 4)}
    ok = fill_runtime(job, task_count=1, parallelism=1,
                      vm_labels={**extra, **bl.billing_labels(client="acme", run="r")})
    assert len(ok["allocationPolicy"]["labels"]) == bl.MAX_CUSTOM_VM_LABELS
    with pytest.raises(JobSpecError, match="at most 61") as err:
        fill_runtime(job, task_count=1, parallelism=1,
                     vm_labels={**extra, "one-more": "x", **bl.billing_labels(client="a", run="r")})
    assert err.value.field == "allocationPolicy.labels"


@pytest.mark.parametrize(("labels", "message"), [
    ({"goog-batch": "x"}, "reserved"), ({"Client": "x"}, "not a valid label"),
    ({"client": "Acme Corp"}, "not a valid label")])
def test_labels_batch_would_refuse_are_refused(labels: dict[str, str], message: str) -> None:
    with pytest.raises(JobSpecError, match=message):
        bl.check_vm_labels(labels)


def test_an_override_cannot_push_a_declared_job_over_the_limit() -> None:
    spec = ALL_JOBS["uppercase"].model_copy(update={"batch_overrides": {
        "allocationPolicy": {"labels": {f"k{i}": "v" for i in range(60)}}}})
    with pytest.raises(JobSpecError, match="at most 61"):
        render_job(spec, ENV.render_context("uppercase"))


def test_an_as_written_run_carries_client_job_env_and_run_on_its_vms() -> None:
    source = asis.load_config(REPO / "tests" / "fixtures" / "submit" / "hello_in_order.yaml")
    source.setdefault("allocationPolicy", {})["labels"] = {"team": "search"}
    a = asis.adapt(ENV, "Spot Finetune", source, client="acme", parallelism=None,
                   submitter="ci")
    labels = a.job["allocationPolicy"]["labels"]
    assert labels == {"team": "search", "client": "acme", "job": "spot-finetune",
                      "env": "dev", "run": "spot-finetune-" + a.base.rsplit("-", 1)[1]}
    batch_v1.Job.from_json(json.dumps(a.job))  # Batch's client takes it
    adhoc = asis.adapt(ENV, "x", source, client=None, parallelism=None, submitter="ci")
    assert adhoc.job["allocationPolicy"]["labels"]["client"] == "none"


# ---- the stacks ----------------------------------------------------------------------------
def _budgets(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from tfjson import instances

    out = {}
    for name, conf in doc["resource"].get("google_billing_budget", {}).items():
        for _, b in instances(name, conf):
            labels = b["budget_filter"].get("labels")
            if labels:
                out[labels["client"]] = b
    return out


def test_prod_has_a_budget_per_client_on_its_label(stacks_json: dict[str, Any]) -> None:
    env = prod()
    budgets = _budgets(stacks_json["prod"])
    assert set(budgets) == {c.name for c in env.clients}
    for client in env.clients:
        b = budgets[client.name]
        assert b["budget_filter"]["labels"] == {"client": client.name}  # ONE key/value
        assert b["amount"]["specified_amount"]["units"] == str(int(client_budget_usd(env, client)))
        assert [r["threshold_percent"] for r in b["threshold_rules"]][:3] == [0.5, 0.9, 1.0]
        channels = b["all_updates_rule"]["monitoring_notification_channels"]
        assert 1 <= len(channels) <= 5
    assert budgets["acme"]["amount"]["specified_amount"]["units"] == "2000"  # its own amount


def test_a_client_without_its_own_amount_gets_the_environment_default() -> None:
    env = prod()
    client = env.clients[0].model_copy(update={"monthly_budget_usd": None})
    assert client_budget_usd(env, client) == env.observability.client_monthly_budget_usd


def test_prod_synthesizes_the_cost_view_over_the_named_export(
        stacks_json: dict[str, Any]) -> None:
    env = prod()
    (view,) = stacks_json["prod"]["resource"]["google_bigquery_table"].values()
    table = export_table(env)
    assert table == ("example-ml-prod.billing_export."
                     "gcp_billing_export_resource_v1_012345_6789AB_CDEF01")
    assert view["view"] == {"query": view_sql(table, env.project_id), "use_legacy_sql": False}
    (dataset,) = stacks_json["prod"]["resource"]["google_bigquery_dataset"].values()
    assert dataset["location"] == env.observability.billing_export.location  # type: ignore[union-attr]
    assert "google_bigquery_table" not in stacks_json["dev"]["resource"]  # no export in dev


def test_with_cmek_the_export_must_be_where_the_key_is(tmp_path: Path) -> None:
    from stacks.observability_settings import BillingExport
    from stacks.platform import PlatformStack
    from stacks.provider import App

    env = prod()
    export = BillingExport(dataset="billing_export", table="gcp_billing_export_v1_x",
                           location="EU")
    bad = env.model_copy(update={"observability": env.observability.model_copy(
        update={"billing_export": export})})
    with pytest.raises(ValueError, match=r"billing_export.location: .* europe-west4"):
        PlatformStack(App(outdir=str(tmp_path)), bad)


def test_prod_encrypts_the_cost_view_with_its_key(stacks_json: dict[str, Any]) -> None:
    res = stacks_json["prod"]["resource"]
    (dataset,) = res["google_bigquery_dataset"].values()
    (view,) = res["google_bigquery_table"].values()
    key = dataset["default_encryption_configuration"]["kms_key_name"]
    assert key.startswith("${google_kms_crypto_key.") and view[
        "encryption_configuration"]["kms_key_name"] == key
    grants = [g for g in res["google_kms_crypto_key_iam_member"].values()
              if "google_bigquery_default_service_account" in g["member"]]
    assert len(grants) == 1 and grants[0]["role"] == "roles/cloudkms.cryptoKeyEncrypterDecrypter"
