"""Billing budgets: the environment's project budget and one budget per client (issue 24)."""

from __future__ import annotations

from constructs import Construct

from jobs import billing_labels
from stacks.provider import (
    BillingBudget,
    BillingBudgetAllUpdatesRule,
    BillingBudgetAmount,
    BillingBudgetAmountSpecifiedAmount,
    BillingBudgetBudgetFilter,
    BillingBudgetThresholdRules,
    GoogleProvider,
)
from stacks.settings import ClientSettings, EnvironmentSettings

THRESHOLDS = (0.5, 0.9, 1.0)
MAX_BUDGET_CHANNELS = 5  # all_updates_rule.monitoring_notification_channels (provider docs)


class ProjectBudget(Construct):
    def __init__(
        self, scope: Construct, id_: str, settings: EnvironmentSettings, project_number: str
    ) -> None:
        super().__init__(scope, id_)
        assert settings.billing_account is not None
        # The Billing Budgets API refuses user credentials (ADC of a person) unless the call
        # names a quota project: `billing_project` + `user_project_override = true` on the
        # provider (registry.terraform.io/providers/hashicorp/google/latest/docs/resources/
        # billing_budget). A service account (CI) works the same way with it, given
        # serviceusage.services.use on that project. An aliased provider keeps the override
        # to the budget alone.
        self.provider = GoogleProvider(
            self,
            "billing",
            alias="billing",
            project=settings.project_id,
            region=settings.region,
            billing_project=settings.project_id,
            user_project_override=True,
        )
        self.budget = BillingBudget(
            self,
            "budget",
            provider=self.provider,
            billing_account=settings.billing_account,
            display_name=f"gpu-batch-{settings.name}",
            budget_filter=BillingBudgetBudgetFilter(projects=[f"projects/{project_number}"]),
            amount=BillingBudgetAmount(
                specified_amount=BillingBudgetAmountSpecifiedAmount(
                    currency_code="USD", units=str(int(settings.monthly_budget_usd))
                )
            ),
            threshold_rules=[BillingBudgetThresholdRules(threshold_percent=t) for t in THRESHOLDS]
            + [BillingBudgetThresholdRules(threshold_percent=1.0, spend_basis="FORECASTED_SPEND")],
        )


def client_budget_usd(settings: EnvironmentSettings, client: ClientSettings) -> float:
    """The client's monthly amount: its own, else the environment's default."""
    if client.monthly_budget_usd is not None:
        return client.monthly_budget_usd
    return settings.observability.client_monthly_budget_usd


class ClientBudgets(Construct):
    """One `google_billing_budget` per client, filtered on the `client` label that Batch puts on
    the client's VMs, GPUs and disks (jobs/billing_labels.py) and the platform on its bucket
    and topics. `budget_filter.labels` takes ONE label key/value ("A single label and value
    pair specifying that usage from only this set of labeled resources should be included in
    the budget", registry.terraform.io/providers/hashicorp/google/latest/docs/resources/
    billing_budget#labels): exactly what a per-client filter needs. Notifications go to the
    client's channel and the environment's (`monitoring_notification_channels`, "A maximum of
    5 channels are allowed", same page); the billing admins keep theirs too."""

    def __init__(
        self, scope: Construct, id_: str, settings: EnvironmentSettings, project_number: str,
        provider: GoogleProvider, channels: dict[str, str], env_channels: list[str],
    ) -> None:
        super().__init__(scope, id_)
        assert settings.billing_account is not None
        obs = settings.observability
        self.budgets: dict[str, BillingBudget] = {}
        for client in settings.clients:
            own = [channels[client.name]] if client.name in channels else []
            self.budgets[client.name] = BillingBudget(
                self,
                client.name,
                provider=provider,
                billing_account=settings.billing_account,
                display_name=f"gpu-batch-{settings.name}-{client.name}",
                budget_filter=BillingBudgetBudgetFilter(
                    projects=[f"projects/{project_number}"],
                    labels={billing_labels.CLIENT: client.name},
                ),
                amount=BillingBudgetAmount(
                    specified_amount=BillingBudgetAmountSpecifiedAmount(
                        currency_code="USD",
                        units=str(int(client_budget_usd(settings, client))),
                    )
                ),
                threshold_rules=[
                    BillingBudgetThresholdRules(threshold_percent=t)
                    for t in obs.budget_thresholds
                ] + [BillingBudgetThresholdRules(threshold_percent=1.0,
                                                 spend_basis="FORECASTED_SPEND")],
                all_updates_rule=BillingBudgetAllUpdatesRule(
                    monitoring_notification_channels=(own + env_channels)[:MAX_BUDGET_CHANNELS]
                ),
            )
