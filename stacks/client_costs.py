"""The client's email channel and monthly budget (docs/costs.md), as typed `for_each`
entries (stacks/client_resources.py)."""

from __future__ import annotations

from dataclasses import dataclass

from jobs import billing_labels
from stacks.client_resources import ClientResources, Entry, each, role
from stacks.provider import (
    BillingBudget,
    BillingBudgetAllUpdatesRule,
    BillingBudgetAmount,
    BillingBudgetAmountSpecifiedAmount,
    BillingBudgetBudgetFilter,
    BillingBudgetThresholdRules,
    MonitoringNotificationChannel,
)


def _channel(res: ClientResources) -> MonitoringNotificationChannel:
    settings = res.props.settings
    return MonitoringNotificationChannel(
        res.scope, ClientChannel.ROLE.name, project=settings.project_id, type="email",
        display_name=each("display_name"), labels={"email_address": each("email")},
        user_labels=settings.all_labels(),
    )


@role("google_monitoring_notification_channel", "clients-channels", _channel)
@dataclass(frozen=True)
class ClientChannel(Entry):
    """The client's email channel (its `contact`): its budget's mails go there."""

    display_name: str
    email: str


def _budget(res: ClientResources) -> BillingBudget:
    """One budget per client, filtered on the `client` label that Batch puts on the client's
    VMs, GPUs and disks (jobs/billing_labels.py) and the platform on its bucket and topics.
    `budget_filter.labels` takes ONE label key/value ("A single label and value pair
    specifying that usage from only this set of labeled resources should be included in the
    budget", registry.terraform.io/providers/hashicorp/google/latest/docs/resources/
    billing_budget#labels). Notifications go to the client's channel and the environment's
    (`monitoring_notification_channels`, "A maximum of 5 channels are allowed", same page)."""
    props = res.props
    settings = props.settings
    billing = props.billing
    assert billing is not None and settings.billing_account is not None
    budget = BillingBudget(
        res.scope,
        ClientBudget.ROLE.name,
        provider=billing.provider,
        billing_account=settings.billing_account,
        display_name=each("display_name"),
        budget_filter=BillingBudgetBudgetFilter(
            projects=[f"projects/{billing.project_number}"],
            labels={billing_labels.CLIENT: each("client")},
        ),
        amount=BillingBudgetAmount(specified_amount=BillingBudgetAmountSpecifiedAmount(
            currency_code="USD", units=each("units"))),
        threshold_rules=[
            BillingBudgetThresholdRules(threshold_percent=t)
            for t in settings.observability.budget_thresholds
        ] + [BillingBudgetThresholdRules(threshold_percent=1.0, spend_basis="FORECASTED_SPEND")],
        all_updates_rule=BillingBudgetAllUpdatesRule(monitoring_notification_channels=[]),
    )
    budget.add_override("all_updates_rule.monitoring_notification_channels", each("channels"))
    return budget


@role("google_billing_budget", "clients-budgets", _budget)
@dataclass(frozen=True)
class ClientBudget(Entry):
    display_name: str
    client: str  # the `client` label value the budget filters on
    units: str  # whole USD per month
    channels: list[str]  # the client's channel, then the environment's (at most 5)
