"""Registry and workload rules: CKV_GPUB_7 immutable tags, 8 cleanup policies, 9 no default
compute service account, 11 workflow deletion protection in prod, 12 quota preference contact."""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult

from policies.checkbase import GpubCheck
from tfjson import DEFAULT_COMPUTE_SA_RE, block, is_false, is_true, value


def _standard_docker(conf: dict[str, list[Any]]) -> bool:
    fmt = str(value(conf, "format", default="")).upper()
    mode = str(value(conf, "mode", default="STANDARD_REPOSITORY")).upper()
    return fmt == "DOCKER" and mode == "STANDARD_REPOSITORY"


class RegistryImmutableTags(GpubCheck):
    def __init__(self) -> None:
        super().__init__(
            id="CKV_GPUB_7",
            categories=[CheckCategories.SUPPLY_CHAIN],
            supported_resources=["google_artifact_registry_repository"],
        )

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        self.evaluated_keys = ["docker_config/[0]/immutable_tags"]
        if not _standard_docker(conf):
            return CheckResult.UNKNOWN
        if not is_true(value(conf, "docker_config", "immutable_tags")):
            return self.fail("docker_config.immutable_tags is not true; a tag could be repointed")
        return CheckResult.PASSED


class RegistryCleanupPolicies(GpubCheck):
    def __init__(self) -> None:
        super().__init__(
            id="CKV_GPUB_8",
            categories=[CheckCategories.GENERAL_SECURITY],
            supported_resources=["google_artifact_registry_repository"],
        )

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        self.evaluated_keys = ["cleanup_policies", "cleanup_policy_dry_run"]
        if str(value(conf, "mode", default="STANDARD_REPOSITORY")).upper() != "STANDARD_REPOSITORY":
            return CheckResult.UNKNOWN
        policies = block(conf, "cleanup_policies")
        if not any(str(value(p, "action", default="")).upper() == "DELETE" for p in policies):
            return self.fail("no DELETE cleanup policy; old images pile up (and their CVEs)")
        if is_true(value(conf, "cleanup_policy_dry_run")):
            return self.fail("cleanup_policy_dry_run is true; the policies never delete")
        return CheckResult.PASSED


class NoDefaultComputeServiceAccount(GpubCheck):
    # resource type -> path of the identity it runs as
    IDENTITY = {
        "google_workflows_workflow": ("service_account",),
        "google_eventarc_trigger": ("service_account",),
    }

    def __init__(self) -> None:
        super().__init__(
            id="CKV_GPUB_9",
            categories=[CheckCategories.IAM],
            supported_resources=[*self.IDENTITY, "google_cloud_scheduler_job"],
        )

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        if self.entity_type == "google_cloud_scheduler_job":
            self.evaluated_keys = ["http_target/[0]/oauth_token/[0]/service_account_email"]
            if not block(conf, "http_target"):
                return CheckResult.UNKNOWN  # Pub/Sub or App Engine target: no identity to set
            identity = value(conf, "http_target", "oauth_token", "service_account_email") or value(
                conf, "http_target", "oidc_token", "service_account_email"
            )
        else:
            path = self.IDENTITY[self.entity_type]
            self.evaluated_keys = ["/".join(path)]
            identity = value(conf, *path)
        if not identity:
            return self.fail(
                f"{self.entity_type} sets no service account; it would run as the "
                "default compute service account"
            )
        if DEFAULT_COMPUTE_SA_RE.search(str(identity)):
            return self.fail(f"runs as the default compute service account {identity}")
        # A workflow that creates Batch jobs must not let them fall back to the default SA.
        source = str(value(conf, "source_contents", default=""))
        if DEFAULT_COMPUTE_SA_RE.search(source):
            return self.fail("workflow source names the default compute service account")
        return CheckResult.PASSED


class WorkflowDeletionProtectionInProd(GpubCheck):
    def __init__(self) -> None:
        super().__init__(
            id="CKV_GPUB_11",
            categories=[CheckCategories.BACKUP_AND_RECOVERY],
            supported_resources=["google_workflows_workflow"],
        )

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        self.evaluated_keys = ["deletion_protection"]
        if not self.facts.prod:
            return CheckResult.UNKNOWN
        # The provider defaults deletion_protection to true; only an explicit false fails.
        if is_false(value(conf, "deletion_protection")):
            return self.fail("deletion_protection is false in prod")
        return CheckResult.PASSED


class QuotaPreferenceContact(GpubCheck):
    def __init__(self) -> None:
        super().__init__(
            id="CKV_GPUB_12",
            categories=[CheckCategories.GENERAL_SECURITY],
            supported_resources=["google_cloud_quotas_quota_preference"],
        )

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        self.evaluated_keys = ["contact_email", "justification"]
        email = str(value(conf, "contact_email", default="")).strip()
        justification = str(value(conf, "justification", default="")).strip()
        if "@" not in email and "${" not in email:
            return self.fail("contact_email is missing; Google asks it about increases")
        if len(justification) < 10:
            return self.fail("justification is missing or shorter than 10 characters")
        return CheckResult.PASSED


check_7 = RegistryImmutableTags()
check_8 = RegistryCleanupPolicies()
check_9 = NoDefaultComputeServiceAccount()
check_11 = WorkflowDeletionProtectionInProd()
check_12 = QuotaPreferenceContact()
