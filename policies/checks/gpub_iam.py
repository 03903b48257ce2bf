"""IAM rules: CKV_GPUB_1 basic roles, 2 project-wide act-as, 3 client prefix conditions,
4 public principals, 13 service account keys."""

from __future__ import annotations

import re
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult

from policies.checkbase import IAM_GRANTS, GpubCheck
from stacks.layout import CLIENT_SA_PREFIX, DATA_BUCKET_SUFFIX
from tfjson import PolicyBinding, StackFacts, flat_strings, members, value

BASIC_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
ACT_AS_ROLES = {"roles/iam.serviceAccountUser", "roles/iam.serviceAccountTokenCreator"}
PUBLIC = {"allUsers", "allAuthenticatedUsers"}
OBJECT_ROLES = {
    "roles/storage.objectViewer",
    "roles/storage.objectCreator",
    "roles/storage.objectUser",
    "roles/storage.objectAdmin",
    "roles/storage.legacyObjectReader",
    "roles/storage.legacyObjectOwner",
}
PREFIX_TERM_RE = re.compile(r"resource\.name\.startsWith\(\s*\"([^\"]*)\"\s*\)")
BUCKET_ONLY_RE = re.compile(
    r'resource\.type\s*==\s*"storage\.googleapis\.com/Bucket"\s*&&\s*'
    r'resource\.name\s*==\s*"projects/_/buckets/[^"]+"'
)
LIST_TERM_RE = re.compile(
    r"objectListPrefix\"\s*,\s*\"[^\"]*\"\s*\)\s*\.startsWith\(\s*\"([^\"]*)\"\s*\)"
)


def grants(conf: dict[str, Any], facts: StackFacts) -> list[tuple[str, list[str]]] | None:
    """(role, members) pairs of a member/binding/policy resource; None if unresolvable."""
    policy_data = value(conf, "policy_data")
    if policy_data is not None:
        return facts.policy_bindings(str(policy_data))
    return [(str(value(conf, "role", default="")), members(conf))]


class NoBasicRoles(GpubCheck):
    def __init__(self) -> None:
        super().__init__(
            id="CKV_GPUB_1",
            categories=[CheckCategories.IAM],
            supported_resources=IAM_GRANTS,
        )

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        self.evaluated_keys = ["role", "policy_data"]
        pairs = grants(conf, self.facts)
        if pairs is None:
            return self.fail("policy_data cannot be read; declare bindings as google_iam_policy")
        for role, _ in pairs:
            if role in BASIC_ROLES:
                return self.fail(f"basic role {role} granted; grant a predefined role instead")
        return CheckResult.PASSED


class NoProjectWideActAs(GpubCheck):
    def __init__(self) -> None:
        super().__init__(
            id="CKV_GPUB_2",
            categories=[CheckCategories.IAM],
            supported_resources=[
                f"google_{level}_iam_{kind}"
                for level in ("project", "folder", "organization")
                for kind in ("member", "binding", "policy")
            ],
        )

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        self.evaluated_keys = ["role", "policy_data"]
        pairs = grants(conf, self.facts)
        if pairs is None:
            return self.fail("policy_data cannot be read; declare bindings as google_iam_policy")
        for role, _ in pairs:
            if role in ACT_AS_ROLES:
                return self.fail(
                    f"{role} at project level lets the member act as EVERY service account; "
                    "grant it on the one service account (google_service_account_iam_member)"
                )
        return CheckResult.PASSED


class ClientGrantsArePrefixScoped(GpubCheck):
    def __init__(self) -> None:
        super().__init__(
            id="CKV_GPUB_3",
            categories=[CheckCategories.IAM],
            supported_resources=[
                "google_storage_bucket_iam_member",
                "google_storage_bucket_iam_binding",
                "google_storage_bucket_iam_policy",
            ],
        )

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        """Every binding of the resource (a policy's, conditions included: tfjson.iam)."""
        self.evaluated_keys = ["member", "members", "role", "bucket", "condition/[0]/expression",
                               "policy_data"]
        bindings = self.facts.grants(conf)
        if bindings is None:
            return self.fail("policy_data cannot be read; declare bindings as google_iam_policy")
        bucket = self.facts.resolve_text(str(value(conf, "bucket", default="")))
        results = [self._binding(b, bucket) for b in bindings]
        if CheckResult.FAILED in results:
            return CheckResult.FAILED
        return CheckResult.PASSED if CheckResult.PASSED in results else CheckResult.UNKNOWN

    def _binding(self, binding: PolicyBinding, bucket: str) -> CheckResult:
        facts, role = self.facts, binding.role
        clients = [
            m
            for m in binding.members
            if (facts.service_account_id(m) or "").startswith(CLIENT_SA_PREFIX)
        ]
        on_data_bucket = role in OBJECT_ROLES and bucket.endswith(DATA_BUCKET_SUFFIX)
        if not clients and not on_data_bucket:
            return CheckResult.UNKNOWN  # not client-bound: the rule does not apply
        who = ", ".join(clients) if clients else f"{role} on the data bucket"
        expression = binding.condition or ""
        if not expression:
            return self.fail(f"{who}: no IAM condition; scope it to the member's prefixes")
        prefixes = PREFIX_TERM_RE.findall(expression)
        list_prefixes = LIST_TERM_RE.findall(expression)
        # Tenancy v2: a client may list (names only) its own bucket; a condition true only
        # for the bucket resource grants no object read (those are checked on objects).
        if BUCKET_ONLY_RE.fullmatch(expression.strip()) and "||" not in expression:
            return CheckResult.PASSED
        if not prefixes and not list_prefixes:
            return self.fail(
                f"{who}: condition has no resource.name.startsWith(...) or objectListPrefix term"
            )
        for p in prefixes:
            if "/objects/" not in p or not p.split("/objects/", 1)[1]:
                return self.fail(f"{who}: startsWith({p!r}) covers the whole bucket")
        if any(not p for p in list_prefixes):
            return self.fail(f"{who}: objectListPrefix startsWith('') lists the whole bucket")
        return CheckResult.PASSED


class NoPublicPrincipals(GpubCheck):
    def __init__(self) -> None:
        super().__init__(
            id="CKV_GPUB_4",
            categories=[CheckCategories.IAM, CheckCategories.GENERAL_SECURITY],
            supported_resources=[
                *IAM_GRANTS,
                "google_storage_bucket_access_control",
                "google_storage_object_access_control",
                "google_storage_default_object_access_control",
                "google_storage_bucket_acl",
                "google_storage_default_object_acl",
                "google_storage_object_acl",
            ],
        )

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        self.evaluated_keys = ["member", "members", "policy_data", "entity", "role_entity"]
        principals = members(conf)
        principals += flat_strings(conf.get("entity")) + flat_strings(conf.get("role_entity"))
        pairs = grants(conf, self.facts) if "policy_data" in conf else []
        if pairs is None:
            return self.fail("policy_data cannot be read; declare bindings as google_iam_policy")
        principals += [m for _, ms in pairs for m in ms]
        for p in principals:
            # ACL entities read "READER:allUsers" or "allUsers".
            if p.rsplit(":", 1)[-1] in PUBLIC:
                return self.fail(f"public principal {p!r}")
        return CheckResult.PASSED


class NoServiceAccountKeys(GpubCheck):
    def __init__(self) -> None:
        super().__init__(
            id="CKV_GPUB_13",
            categories=[CheckCategories.IAM],
            supported_resources=["google_service_account_key"],
        )

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        self.evaluated_keys = []
        # Terraform state would hold the private key in clear text.
        return self.fail("google_service_account_key puts a long-lived private key in state")


check_1 = NoBasicRoles()
check_2 = NoProjectWideActAs()
check_3 = ClientGrantsArePrefixScoped()
check_4 = NoPublicPrincipals()
check_13 = NoServiceAccountKeys()
