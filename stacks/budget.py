"""Billing budgets: the environment's project budget and one budget per client."""

from __future__ import annotations

from constructs import Construct

from stacks.provider import (
    BillingBudget,
    BillingBudgetAmount,
    BillingBudgetAmountSpecifiedAmount,
    BillingBudgetBudgetFilter,
    BillingBudgetThresholdRules,
    GoogleProvider,
)
from stacks.settings import ClientSettings, EnvironmentSettings

THRESHOLDS = (0.5, 0.9, 1.0)
MAX_BUDGET_CHANNELS = 5  # all_updates_rule.monitoring_notification_channels (provider docs)


def billing_provider(scope: Construct, settings: EnvironmentSettings) -> GoogleProvider:
    """The provider the budgets use. The Billing Budgets API refuses user credentials (ADC of
    a person) unless the call names a quota project: `billing_project` +
    `user_project_override = true` (registry.terraform.io/providers/hashicorp/google/latest/
    docs/resources/billing_budget). A service account (CI) works the same way with it, given
    serviceusage.services.use on that project. An alias keeps the override to the budgets."""
    return GoogleProvider(
        scope,
        "billing",
        alias="billing",
        project=settings.project_id,
        region=settings.region,
        billing_project=settings.project_id,
        user_project_override=True,
    )


class ProjectBudget(Construct):
    def __init__(
        self, scope: Construct, id_: str, settings: EnvironmentSettings, project_number: str
    ) -> None:
        super().__init__(scope, id_)
        assert settings.billing_account is not None
        self.provider = billing_provider(self, settings)
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
