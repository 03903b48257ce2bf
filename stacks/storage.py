"""The data bucket (inputs, outputs, manifests) and its separate access-log bucket."""

from __future__ import annotations

from typing import Any

from constructs import Construct

from stacks.provider import (
    StorageBucket,
    StorageBucketEncryption,
    StorageBucketLifecycleRule,
    StorageBucketLifecycleRuleAction,
    StorageBucketLifecycleRuleCondition,
    StorageBucketLogging,
    StorageBucketSoftDeletePolicy,
    StorageBucketVersioning,
)
from stacks.settings import EnvironmentSettings

DAY_S = 86400


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
    """Data bucket with lifecycle rules and access logs to a locked-down log bucket."""

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
            lifecycle_rule=[
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
                        matches_prefix=[f"{c.name}/outputs/" for c in settings.clients] or ["_"],
                        with_state="LIVE",
                    ),
                ),
            ],
            **_locked_down(settings, kms_key),
        )
        # Read once: every property read is a jsii round trip, and each client grant needs it.
        self.data_bucket_name: str = self.data_bucket.name
