"""The Google APIs each environment enables (the table of which resource needs which API is
stacks/apis.py), and the barrier after their enablement."""

from __future__ import annotations

from constructs import Construct

from stacks.apis import CLIENT_PROJECT_APIS, CRM, NO_API, RESOURCE_APIS, SERVICE_USAGE
from stacks.provider import ProjectService, Sleep, barrier
from stacks.settings import EnvironmentSettings

__all__ = ["CLIENT_PROJECT_APIS", "CRM", "NO_API", "RESOURCE_APIS", "SERVICE_USAGE",
           "ProjectApis", "required_apis"]

BASE_APIS = (
    CRM,
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
    "monitoring.googleapis.com",
    "cloudquotas.googleapis.com",
    "iam.googleapis.com",
    # Workflows and Batch mint tokens for the accounts they act as.
    "iamcredentials.googleapis.com",
    "cloudbilling.googleapis.com",
    "billingbudgets.googleapis.com",
)

# Enabling an API is eventually consistent: a call right after `services.enable` returns can
# still see SERVICE_DISABLED, which the provider does not retry (it retries 429 and 5xx only).
API_PROPAGATION = "60s"


def required_apis(settings: EnvironmentSettings) -> list[str]:
    apis = list(BASE_APIS)
    if settings.cmek:
        apis.append("cloudkms.googleapis.com")
    # monitoring.googleapis.com (BASE_APIS) also serves the alerts and dashboard.
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
    """One `google_project_service` per API; never disabled on destroy (shared projects);
    `ready`: the barrier after all of them, which every other resource of the stack waits for
    (`stacks.provider.wait_for`)."""

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
        # The client identities' project holds service accounts only (docs/clients.md).
        for api in CLIENT_PROJECT_APIS:
            self.services[f"{settings.clients_project}/{api}"] = ProjectService(
                self,
                f"clients-{api.split('.')[0]}",
                project=settings.clients_project,
                service=api,
                disable_on_destroy=False,
                disable_dependent_services=False,
            )
        self.ready: Sleep = barrier(self, "ready", self.all(), API_PROPAGATION)
        self.ready.override_logical_id("apis-ready")

    def all(self) -> list[ProjectService]:
        return list(self.services.values())
