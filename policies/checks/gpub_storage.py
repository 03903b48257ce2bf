"""Storage and encryption rules: CKV_GPUB_5 public access prevention, 6 uniform access,
10 CMEK on buckets and topics in CMEK environments."""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult

from policies.checkbase import GpubCheck
from tfjson import is_true, value


class PublicAccessPreventionEnforced(GpubCheck):
    def __init__(self) -> None:
        super().__init__(
            id="CKV_GPUB_5",
            categories=[CheckCategories.GENERAL_SECURITY],
            supported_resources=["google_storage_bucket"],
        )

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        self.evaluated_keys = ["public_access_prevention"]
        pap = value(conf, "public_access_prevention")
        if pap != "enforced":
            # "inherited" follows the org policy, which a project cannot promise.
            return self.fail(f'public_access_prevention is {pap!r}; set "enforced"')
        return CheckResult.PASSED


class UniformBucketLevelAccess(GpubCheck):
    def __init__(self) -> None:
        super().__init__(
            id="CKV_GPUB_6",
            categories=[CheckCategories.IAM],
            supported_resources=["google_storage_bucket"],
        )

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        self.evaluated_keys = ["uniform_bucket_level_access"]
        if not is_true(value(conf, "uniform_bucket_level_access")):
            return self.fail("uniform_bucket_level_access is not true; object ACLs bypass IAM")
        return CheckResult.PASSED


class CmekWhereDeclared(GpubCheck):
    def __init__(self) -> None:
        super().__init__(
            id="CKV_GPUB_10",
            categories=[CheckCategories.ENCRYPTION],
            supported_resources=["google_storage_bucket", "google_pubsub_topic"],
        )

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        if not self.facts.cmek:
            return CheckResult.UNKNOWN  # Google-managed keys are the declared choice here
        if self.entity_type == "google_pubsub_topic":
            self.evaluated_keys = ["kms_key_name"]
            key = value(conf, "kms_key_name")
        else:
            self.evaluated_keys = ["encryption/[0]/default_kms_key_name"]
            key = value(conf, "encryption", "default_kms_key_name")
        if not key:
            return self.fail("the environment declares CMEK but no KMS key is set")
        return CheckResult.PASSED


check_5 = PublicAccessPreventionEnforced()
check_6 = UniformBucketLevelAccess()
check_10 = CmekWhereDeclared()
