"""The one module that imports the CDK and Google provider bindings.

Switching CDK distributions (cdktn <-> cdktf) is a change to this file only. Importing it
costs seconds (a ~30 MB jsii assembly is loaded into a node process), so nothing on the submit
path may import it.
"""

from __future__ import annotations

from typing import Any

# The jsii Node end-of-life banner is silenced in `stacks/__init__.py`, which runs first.
import jsii
from cdktn import (
    App,
    Aspects,
    Fn,
    GcsBackend,
    IAspect,
    TerraformDataSource,
    TerraformLocal,
    TerraformOutput,
    TerraformResource,
    TerraformStack,
    Testing,
)
from cdktn_provider_google.artifact_registry_repository import (
    ArtifactRegistryRepository,
    ArtifactRegistryRepositoryCleanupPolicies,
    ArtifactRegistryRepositoryCleanupPoliciesCondition,
    ArtifactRegistryRepositoryCleanupPoliciesMostRecentVersions,
    ArtifactRegistryRepositoryDockerConfig,
)
from cdktn_provider_google.artifact_registry_repository_iam_member import (
    ArtifactRegistryRepositoryIamMember,
)
from cdktn_provider_google.bigquery_dataset import (
    BigqueryDataset,
    BigqueryDatasetDefaultEncryptionConfiguration,
)
from cdktn_provider_google.bigquery_table import (
    BigqueryTable,
    BigqueryTableEncryptionConfiguration,
    BigqueryTableView,
)
from cdktn_provider_google.billing_budget import (
    BillingBudget,
    BillingBudgetAllUpdatesRule,
    BillingBudgetAmount,
    BillingBudgetAmountSpecifiedAmount,
    BillingBudgetBudgetFilter,
    BillingBudgetThresholdRules,
)
from cdktn_provider_google.cloud_quotas_quota_preference import (
    CloudQuotasQuotaPreference,
    CloudQuotasQuotaPreferenceQuotaConfig,
)
from cdktn_provider_google.cloud_scheduler_job import (
    CloudSchedulerJob,
    CloudSchedulerJobHttpTarget,
    CloudSchedulerJobHttpTargetOauthToken,
    CloudSchedulerJobRetryConfig,
)
from cdktn_provider_google.compute_firewall import (
    ComputeFirewall,
    ComputeFirewallDeny,
    ComputeFirewallLogConfig,
)
from cdktn_provider_google.compute_network import ComputeNetwork
from cdktn_provider_google.compute_router import ComputeRouter
from cdktn_provider_google.compute_router_nat import ComputeRouterNat
from cdktn_provider_google.compute_subnetwork import (
    ComputeSubnetwork,
    ComputeSubnetworkLogConfig,
)
from cdktn_provider_google.data_google_bigquery_default_service_account import (
    DataGoogleBigqueryDefaultServiceAccount,
)
from cdktn_provider_google.data_google_cloud_quotas_quota_info import (
    DataGoogleCloudQuotasQuotaInfo,
)
from cdktn_provider_google.data_google_monitoring_notification_channel import (
    DataGoogleMonitoringNotificationChannel,
)
from cdktn_provider_google.data_google_project import DataGoogleProject
from cdktn_provider_google.data_google_storage_project_service_account import (
    DataGoogleStorageProjectServiceAccount,
)
from cdktn_provider_google.eventarc_trigger import (
    EventarcTrigger,
    EventarcTriggerDestination,
    EventarcTriggerMatchingCriteria,
)
from cdktn_provider_google.kms_crypto_key import KmsCryptoKey
from cdktn_provider_google.kms_crypto_key_iam_member import KmsCryptoKeyIamMember
from cdktn_provider_google.kms_key_ring import KmsKeyRing
from cdktn_provider_google.logging_metric import (
    LoggingMetric,
    LoggingMetricMetricDescriptor,
    LoggingMetricMetricDescriptorLabels,
)
from cdktn_provider_google.monitoring_alert_policy import (
    MonitoringAlertPolicy,
    MonitoringAlertPolicyAlertStrategy,
    MonitoringAlertPolicyConditions,
    MonitoringAlertPolicyConditionsConditionPrometheusQueryLanguage,
    MonitoringAlertPolicyConditionsConditionThreshold,
    MonitoringAlertPolicyConditionsConditionThresholdAggregations,
    MonitoringAlertPolicyDocumentation,
)
from cdktn_provider_google.monitoring_dashboard import MonitoringDashboard
from cdktn_provider_google.monitoring_notification_channel import (
    MonitoringNotificationChannel,
)
from cdktn_provider_google.project_iam_audit_config import (
    ProjectIamAuditConfig,
    ProjectIamAuditConfigAuditLogConfig,
)
from cdktn_provider_google.project_iam_member import ProjectIamMember
from cdktn_provider_google.project_service import ProjectService
from cdktn_provider_google.provider import GoogleProvider
from cdktn_provider_google.pubsub_subscription import (
    PubsubSubscription,
    PubsubSubscriptionExpirationPolicy,
)
from cdktn_provider_google.pubsub_subscription_iam_member import (
    PubsubSubscriptionIamMember,
)
from cdktn_provider_google.pubsub_subscription_iam_policy import (
    PubsubSubscriptionIamPolicy,
)
from cdktn_provider_google.pubsub_topic import PubsubTopic
from cdktn_provider_google.pubsub_topic_iam_member import PubsubTopicIamMember
from cdktn_provider_google.pubsub_topic_iam_policy import PubsubTopicIamPolicy
from cdktn_provider_google.secret_manager_secret import (
    SecretManagerSecret,
    SecretManagerSecretReplication,
    SecretManagerSecretReplicationUserManaged,
    SecretManagerSecretReplicationUserManagedReplicas,
)
from cdktn_provider_google.secret_manager_secret_iam_member import (
    SecretManagerSecretIamMember,
)
from cdktn_provider_google.service_account import ServiceAccount
from cdktn_provider_google.service_account_iam_member import (
    ServiceAccountIamMember,
)
from cdktn_provider_google.service_account_iam_policy import ServiceAccountIamPolicy
from cdktn_provider_google.storage_bucket import (
    StorageBucket,
    StorageBucketEncryption,
    StorageBucketLifecycleRule,
    StorageBucketLifecycleRuleAction,
    StorageBucketLifecycleRuleCondition,
    StorageBucketLogging,
    StorageBucketSoftDeletePolicy,
    StorageBucketVersioning,
)
from cdktn_provider_google.storage_bucket_iam_member import (
    StorageBucketIamMember,
    StorageBucketIamMemberCondition,
)
from cdktn_provider_google.storage_bucket_iam_policy import StorageBucketIamPolicy
from cdktn_provider_google.storage_notification import StorageNotification
from cdktn_provider_google.workflows_workflow import WorkflowsWorkflow
from cdktn_provider_time.provider import TimeProvider
from cdktn_provider_time.sleep import Sleep
from constructs import Construct, IConstruct

# The google-beta provider: only `google_project_service_identity` needs it. The installed
# cdktn-provider-google package has no google-beta bindings, so the resource is declared with
# the CDK's generic TerraformResource (its schema is three strings) and the provider is
# required by hand; both stay in this module like every other provider import.
GOOGLE_BETA_SOURCE = "hashicorp/google-beta"
GOOGLE_BETA_VERSION = "8.7.0"  # the google provider version of cdktn-provider-google 21.1


def google_beta_provider(stack: TerraformStack, project: str, region: str) -> None:
    """Declare the google-beta provider (required_providers, pinned, + provider block)."""
    stack.add_override(
        "terraform.required_providers.google-beta",
        {"source": GOOGLE_BETA_SOURCE, "version": GOOGLE_BETA_VERSION},
    )
    stack.add_override("provider.google-beta", [{"project": project, "region": region}])


def project_service_identity(
    scope: Construct, id_: str, project: str, service: str, depends_on: list[Any]
) -> TerraformResource:
    """`google_project_service_identity` (google-beta): makes the service's agent exist and
    gives its email, so a grant to the agent can never precede the agent.
    Docs: registry.terraform.io/providers/hashicorp/google-beta/latest/docs/resources/
    project_service_identity"""
    resource = TerraformResource(
        scope, id_, terraform_resource_type="google_project_service_identity",
        depends_on=depends_on,
    )
    resource.add_override("provider", "google-beta")
    resource.add_override("project", project)
    resource.add_override("service", service)
    return resource


# The hashicorp/time provider (PyPI `cdktn-provider-time` 14.0.2 binds time 0.14.2 and writes
# that exact version into required_providers). `time_sleep` waits `create_duration` once, when
# it is created, and resources that depend on it start after it
# (registry.terraform.io/providers/hashicorp/time/latest/docs/resources/sleep): a propagation
# barrier for what Google makes eventually consistent and the provider does not retry.
TIME_SOURCE = "hashicorp/time"
TIME_VERSION = "0.14.2"


def time_provider(stack: TerraformStack) -> TimeProvider:
    return TimeProvider(stack, "time")


def barrier(scope: Construct, id_: str, after: list[Any], duration: str) -> Sleep:
    """A `time_sleep` of `duration` after every resource in `after` (created once)."""
    return Sleep(scope, id_, create_duration=duration, depends_on=after)


@jsii.implements(IAspect)
class WaitFor:
    """At synth, every resource and data source of the stack except `exempt` types (the API
    enablements and the barriers themselves) depends on `target`: nothing a stack declares
    can reach an API before it is enabled and its enablement has propagated."""

    def __init__(self, target: TerraformResource, exempt: frozenset[str]) -> None:
        self.target = target
        self.exempt = exempt
        # Terraform's depends_on takes a bare address, never a "${...}" template.
        self.fqn = f"{target.terraform_resource_type}.{target.friendly_unique_id}"

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, TerraformResource | TerraformDataSource):
            return
        if node.terraform_resource_type in self.exempt:
            return
        current = list(node.depends_on or [])
        if self.fqn not in current:
            node.depends_on = [*current, self.fqn]


def wait_for(stack: TerraformStack, target: TerraformResource, exempt: frozenset[str]) -> None:
    Aspects.of(stack).add(WaitFor(target, exempt))


__all__ = [
    "App",
    "ArtifactRegistryRepository",
    "ArtifactRegistryRepositoryCleanupPolicies",
    "ArtifactRegistryRepositoryCleanupPoliciesCondition",
    "ArtifactRegistryRepositoryCleanupPoliciesMostRecentVersions",
    "ArtifactRegistryRepositoryDockerConfig",
    "ArtifactRegistryRepositoryIamMember",
    "Aspects",
    "BigqueryDataset",
    "BigqueryDatasetDefaultEncryptionConfiguration",
    "BigqueryTable",
    "BigqueryTableEncryptionConfiguration",
    "BigqueryTableView",
    "BillingBudget",
    "BillingBudgetAllUpdatesRule",
    "BillingBudgetAmount",
    "BillingBudgetAmountSpecifiedAmount",
    "BillingBudgetBudgetFilter",
    "BillingBudgetThresholdRules",
    "CloudQuotasQuotaPreference",
    "CloudQuotasQuotaPreferenceQuotaConfig",
    "CloudSchedulerJob",
    "CloudSchedulerJobHttpTarget",
    "CloudSchedulerJobHttpTargetOauthToken",
    "CloudSchedulerJobRetryConfig",
    "ComputeFirewall",
    "ComputeFirewallDeny",
    "ComputeFirewallLogConfig",
    "ComputeNetwork",
    "ComputeRouter",
    "ComputeRouterNat",
    "ComputeSubnetwork",
    "ComputeSubnetworkLogConfig",
    "Construct",
    "DataGoogleBigqueryDefaultServiceAccount",
    "DataGoogleCloudQuotasQuotaInfo",
    "DataGoogleMonitoringNotificationChannel",
    "DataGoogleProject",
    "DataGoogleStorageProjectServiceAccount",
    "EventarcTrigger",
    "EventarcTriggerDestination",
    "EventarcTriggerMatchingCriteria",
    "Fn",
    "GcsBackend",
    "GoogleProvider",
    "KmsCryptoKey",
    "KmsCryptoKeyIamMember",
    "KmsKeyRing",
    "LoggingMetric",
    "LoggingMetricMetricDescriptor",
    "LoggingMetricMetricDescriptorLabels",
    "MonitoringAlertPolicy",
    "MonitoringAlertPolicyAlertStrategy",
    "MonitoringAlertPolicyConditions",
    "MonitoringAlertPolicyConditionsConditionPrometheusQueryLanguage",
    "MonitoringAlertPolicyConditionsConditionThreshold",
    "MonitoringAlertPolicyConditionsConditionThresholdAggregations",
    "MonitoringAlertPolicyDocumentation",
    "MonitoringDashboard",
    "MonitoringNotificationChannel",
    "ProjectIamAuditConfig",
    "ProjectIamAuditConfigAuditLogConfig",
    "ProjectIamMember",
    "ProjectService",
    "PubsubSubscription",
    "PubsubSubscriptionExpirationPolicy",
    "PubsubSubscriptionIamMember",
    "PubsubSubscriptionIamPolicy",
    "PubsubTopic",
    "PubsubTopicIamMember",
    "PubsubTopicIamPolicy",
    "SecretManagerSecret",
    "SecretManagerSecretIamMember",
    "SecretManagerSecretReplication",
    "SecretManagerSecretReplicationUserManaged",
    "SecretManagerSecretReplicationUserManagedReplicas",
    "ServiceAccount",
    "ServiceAccountIamMember",
    "ServiceAccountIamPolicy",
    "Sleep",
    "StorageBucket",
    "StorageBucketEncryption",
    "StorageBucketIamMember",
    "StorageBucketIamMemberCondition",
    "StorageBucketIamPolicy",
    "StorageBucketLifecycleRule",
    "StorageBucketLifecycleRuleAction",
    "StorageBucketLifecycleRuleCondition",
    "StorageBucketLogging",
    "StorageBucketSoftDeletePolicy",
    "StorageBucketVersioning",
    "StorageNotification",
    "TerraformDataSource",
    "TerraformLocal",
    "TerraformOutput",
    "TerraformResource",
    "TerraformStack",
    "Testing",
    "TimeProvider",
    "WorkflowsWorkflow",
    "barrier",
    "google_beta_provider",
    "project_service_identity",
    "time_provider",
    "wait_for",
]
