"""Costs and alerts: CKV_GPUB_COST_1 every client of a production environment has
its own budget, CKV_GPUB_COST_2 every environment has the alert policies and the dashboard
(docs/policies.md, "Costs and alerts").

A client is a bucket labelled `client` (stacks/client.py); its budget is a
`google_billing_budget` whose `budget_filter.labels` is `{client: <name>}` (one key/value:
registry.terraform.io/providers/hashicorp/google/latest/docs/resources/billing_budget#labels)
and that notifies at least one Monitoring channel. An environment is the stack that enables
`batch.googleapis.com`; its alerts carry the user label `gpub-alert: <kind>`
(stacks/monitoring_specs.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult

from policies.checkbase import GpubCheck
from tfjson import instances, value

CLIENT_LABEL = "client"  # jobs/billing_labels.CLIENT (checkov loads this file standalone)
ALERT_LABEL = "gpub-alert"
ALERT_KINDS = ("failed-runs", "queued-runs", "preemptions", "dead-letters", "oldest-unacked")


def _bodies(doc: Mapping[str, Any], rtype: str) -> Iterator[dict[str, Any]]:
    for name, conf in ((doc.get("resource") or {}).get(rtype) or {}).items():
        if isinstance(conf, dict):
            for _, body in instances(name, conf):
                yield body


def _first(x: Any) -> Any:
    return x[0] if isinstance(x, list) and x else x


def budgeted_clients(doc: Mapping[str, Any]) -> dict[str, bool]:
    """client -> whether one of its budgets notifies a channel."""
    out: dict[str, bool] = {}
    for body in _bodies(doc, "google_billing_budget"):
        labels = (_first(body.get("budget_filter")) or {}).get("labels") or {}
        client = _first(labels).get(CLIENT_LABEL) if isinstance(_first(labels), dict) else None
        if not client or len(_first(labels)) != 1:
            continue
        rule = _first(body.get("all_updates_rule")) or {}
        channels = rule.get("monitoring_notification_channels") or []
        out[str(client)] = out.get(str(client), False) or bool(channels)
    return out


def alert_kinds(doc: Mapping[str, Any]) -> set[str]:
    kinds: set[str] = set()
    for body in _bodies(doc, "google_monitoring_alert_policy"):
        labels = _first(body.get("user_labels")) or {}
        if isinstance(labels, dict) and labels.get(ALERT_LABEL):
            kinds.add(str(labels[ALERT_LABEL]))
    return kinds


class ClientBudgetInProd(GpubCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Every client of a production environment has a budget on its label",
            id="CKV_GPUB_COST_1",
            categories=[CheckCategories.GENERAL_SECURITY],
            supported_resources=["google_storage_bucket"],
        )

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        self.evaluated_keys = ["labels"]
        labels = value(conf, "labels", default={})
        client = _first(labels.get(CLIENT_LABEL)) if isinstance(labels, dict) else None
        if not isinstance(client, str) or not client or not self.facts.prod:
            return CheckResult.UNKNOWN
        budgets = budgeted_clients(self.facts.document)
        if client not in budgets:
            return self.fail(f"client {client!r} has no google_billing_budget filtered on "
                             f"labels {{{CLIENT_LABEL} = {client!r}}}")
        if not budgets[client]:
            return self.fail(f"the budget of client {client!r} notifies no Monitoring channel "
                             "(all_updates_rule.monitoring_notification_channels)")
        return CheckResult.PASSED


class AlertsAndDashboard(GpubCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Every environment has the run, intake and preemption alerts and a dashboard",
            id="CKV_GPUB_COST_2",
            categories=[CheckCategories.LOGGING],
            supported_resources=["google_project_service"],
        )

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        self.evaluated_keys = ["service"]
        if value(conf, "service") != "batch.googleapis.com":
            return CheckResult.UNKNOWN
        doc = self.facts.document
        missing = [k for k in ALERT_KINDS if k not in alert_kinds(doc)]
        if missing:
            return self.fail(f"no google_monitoring_alert_policy with user label "
                             f"{ALERT_LABEL} = {', '.join(missing)}")
        if not any(True for _ in _bodies(doc, "google_monitoring_dashboard")):
            return self.fail("no google_monitoring_dashboard (runs, GPU hours, cost per client)")
        if self.facts.prod and not any(
            body.get("notification_channels")
            for body in _bodies(doc, "google_monitoring_alert_policy")
        ):
            return self.fail("in prod, the alert policies notify no channel "
                             "(observability.alert_emails)")
        return CheckResult.PASSED


check_cost_1 = ClientBudgetInProd()
check_cost_2 = AlertsAndDashboard()
