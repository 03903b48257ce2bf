"""The cost view: a BigQuery dataset of the platform's and, in it, a view over the Cloud
Billing export that sums cost by client, job, environment and run (stacks/billing_sql.py).

The export dataset and table are named in the settings (`observability.billing_export`); the
export is switched on in the console and BigQuery checks a view's query when it is created, so
the view is declared only where the export is configured.
Docs: registry.terraform.io/providers/hashicorp/google/latest/docs/resources/bigquery_table
(`view { query, use_legacy_sql }`; `deletion_protection` defaults to true).
"""

from __future__ import annotations

from collections.abc import Sequence

from constructs import Construct

from stacks.billing_sql import VIEW_ID, export_table, view_sql
from stacks.provider import (
    BigqueryDataset,
    BigqueryTable,
    BigqueryTableView,
    TerraformResource,
)
from stacks.settings import EnvironmentSettings


class BillingView(Construct):
    def __init__(self, scope: Construct, id_: str, settings: EnvironmentSettings,
                 depends_on: Sequence[TerraformResource]) -> None:
        super().__init__(scope, id_)
        table = export_table(settings)
        assert table is not None
        self.dataset = BigqueryDataset(
            self, "dataset", project=settings.project_id,
            dataset_id=settings.observability.views_dataset,
            location=settings.observability.billing_export.location,  # type: ignore[union-attr]
            description="gpu-batch cost views over the Cloud Billing export (docs/costs.md)",
            labels=settings.all_labels(),
            depends_on=list(depends_on),
        )
        self.view = BigqueryTable(
            self, "cost-by-run", project=settings.project_id,
            dataset_id=self.dataset.dataset_id, table_id=VIEW_ID,
            description="Cost per client, job, env and run (labels of allocationPolicy)",
            labels=settings.all_labels(),
            deletion_protection=True,  # in-place updates (a new query) stay possible
            view=BigqueryTableView(query=view_sql(table, settings.project_id),
                                   use_legacy_sql=False),
        )
