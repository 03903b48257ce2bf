"""The example environments the app synthesizes: `platform-dev` and `platform-prod`."""

from __future__ import annotations

from jobs.registry import ALL_JOBS
from stacks.observability_settings import BillingExport, Observability
from stacks.settings import ClientSettings, EnvironmentSettings, Guardrails, Schedule


def dev() -> EnvironmentSettings:
    return EnvironmentSettings(
        name="dev",
        project_id="example-ml-dev",
        region="europe-west4",
        zones=["europe-west4-a", "europe-west4-b"],
        labels={"team": "ml-platform", "cost-center": "ml-dev"},
        state_bucket="example-ml-tfstate",
        state_prefix="gpu-batch/dev",
        cmek=False,
        quota_contact_email="ml-platform@example.com",
        jobs=list(ALL_JOBS.values()),  # every declared job (jobs/declared/*.py)
        clients=[
            ClientSettings(name="acme", jobs=["embed", "uppercase"], contact="data@acme.example"),
            ClientSettings(
                name="globex",
                jobs=["uppercase"],
                principal="group:batch-users@globex.example",
                schedules=[
                    Schedule(job="uppercase", cron="0 2 * * *", time_zone="Europe/Amsterdam")
                ],
            ),
        ],
        guardrails=Guardrails(
            max_run_duration_s=6 * 3600,
            allowed_regions=["europe-west4"],
            max_gpus_per_job=4,
            max_parallelism=50,
            max_cost_per_run_usd=50.0,
            gpu_quota={"L4": 8},
        ),
        observability=Observability(alert_emails=["ml-platform@example.com"]),
    )


def prod() -> EnvironmentSettings:
    return EnvironmentSettings(
        name="prod",
        project_id="example-ml-prod",
        region="europe-west4",
        zones=["europe-west4-a", "europe-west4-b", "europe-west4-c"],
        labels={"team": "ml-platform", "cost-center": "ml-prod"},
        state_bucket="example-ml-tfstate",
        state_prefix="gpu-batch/prod",
        cmek=True,
        billing_account="012345-6789AB-CDEF01",
        monthly_budget_usd=5000.0,
        quota_contact_email="ml-platform@example.com",
        jobs=list(ALL_JOBS.values()),  # every declared job (jobs/declared/*.py)
        clients=[
            ClientSettings(
                name="acme",
                jobs=["embed", "uppercase"],
                principal="group:batch-users@acme.example",
                contact="data@acme.example",
                monthly_budget_usd=2000.0,
            ),
        ],
        guardrails=Guardrails(
            max_run_duration_s=24 * 3600,
            allowed_regions=["europe-west4"],
            max_gpus_per_job=8,
            max_parallelism=100,
            max_cost_per_run_usd=500.0,
            gpu_quota={"L4": 16},
        ),
        observability=Observability(
            alert_emails=["ml-platform@example.com"],
            client_monthly_budget_usd=1000.0,
            billing_export=BillingExport(
                dataset="billing_export",
                table="gcp_billing_export_resource_v1_012345_6789AB_CDEF01",
                location="europe-west4",  # where the environment's CMEK key is
            ),
        ),
    )


def example_environments() -> list[EnvironmentSettings]:
    return [dev(), prod()]
