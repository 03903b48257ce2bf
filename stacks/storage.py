"""The platform's buckets (ad-hoc data bucket, access-log bucket) and what every client bucket
shares (`client_bucket_settings`).

Usage logs: every bucket logs to the log bucket, and the log bucket lets Cloud Storage's
analytics group write there (`roles/storage.objectCreator` for
`group:cloud-storage-analytics@google.com`, cloud.google.com/storage/docs/access-logs); without
that grant no usage log is ever delivered.
"""

from __future__ import annotations

from typing import Any

from constructs import Construct

from stacks.conditions import list_under, objects_under
from stacks.layout import OUTPUTS
from stacks.provider import (
    StorageBucket,
    StorageBucketEncryption,
    StorageBucketIamMember,
    StorageBucketIamMemberCondition,
    StorageBucketLifecycleRule,
    StorageBucketLifecycleRuleAction,
    StorageBucketLifecycleRuleCondition,
    StorageBucketLogging,
    StorageBucketSoftDeletePolicy,
    StorageBucketVersioning,
    TerraformStack,
)
from stacks.settings import EnvironmentSettings

DAY_S = 86400
CLIENT_BUCKET_DELETION_POLICY = "ABANDON"
# The writer of usage and storage logs (cloud.google.com/storage/docs/access-logs).
USAGE_LOG_WRITER = "group:cloud-storage-analytics@google.com"


def _lifecycle_rules(
    settings: EnvironmentSettings, *, outputs_prefix: str
) -> list[StorageBucketLifecycleRule]:
    """The lifecycle every data-holding bucket shares; outputs live under `outputs_prefix`."""
    return [
        # Overwritten or deleted objects stay recoverable for a while, then go.
        StorageBucketLifecycleRule(
            action=StorageBucketLifecycleRuleAction(type="Delete"),
            condition=StorageBucketLifecycleRuleCondition(
                days_since_noncurrent_time=settings.noncurrent_version_days,
                with_state="ARCHIVED",
            ),
        ),
        # Old outputs are rarely read: move them to colder storage.
        StorageBucketLifecycleRule(
            action=StorageBucketLifecycleRuleAction(
                type="SetStorageClass", storage_class="COLDLINE"
            ),
            condition=StorageBucketLifecycleRuleCondition(
                age=settings.coldline_after_days,
                matches_prefix=[outputs_prefix],
                with_state="LIVE",
            ),
        ),
    ]


def client_bucket_settings(
    settings: EnvironmentSettings, kms_key: str | None, log_bucket: str
) -> dict[str, Any]:
    """Arguments every client bucket shares (literal in the `for_each` resource)."""
    return {
        "logging": StorageBucketLogging(log_bucket=log_bucket),
        "lifecycle_rule": _lifecycle_rules(settings, outputs_prefix=OUTPUTS),
        # Removing a client leaves its bucket and data where they are, outside Terraform
        # (provider 8.7 `deletion_policy`: "ABANDON" removes it from state without deleting
        # it), so no later deploy fails on a bucket that holds objects.
        "deletion_policy": CLIENT_BUCKET_DELETION_POLICY,
        **{k: v for k, v in _locked_down(settings, kms_key).items() if k != "labels"},
    }


def _locked_down(settings: EnvironmentSettings, kms_key: str | None) -> dict[str, Any]:
    """Settings every bucket of the platform shares."""
    extra: dict[str, Any] = {}
    if kms_key is not None:
        extra["encryption"] = StorageBucketEncryption(default_kms_key_name=kms_key)
    return {
        "project": settings.project_id,
        "location": settings.region.upper(),
        "uniform_bucket_level_access": True,
        "public_access_prevention": "enforced",
        "force_destroy": False,
        "versioning": StorageBucketVersioning(enabled=True),
        "soft_delete_policy": StorageBucketSoftDeletePolicy(
            retention_duration_seconds=settings.soft_delete_days * DAY_S
        ),
        "labels": settings.all_labels(),
        **extra,
    }


class PlatformBuckets(Construct):
    """Ad-hoc data bucket (operators' runs under `jobs/<job>/`) with lifecycle rules, and the
    locked-down log bucket every bucket writes usage logs to."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        settings: EnvironmentSettings,
        *,
        kms_key: str | None,
        depends_on: list,
    ) -> None:
        super().__init__(scope, id_)
        self.settings = settings
        self.log_bucket = StorageBucket(
            self,
            "logs",
            name=settings.log_bucket,
            depends_on=depends_on,
            # Access logs are kept a year, then deleted; the log bucket does not log itself.
            lifecycle_rule=[
                StorageBucketLifecycleRule(
                    action=StorageBucketLifecycleRuleAction(type="Delete"),
                    condition=StorageBucketLifecycleRuleCondition(age=365),
                ),
            ],
            **_locked_down(settings, kms_key),
        )
        self.data_bucket = StorageBucket(
            self,
            "data",
            name=settings.data_bucket,
            depends_on=depends_on,
            logging=StorageBucketLogging(
                log_bucket=self.log_bucket.name, log_object_prefix=f"{settings.data_bucket}/"
            ),
            lifecycle_rule=_lifecycle_rules(settings, outputs_prefix="jobs/"),
            **_locked_down(settings, kms_key),
        )
        self.usage_log_writer = StorageBucketIamMember(
            self,
            "usage-log-writer",
            bucket=self.log_bucket.name,
            role="roles/storage.objectCreator",
            member=USAGE_LOG_WRITER,
        )
        # Read once: every property read is a jsii round trip.
        self.data_bucket_name: str = self.data_bucket.name
        self.log_bucket_name: str = self.log_bucket.name

    def grant_objects(self, who: str, member: str, prefix: str) -> list[StorageBucketIamMember]:
        """`member` lists, reads, creates, overwrites and deletes under `prefix` of the data
        bucket, nowhere else. The grants are declared on the stack (their construct ids are
        their Terraform state addresses, kept where they always were)."""
        stack = TerraformStack.of(self)
        where = prefix.rstrip("/")
        return [
            StorageBucketIamMember(
                stack,
                f"{who}-reads",
                bucket=self.data_bucket_name,
                role="roles/storage.objectViewer",
                member=member,
                condition=StorageBucketIamMemberCondition(
                    title=f"{who}-lists-{where}",
                    description=f"{who} lists under {prefix}",
                    expression=list_under(self.settings.data_bucket, prefix),
                ),
            ),
            StorageBucketIamMember(
                stack,
                f"{who}-writes",
                bucket=self.data_bucket_name,
                role="roles/storage.objectUser",
                member=member,
                condition=StorageBucketIamMemberCondition(
                    title=f"{who}-writes-{where}",
                    description=f"{who} creates, overwrites and deletes under {prefix}",
                    expression=objects_under(self.settings.data_bucket, prefix),
                ),
            ),
        ]
