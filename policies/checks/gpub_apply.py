"""Apply-order and run-time sufficiency rules: CKV_GPUB_LIM_6 a trigger waits for its grants,
7 a CMEK resource for its key grant, 8 service agents exist before they are granted, 9 each
client's run identity can do its job (CEL evaluated). Sources in docs/policies.md.

Like the limits (gpub_limits.py), each rule reads the whole stack file (`by_type`), once.
"""

from __future__ import annotations

import re
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult

from policies.checkbase import IAM_GRANTS, GpubCheck, depends_on, raw_instances
from stacks.layout import INPUTS, OUTPUTS, RUN_SA_PREFIX
from tfjson import PolicyBinding, StackFacts, value

KEY_REF_RE = re.compile(r"\$\{google_kms_crypto_key\.([A-Za-z0-9_-]+)\.id\}")
STORAGE_PERMISSIONS = {
    "roles/storage.objectViewer": {"get", "list"},
    "roles/storage.objectCreator": {"create"},
    "roles/storage.objectUser": {"get", "list", "create", "delete"},
    "roles/storage.objectAdmin": {"get", "list", "create", "delete"},
    "roles/storage.admin": {"get", "list", "create", "delete"},
}


class TriggerWaitsForItsGrants(GpubCheck):
    def __init__(self) -> None:
        super().__init__(id="CKV_GPUB_LIM_6", categories=[CheckCategories.IAM],
                         supported_resources=["google_eventarc_trigger"])

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        sa = str(value(conf, "service_account", default=""))
        m = re.fullmatch(r"\$\{(google_service_account\.[^.]+)\.(email|id|name)\}", sa)
        if m is None:
            return self.fail(f"service_account {sa!r} is not a reference to a declared account")
        needed = set()
        for rtype, address, body in raw_instances(self.facts, "google_project_iam_member"):
            if f"{m.group(1)}." in str(body.get("member", "")):
                needed.add(f"{rtype}.{address}")
        if not needed:
            return self.fail(f"{m.group(1)} holds no project role (eventarc.eventReceiver)")
        missing = needed - depends_on(conf)
        if missing:
            return self.fail(f"depends_on lacks {', '.join(sorted(missing))}: on a fresh project "
                             "the trigger is refused (PERMISSION_DENIED)")
        return CheckResult.PASSED


CMEK_ATTRIBUTES = {
    "google_storage_bucket": ("encryption", "default_kms_key_name"),
    "google_pubsub_topic": ("kms_key_name",),
    "google_workflows_workflow": ("crypto_key_name",),
    "google_artifact_registry_repository": ("kms_key_name",),
}


class CmekWaitsForKeyGrant(GpubCheck):
    def __init__(self) -> None:
        super().__init__(id="CKV_GPUB_LIM_7", categories=[CheckCategories.ENCRYPTION],
                         supported_resources=list(CMEK_ATTRIBUTES))

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        key = str(value(conf, *CMEK_ATTRIBUTES[self.entity_type or ""], default="") or "")
        m = KEY_REF_RE.fullmatch(key)
        if m is None:
            return CheckResult.UNKNOWN  # no key, or a key of another project
        grants = set()
        for rtype, address, body in raw_instances(
            self.facts, "google_kms_crypto_key_iam_member"
        ):
            granted = KEY_REF_RE.fullmatch(str(body.get("crypto_key_id", "")))
            if granted is not None and granted.group(1) == m.group(1):
                grants.add(f"{rtype}.{address}")
        if not grants & depends_on(conf):
            return self.fail(f"encrypted with {m.group(1)} but depends on none of its grants: "
                             "the service agent may not hold the key yet")
        return CheckResult.PASSED


class AgentExistsBeforeGrant(GpubCheck):
    def __init__(self) -> None:
        super().__init__(id="CKV_GPUB_LIM_8", categories=[CheckCategories.IAM],
                         supported_resources=list(IAM_GRANTS))

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        for member in [m for b in self.facts.grants(conf) or [] for m in b.members]:
            email = member.split(":", 1)[-1]
            if "${" not in email and re.search(r"@gcp-sa-[a-z0-9-]+\.iam\.gserviceaccount\.com$",
                                               email):
                return self.fail(f"{member} is a hand-built service agent email; grant "
                                 "google_project_service_identity.<x>.email so it exists first")
        return CheckResult.PASSED


_PROGRAMS: dict[str, Any] = {}
_RESULTS: dict[tuple[str, str, str, tuple[tuple[str, str], ...]], bool] = {}
BUCKET_STAND_IN = "gpub-bucket-under-test"


def _allows(bucket: str, expression: str, rtype: str, name: str,
            attributes: dict[str, str]) -> bool:
    """`_cel_allows`, memoized over bucket names: every client's grants are the same text
    but for its bucket, so the bucket (a path segment, never containing `/` or `"`) is
    replaced by a stand-in in the expression and the request alike. A bucket name found in
    any other position keeps the literal evaluation."""
    def swap(text: str) -> str:
        return text.replace(f"buckets/{bucket}/", f"buckets/{BUCKET_STAND_IN}/").replace(
            f'buckets/{bucket}"', f'buckets/{BUCKET_STAND_IN}"')
    generic_expression = swap(expression)
    generic_name = swap(name + '"')[:-1]
    if bucket in generic_expression or bucket in generic_name:
        return _cel_allows(expression, rtype, name, attributes)
    key = (generic_expression, rtype, generic_name, tuple(sorted(attributes.items())))
    if key not in _RESULTS:
        _RESULTS[key] = _cel_allows(generic_expression, rtype, generic_name, attributes)
    return _RESULTS[key]


def _cel_allows(expression: str, rtype: str, name: str, attributes: dict[str, str]) -> bool:
    import celpy

    program = _PROGRAMS.get(expression)
    if program is None:
        env = celpy.Environment()
        program = _PROGRAMS[expression] = env.program(env.compile(expression), functions={
            "getAttribute": lambda api, key, default: api.get(key, default)})
    result = program.evaluate({
        "resource": celpy.json_to_cel({"type": rtype, "name": name,
                                       "service": "storage.googleapis.com"}),
        "api": celpy.json_to_cel(attributes),
    })
    return bool(result) if isinstance(result, celpy.celtypes.BoolType) else False


# (permission, probe object under the client's bucket, or a list prefix)
RUN_NEEDS = [
    ("get", f"{OUTPUTS}job/batch/x"), ("create", f"{OUTPUTS}job/batch/x"),
    ("delete", f"{OUTPUTS}job/batch/x"), ("list", f"{OUTPUTS}job/batch/"),
    ("get", f"{INPUTS}job/batch/x"), ("list", f"{INPUTS}job/batch/"),
]


_GRANTS: dict[int, tuple[Any, dict[tuple[str, str], list[PolicyBinding]]]] = {}


def _bucket_grants(facts: StackFacts) -> dict[tuple[str, str], list[PolicyBinding]]:
    """(bucket name, service account id) -> its bucket bindings (member grants and the
    bindings of bucket policies, conditions included), once per file."""
    hit = _GRANTS.get(id(facts.document))
    if hit is not None and hit[0] is facts.document:
        return hit[1]
    out: dict[tuple[str, str], list[PolicyBinding]] = {}
    for form in ("google_storage_bucket_iam_member", "google_storage_bucket_iam_policy"):
        for _, _, body in raw_instances(facts, form):
            bucket = facts.resolve_text(str(body.get("bucket", "")))
            for b in facts.grants(body) or []:
                for sa in filter(None, map(facts.service_account_id, b.members)):
                    out.setdefault((bucket, sa), []).append(b)
    _GRANTS[id(facts.document)] = (facts.document, out)
    return out


class RunIdentityIsSufficient(GpubCheck):
    def __init__(self) -> None:
        super().__init__(id="CKV_GPUB_LIM_9",
                         categories=[CheckCategories.IAM],
                         supported_resources=["google_service_account"])

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        account_id = str(value(conf, "account_id", default=""))
        if not account_id.startswith(RUN_SA_PREFIX):
            return CheckResult.UNKNOWN
        facts = self.facts
        providers = facts.document.get("provider", {}).get("google", [{}])
        project = str((providers[0] if isinstance(providers, list) else providers).get(
            "project", ""))
        bucket = f"{project}-{account_id.removeprefix(RUN_SA_PREFIX)}"
        grants = _bucket_grants(facts).get((bucket, account_id), [])
        missing = []
        for permission, probe in RUN_NEEDS:
            if permission == "list":
                rtype, name = "storage.googleapis.com/Bucket", f"projects/_/buckets/{bucket}"
                attrs = {"storage.googleapis.com/objectListPrefix": probe}
            else:
                rtype = "storage.googleapis.com/Object"
                name, attrs = f"projects/_/buckets/{bucket}/objects/{probe}", {}
            ok = any(
                permission in STORAGE_PERMISSIONS.get(g.role, set())
                and (not g.condition or _allows(bucket, g.condition, rtype, name, attrs))
                for g in grants
            )
            if not ok:
                missing.append(f"{permission} {probe}")
        if missing:
            return self.fail(f"{account_id} on {bucket} cannot: {'; '.join(missing)}")
        return CheckResult.PASSED


check_lim_6 = TriggerWaitsForItsGrants()
check_lim_7 = CmekWaitsForKeyGrant()
check_lim_8 = AgentExistsBeforeGrant()
check_lim_9 = RunIdentityIsSufficient()
