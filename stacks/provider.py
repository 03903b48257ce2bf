"""The one module that imports the CDK and Google provider bindings.

Switching CDK distributions (cdktn <-> cdktf) is a change to this file only. Importing it
costs seconds (a ~30 MB jsii assembly is loaded into a node process), so nothing on the submit
path may import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsii

# The jsii Node end-of-life banner is silenced in `stacks/__init__.py`, which runs first.
from cdktn import (
    App,
    Fn,
    GcsBackend,
    IAnyProducer,
    IResolvable,
    Lazy,
    TerraformLocal,
    TerraformOutput,
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
from cdktn_provider_google.billing_budget import (
    BillingBudget,
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
from cdktn_provider_google.pubsub_topic import PubsubTopic
from cdktn_provider_google.pubsub_topic_iam_member import PubsubTopicIamMember
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
from cdktn_provider_google.workflows_workflow import WorkflowsWorkflow


@jsii.implements(IAnyProducer)
class _MapProducer:
    """Hands a Python dict to the CDK when it synthesizes (not when the resource is made)."""

    def __init__(self, entries: Mapping[str, Any]) -> None:
        self._entries = entries

    def produce(self, context: Any) -> Any:
        return dict(self._entries)


def lazy_map(entries: Mapping[str, Any]) -> IResolvable:
    """A value read from `entries` at synth: entries added after this call are included."""
    return Lazy.any_value(_MapProducer(entries))


__all__ = [
    "App",
    "ArtifactRegistryRepository",
    "ArtifactRegistryRepositoryCleanupPolicies",
    "ArtifactRegistryRepositoryCleanupPoliciesCondition",
    "ArtifactRegistryRepositoryCleanupPoliciesMostRecentVersions",
    "ArtifactRegistryRepositoryDockerConfig",
    "ArtifactRegistryRepositoryIamMember",
    "BillingBudget",
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
    "ProjectIamAuditConfig",
    "ProjectIamAuditConfigAuditLogConfig",
    "ProjectIamMember",
    "ProjectService",
    "PubsubSubscription",
    "PubsubSubscriptionExpirationPolicy",
    "PubsubSubscriptionIamMember",
    "PubsubTopic",
    "PubsubTopicIamMember",
    "SecretManagerSecret",
    "SecretManagerSecretIamMember",
    "SecretManagerSecretReplication",
    "SecretManagerSecretReplicationUserManaged",
    "SecretManagerSecretReplicationUserManagedReplicas",
    "ServiceAccount",
    "ServiceAccountIamMember",
    "StorageBucket",
    "StorageBucketEncryption",
    "StorageBucketIamMember",
    "StorageBucketIamMemberCondition",
    "StorageBucketLifecycleRule",
    "StorageBucketLifecycleRuleAction",
    "StorageBucketLifecycleRuleCondition",
    "StorageBucketLogging",
    "StorageBucketSoftDeletePolicy",
    "StorageBucketVersioning",
    "TerraformLocal",
    "TerraformOutput",
    "TerraformStack",
    "Testing",
    "WorkflowsWorkflow",
    "lazy_map",
]
