"""Settings of an environment's cost attribution, budgets, alerts and dashboard.

Pure pydantic (the submit helper and the policy checks read them too). One group, held by
`EnvironmentSettings.observability`; a client's own monthly amount is
`ClientSettings.monthly_budget_usd` (this group's `client_monthly_budget_usd` otherwise).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")
# BigQuery dataset ids: letters, digits and underscores, at most 1,024 characters
# (cloud.google.com/bigquery/docs/datasets#dataset-naming).
DATASET_RE = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
# Table ids: letters, digits, '_' and '-' (among other Unicode classes we do not need), at
# most 1,024 bytes (cloud.google.com/bigquery/docs/tables#table_naming). The export names its
# tables `gcp_billing_export_v1_<account>` (standard) and `gcp_billing_export_resource_v1_
# <account>` (detailed; cloud.google.com/billing/docs/how-to/export-data-bigquery-tables/
# standard-usage).
TABLE_RE = re.compile(r"^[A-Za-z0-9_-]{1,1024}$")
PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")


class BillingExport(BaseModel):
    """Where Cloud Billing exports this environment's costs to BigQuery. The export itself is
    switched on in the console (it has no API: cloud.google.com/billing/docs/how-to/
    export-data-bigquery-setup); the stack only reads it."""

    model_config = _STRICT

    dataset: str
    table: str
    project: str | None = None  # the project holding the dataset; the environment's otherwise
    # The export dataset's location. A view's dataset must be in the location of the tables
    # it reads (cloud.google.com/bigquery/docs/views#limitations), so the view dataset uses it.
    location: str = "EU"

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, v: str) -> str:
        if not DATASET_RE.match(v):
            raise ValueError(f"dataset must be letters, digits and '_' (BigQuery); got {v!r}")
        return v

    @field_validator("table")
    @classmethod
    def _table(cls, v: str) -> str:
        if not TABLE_RE.match(v):
            raise ValueError(f"table must be letters, digits, '_' and '-'; got {v!r}")
        return v

    @field_validator("project")
    @classmethod
    def _project(cls, v: str | None) -> str | None:
        if v is not None and not PROJECT_RE.match(v):
            raise ValueError(f"project must be a GCP project id; got {v!r}")
        return v


class Observability(BaseModel):
    """Budgets, the billing view, alert thresholds and who is told."""

    model_config = _STRICT

    # Each client's monthly budget, unless the client names its own.
    client_monthly_budget_usd: Annotated[float, Field(gt=0)] = 500.0
    # Fractions of the budget that notify (actual spend); 1.0 of the forecast notifies too.
    budget_thresholds: list[Annotated[float, Field(gt=0, le=10)]] = Field(
        default_factory=lambda: [0.5, 0.9, 1.0])
    # Email addresses every alert (and every budget) notifies: Monitoring email channels.
    # At most 4: a budget notifies at most 5 channels, the client's own and these.
    alert_emails: list[str] = Field(default_factory=list, max_length=4)
    billing_export: BillingExport | None = None
    views_dataset: str = "gpu_batch_costs"  # the dataset the platform's cost view lives in
    # Alert thresholds.
    queued_alert_minutes: Annotated[int, Field(gt=0, le=2880)] = 60
    preemptions_per_hour: Annotated[int, Field(gt=0)] = 20
    oldest_unacked_alert_minutes: Annotated[int, Field(gt=0)] = 30

    @field_validator("alert_emails")
    @classmethod
    def _emails(cls, v: list[str]) -> list[str]:
        for email in v:
            if not EMAIL_RE.match(email):
                raise ValueError(f"alert_emails: {email!r} is not an email address")
        return v

    @field_validator("views_dataset")
    @classmethod
    def _views(cls, v: str) -> str:
        if not DATASET_RE.match(v):
            raise ValueError(f"views_dataset must be letters, digits and '_'; got {v!r}")
        return v
