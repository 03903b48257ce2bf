"""Which Google API each Terraform resource type needs: pure data (no provider import), read by
the stacks (stacks/services.py) and by the fresh-project check (policies/fresh_project.py).

`RESOURCE_APIS` maps a resource (or `data.` source) type to the APIs the provider calls to
manage it; the check refuses a stack whose resource does not depend on the enablement of each,
and a type missing from the table. Sources: each type's provider page
(registry.terraform.io/providers/hashicorp/google/latest/docs/resources/<type>, its "API
documentation" link); project-level IAM, audit configs and `data.google_project` call Cloud
Resource Manager (cloud.google.com/resource-manager/reference/rest: projects.get,
getIamPolicy, setIamPolicy), which a new project does not enable by default
(cloud.google.com/service-usage/docs/enabled-service: the default services list has no Cloud
Resource Manager API).
"""

from __future__ import annotations

CRM = "cloudresourcemanager.googleapis.com"
# Service Usage enables the others: it must be on before any `google_project_service` (it is a
# default service; `bin/bootstrap` enables it with gcloud on projects where it is off).
SERVICE_USAGE = "serviceusage.googleapis.com"
# What `bin/bootstrap` enables before the first deploy (the stack cannot enable them for
# itself): Service Usage (it enables the rest), Cloud Resource Manager (the provider reads the
# project before it manages its services; the stack enables it too), IAM and the token APIs
# Workload Identity Federation needs (cloud.google.com/iam/docs/workload-identity-federation-
# with-deployment-pipelines: iam, iamcredentials, sts), and Cloud Storage (the state bucket).
BOOTSTRAP_APIS = (
    SERVICE_USAGE,
    "cloudresourcemanager.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "sts.googleapis.com",
    "storage.googleapis.com",
)

# What the client identities' project needs: its service accounts, and tokens for them
# (impersonation by the client's principal).
CLIENT_PROJECT_APIS = ("iam.googleapis.com", "iamcredentials.googleapis.com")

RESOURCE_APIS: dict[str, tuple[str, ...]] = {
    "google_artifact_registry_repository": ("artifactregistry.googleapis.com",),
    "google_artifact_registry_repository_iam_member": ("artifactregistry.googleapis.com",),
    # The Billing Budget API (cloud.google.com/billing/docs/how-to/budget-api-overview).
    "google_billing_budget": ("billingbudgets.googleapis.com",),
    # The cost view (cloud.google.com/bigquery/docs/reference/rest/v2/tables).
    "google_bigquery_dataset": ("bigquery.googleapis.com",),
    "google_bigquery_table": ("bigquery.googleapis.com",),
    # projects.getServiceAccount of the BigQuery API (cloud.google.com/bigquery/docs/
    # reference/rest/v2/projects/getServiceAccount): the agent granted the CMEK key.
    "data.google_bigquery_default_service_account": ("bigquery.googleapis.com",),
    "google_cloud_quotas_quota_preference": ("cloudquotas.googleapis.com",),
    "data.google_cloud_quotas_quota_info": ("cloudquotas.googleapis.com",),
    "google_cloud_scheduler_job": ("cloudscheduler.googleapis.com",),
    "google_compute_network": ("compute.googleapis.com",),
    "google_compute_subnetwork": ("compute.googleapis.com",),
    "google_compute_firewall": ("compute.googleapis.com",),
    "google_compute_router": ("compute.googleapis.com",),
    "google_compute_router_nat": ("compute.googleapis.com",),
    # An Eventarc trigger with Pub/Sub transport makes a subscription on the topic
    # (cloud.google.com/eventarc/docs/reference/rest/v1/projects.locations.triggers#Pubsub).
    "google_eventarc_trigger": ("eventarc.googleapis.com", "pubsub.googleapis.com"),
    "google_kms_key_ring": ("cloudkms.googleapis.com",),
    "google_kms_crypto_key": ("cloudkms.googleapis.com",),
    "google_kms_crypto_key_iam_member": ("cloudkms.googleapis.com",),
    "google_logging_metric": ("logging.googleapis.com",),
    "google_monitoring_alert_policy": ("monitoring.googleapis.com",),
    "google_monitoring_dashboard": ("monitoring.googleapis.com",),
    "google_monitoring_notification_channel": ("monitoring.googleapis.com",),
    # A client shard finds the platform's alert channels by display name
    # (projects.notificationChannels.list, cloud.google.com/monitoring/api/ref_v3/rest/v3/
    # projects.notificationChannels/list).
    "data.google_monitoring_notification_channel": ("monitoring.googleapis.com",),
    "google_project_iam_audit_config": (CRM,),
    "google_project_iam_member": (CRM,),
    "data.google_project": (CRM,),
    # services.generateServiceIdentity is a Service Usage method; the service itself must be
    # on too (the check adds the `service` the resource names).
    "google_project_service_identity": (SERVICE_USAGE,),
    "google_pubsub_topic": ("pubsub.googleapis.com",),
    "google_pubsub_topic_iam_member": ("pubsub.googleapis.com",),
    "google_pubsub_topic_iam_policy": ("pubsub.googleapis.com",),
    "google_pubsub_subscription": ("pubsub.googleapis.com",),
    "google_pubsub_subscription_iam_member": ("pubsub.googleapis.com",),
    "google_pubsub_subscription_iam_policy": ("pubsub.googleapis.com",),
    "google_secret_manager_secret": ("secretmanager.googleapis.com",),
    "google_secret_manager_secret_iam_member": ("secretmanager.googleapis.com",),
    "google_service_account": ("iam.googleapis.com",),
    "google_service_account_iam_member": ("iam.googleapis.com",),
    "google_service_account_iam_policy": ("iam.googleapis.com",),
    "google_storage_bucket": ("storage.googleapis.com",),
    "google_storage_bucket_iam_member": ("storage.googleapis.com",),
    "google_storage_bucket_iam_policy": ("storage.googleapis.com",),
    # A notification config is made on the bucket and publishes to a topic (the topic must
    # exist and the storage agent must publish there: cloud.google.com/storage/docs/
    # reporting-changes).
    "google_storage_notification": ("storage.googleapis.com", "pubsub.googleapis.com"),
    "data.google_storage_project_service_account": ("storage.googleapis.com",),
    "google_workflows_workflow": ("workflows.googleapis.com",),
}
# Types that need no API of the project: the enablements themselves, the barriers, and
# `data.terraform_remote_state` (cdktf's cross-stack reference: it reads another stack's
# outputs from the state bucket, through the backend's credentials, never a project API;
# developer.hashicorp.com/terraform/language/state/remote-state-data).
NO_API = frozenset({"google_project_service", "time_sleep", "data.terraform_remote_state"})

