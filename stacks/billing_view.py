"""The cost view: a BigQuery dataset of the platform's and, in it, a view over the Cloud
Billing export that sums cost by client, job, environment and run (stacks/billing_sql.py).

The export dataset and table are named in the settings (`observability.billing_export`); the
export is switched on in the console and BigQuery checks a view's query when it is created, so
the view is declared only where the export is configured.
Docs: registry.terraform.io/providers/hashicorp/google/latest/docs/resources/bigquery_table
(`view { query, use_legacy_sql }`; `deletion_protection` defaults to true;
`encryption_configuration.kms_key_name`: "the default bigquery service account will need to
have encrypt/decrypt permissions on this key - you may want to see the
google_bigquery_default_service_account datasource"). A Cloud KMS key must be in the
dataset's location (cloud.google.com/bigquery/docs/customer-managed-encryption), so with CMEK
the export, and the view beside it, must be in the environment's region, where its key is.
"""

from __future__ import annotations

from collections.abc import Sequence

from constructs import Construct

from stacks.billing_sql import VIEW_ID, export_table, view_sql
from stacks.kms import ENCRYPTER_DECRYPTER
from stacks.provider import (
    BigqueryDataset,
    BigqueryDatasetDefaultEncryptionConfiguration,
    BigqueryTable,
    BigqueryTableEncryptionConfiguration,
    BigqueryTableView,
    DataGoogleBigqueryDefaultServiceAccount,
    KmsCryptoKeyIamMember,
    TerraformResource,
)
from stacks.settings import EnvironmentSettings


class BillingView(Construct):
    def __init__(self, scope: Construct, id_: str, settings: EnvironmentSettings,
                 kms_key: str | None, depends_on: Sequence[TerraformResource]) -> None:
        super().__init__(scope, id_)
        export = settings.observability.billing_export
        table = export_table(settings)
        assert export is not None and table is not None
        deps = list(depends_on)
        if kms_key is not None:
            if export.location != settings.region:
                raise ValueError(
                    f"observability.billing_export.location: with cmek the cost view is "
                    f"encrypted with the environment's key in {settings.region}, so the export "
                    f"must be there too; got {export.location!r}")
            agent = DataGoogleBigqueryDefaultServiceAccount(
                self, "bq-agent", project=settings.project_id, depends_on=deps)
            deps.append(KmsCryptoKeyIamMember(  # type: ignore[arg-type]
                self, "bq-agent-key", crypto_key_id=kms_key, role=ENCRYPTER_DECRYPTER,
                member=f"serviceAccount:{agent.email}"))
        self.dataset = BigqueryDataset(
            self, "dataset", project=settings.project_id,
            dataset_id=settings.observability.views_dataset,
            location=export.location,
            description="gpu-batch cost views over the Cloud Billing export (docs/costs.md)",
            labels=settings.all_labels(),
            default_encryption_configuration=(
                BigqueryDatasetDefaultEncryptionConfiguration(kms_key_name=kms_key)
                if kms_key else None),
            depends_on=deps,
        )
        self.view = BigqueryTable(
            self, "cost-by-run", project=settings.project_id,
            dataset_id=self.dataset.dataset_id, table_id=VIEW_ID,
            description="Cost per client, job, env and run (labels of allocationPolicy)",
            labels=settings.all_labels(),
            deletion_protection=True,  # in-place updates (a new query) stay possible
            encryption_configuration=(
                BigqueryTableEncryptionConfiguration(kms_key_name=kms_key) if kms_key else None),
            view=BigqueryTableView(query=view_sql(table, settings.project_id),
                                   use_legacy_sql=False),
        )
