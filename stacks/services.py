"""The Google APIs each environment enables."""

from __future__ import annotations

from constructs import Construct

from stacks.provider import ProjectService
from stacks.settings import EnvironmentSettings

BASE_APIS = (
    "batch.googleapis.com",
    "compute.googleapis.com",
    "storage.googleapis.com",
    "artifactregistry.googleapis.com",
    "eventarc.googleapis.com",
    "workflows.googleapis.com",
    "workflowexecutions.googleapis.com",
    "pubsub.googleapis.com",
    "secretmanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "logging.googleapis.com",
    "cloudquotas.googleapis.com",
    "iam.googleapis.com",
    "cloudbilling.googleapis.com",
    "billingbudgets.googleapis.com",
)


def required_apis(settings: EnvironmentSettings) -> list[str]:
    apis = list(BASE_APIS)
    if settings.cmek:
        apis.append("cloudkms.googleapis.com")
    apis.append("monitoring.googleapis.com")  # alerts and dashboard (stacks/monitoring.py)
    if settings.observability.billing_export is not None:
        apis.append("bigquery.googleapis.com")  # the cost view (stacks/billing_view.py)
    if settings.billing_account is None:
        apis = [
            a
            for a in apis
            if a not in ("cloudbilling.googleapis.com", "billingbudgets.googleapis.com")
        ]
    return apis


class ProjectApis(Construct):
    """One `google_project_service` per API; never disabled on destroy (shared projects)."""

    def __init__(self, scope: Construct, id_: str, settings: EnvironmentSettings) -> None:
        super().__init__(scope, id_)
        self.services: dict[str, ProjectService] = {}
        for api in required_apis(settings):
            key = api.split(".")[0]
            self.services[api] = ProjectService(
                self,
                key,
                project=settings.project_id,
                service=api,
                disable_on_destroy=False,
                disable_dependent_services=False,
            )

    def all(self) -> list[ProjectService]:
        return list(self.services.values())
