"""Google Cloud limits and apply-order rules: CKV_GPUB_LIM_1..9 (sources in docs/policies.md).

A checkov check sees one resource; limits are about many. Each rule reads the whole file once
(`StackFacts.document`, every `for_each` expanded as Terraform would) and judges the resource
it is asked about against the count it belongs to.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult

from policies.checkbase import IAM_GRANTS, GpubCheck, expanded
from tfjson import StackFacts, flat_strings, instances, members, value

TRIGGERS_PER_LOCATION = 500  # cloud.google.com/eventarc/docs/quotas (hard limit)
CONDITIONAL_BINDINGS = 20  # same role and member, different conditions: iam/quotas
MEMBERS_PER_POLICY = 1500  # principals in all bindings of one allow policy: iam/quotas
LOGIC_OPERATORS = 12  # per condition expression: iam/quotas
WORKFLOW_SOURCE_BYTES = 128 * 1024  # cloud.google.com/workflows/quotas
# The attribute naming the resource whose allow policy an IAM member resource edits.
TARGETS = ("bucket", "topic", "subscription", "service_account_id", "secret_id",
           "repository", "crypto_key_id", "project")
LOGIC_RE = re.compile(r"&&|\|\||!(?!=)")
KEY_REF_RE = re.compile(r"\$\{google_kms_crypto_key\.([A-Za-z0-9_-]+)\.id\}")
STORAGE_PERMISSIONS = {
    "roles/storage.objectViewer": {"get", "list"},
    "roles/storage.objectCreator": {"create"},
    "roles/storage.objectUser": {"get", "list", "create", "delete"},
    "roles/storage.objectAdmin": {"get", "list", "create", "delete"},
    "roles/storage.admin": {"get", "list", "create", "delete"},
}


_INDEX: dict[int, tuple[Any, dict[str, list[tuple[str, dict[str, Any]]]]]] = {}


def _by_type(facts: StackFacts) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """type -> [(address name, body)] of every instance in the file, expanded once per file."""
    doc = facts.document
    hit = _INDEX.get(id(doc))
    if hit is not None and hit[0] is doc:
        return hit[1]
    index: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for rtype, named in (doc.get("resource") or {}).items():
        if not isinstance(named, dict):
            continue
        items = index[rtype] = []
        for name, conf in named.items():
            if not isinstance(conf, dict):
                continue
            entries = expanded(facts, rtype, name)  # shared with GpubCheck: once per file
            if entries is None:
                items.extend(instances(name, conf))
            else:
                items.extend((f'{name}["{key}"]', body) for key, body in entries)
    _INDEX[id(doc)] = (doc, index)
    return index


def _raw_instances(facts: StackFacts, rtype_glob: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(type, address name, body) of every instance of matching types in the whole file."""
    suffix = rtype_glob.lstrip("*")
    for rtype, items in _by_type(facts).items():
        if rtype == rtype_glob or (rtype_glob.startswith("*") and rtype.endswith(suffix)):
            for address, body in items:
                yield rtype, address, body


def _target(rtype: str, conf: dict[str, Any]) -> str:
    for attr in TARGETS:
        got = value(conf, attr)
        if got is not None:
            return f"{rtype.rsplit('_iam_', 1)[0]}:{got}"
    return rtype


def _condition(conf: dict[str, Any]) -> str:
    return str(value(conf, "condition", "expression", default="") or "")


_COUNTS: dict[int, tuple[Any, dict[str, Counter[Any]]]] = {}


def _counts(facts: StackFacts) -> dict[str, Counter[Any]]:
    """Counts over the whole file, once per file (keyed by the parsed document)."""
    cached = _COUNTS.get(id(facts.document))
    if cached is not None and cached[0] is facts.document:
        return cached[1]
    counts = _count(facts)
    _COUNTS[id(facts.document)] = (facts.document, counts)
    return counts


def _count(facts: StackFacts) -> dict[str, Counter[Any]]:
    triggers: Counter[Any] = Counter()
    conditional: Counter[Any] = Counter()
    policy_members: Counter[Any] = Counter()
    for _, _, body in _raw_instances(facts, "google_eventarc_trigger"):
        triggers[str(body.get("location", ""))] += 1
    for rtype, _, body in _raw_instances(facts, "*_iam_member"):
        target = _target(rtype, body)
        role, member, cond = str(body.get("role", "")), str(body.get("member", "")), _condition(
            body)
        policy_members[target] += 1
        if cond:
            conditional[(target, role, member)] += 1
    return {"triggers": triggers, "conditional": conditional, "members": policy_members}


class EventarcTriggersPerLocation(GpubCheck):
    def __init__(self) -> None:
        super().__init__(name="At most 500 Eventarc triggers per project and location",
                         id="CKV_GPUB_LIM_1", categories=[CheckCategories.GENERAL_SECURITY],
                         supported_resources=["google_eventarc_trigger"])

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        location = str(value(conf, "location", default=""))
        n = _counts(self.facts)["triggers"][location]
        if n > TRIGGERS_PER_LOCATION:
            return self.fail(f"{n} triggers in {location}; Eventarc allows "
                             f"{TRIGGERS_PER_LOCATION} per project and location (not raisable)")
        return CheckResult.PASSED


class ConditionalBindingsPerMember(GpubCheck):
    def __init__(self) -> None:
        super().__init__(name="At most 20 conditional bindings per (resource, role, member)",
                         id="CKV_GPUB_LIM_2", categories=[CheckCategories.IAM],
                         supported_resources=["google_*_iam_member"])

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        if not _condition(conf):
            return CheckResult.UNKNOWN
        rtype = self.entity_type or ""
        key = (_target(rtype, conf), str(value(conf, "role", default="")),
               next(iter(members(conf)), ""))
        n = _counts(self.facts)["conditional"][key]
        if n > CONDITIONAL_BINDINGS:
            return self.fail(f"{n} conditional bindings of {key[1]} for {key[2]} on {key[0]}; "
                             f"IAM allows {CONDITIONAL_BINDINGS}")
        return CheckResult.PASSED


class MembersPerPolicy(GpubCheck):
    def __init__(self) -> None:
        super().__init__(name="At most 1,500 members in one IAM allow policy",
                         id="CKV_GPUB_LIM_3", categories=[CheckCategories.IAM],
                         supported_resources=["google_*_iam_member"])

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        target = _target(self.entity_type or "", conf)
        n = _counts(self.facts)["members"][target]
        if n > MEMBERS_PER_POLICY:
            return self.fail(f"{n} role-member pairs in the policy of {target}; IAM allows "
                             f"{MEMBERS_PER_POLICY}")
        return CheckResult.PASSED


class LogicOperatorsPerCondition(GpubCheck):
    def __init__(self) -> None:
        super().__init__(name="At most 12 logic operators in one IAM condition",
                         id="CKV_GPUB_LIM_4", categories=[CheckCategories.IAM],
                         supported_resources=list(IAM_GRANTS))

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        expression = _condition(conf)
        if not expression:
            return CheckResult.UNKNOWN
        n = len(LOGIC_RE.findall(expression))
        if n > LOGIC_OPERATORS:
            return self.fail(f"condition has {n} logic operators; IAM allows {LOGIC_OPERATORS}")
        return CheckResult.PASSED


class WorkflowSourceSize(GpubCheck):
    def __init__(self) -> None:
        super().__init__(name="Workflow source at most 128 KB", id="CKV_GPUB_LIM_5",
                         categories=[CheckCategories.GENERAL_SECURITY],
                         supported_resources=["google_workflows_workflow"])

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        source = str(value(conf, "source_contents", default=""))
        source = source.replace("$${", "${").replace("%%{", "%{")
        size = len(source.encode("utf-8"))
        if size > WORKFLOW_SOURCE_BYTES:
            return self.fail(f"source is {size} bytes; Workflows accepts {WORKFLOW_SOURCE_BYTES}")
        return CheckResult.PASSED


def _depends_on(conf: dict[str, Any]) -> set[str]:
    return set(flat_strings(conf.get("depends_on")))


class TriggerWaitsForItsGrants(GpubCheck):
    def __init__(self) -> None:
        super().__init__(name="An Eventarc trigger depends on its service account's project "
                         "grants", id="CKV_GPUB_LIM_6", categories=[CheckCategories.IAM],
                         supported_resources=["google_eventarc_trigger"])

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        sa = str(value(conf, "service_account", default=""))
        m = re.fullmatch(r"\$\{(google_service_account\.[^.]+)\.(email|id|name)\}", sa)
        if m is None:
            return self.fail(f"service_account {sa!r} is not a reference to a declared account")
        needed = set()
        for rtype, address, body in _raw_instances(self.facts, "google_project_iam_member"):
            if f"{m.group(1)}." in str(body.get("member", "")):
                needed.add(f"{rtype}.{address}")
        if not needed:
            return self.fail(f"{m.group(1)} holds no project role (eventarc.eventReceiver)")
        missing = needed - _depends_on(conf)
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
        super().__init__(name="A CMEK resource depends on a grant of its key",
                         id="CKV_GPUB_LIM_7", categories=[CheckCategories.ENCRYPTION],
                         supported_resources=list(CMEK_ATTRIBUTES))

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        key = str(value(conf, *CMEK_ATTRIBUTES[self.entity_type or ""], default="") or "")
        m = KEY_REF_RE.fullmatch(key)
        if m is None:
            return CheckResult.UNKNOWN  # no key, or a key of another project
        grants = set()
        for rtype, address, body in _raw_instances(
            self.facts, "google_kms_crypto_key_iam_member"
        ):
            granted = KEY_REF_RE.fullmatch(str(body.get("crypto_key_id", "")))
            if granted is not None and granted.group(1) == m.group(1):
                grants.add(f"{rtype}.{address}")
        if not grants & _depends_on(conf):
            return self.fail(f"encrypted with {m.group(1)} but depends on none of its grants: "
                             "the service agent may not hold the key yet")
        return CheckResult.PASSED


class AgentExistsBeforeGrant(GpubCheck):
    def __init__(self) -> None:
        super().__init__(name="Service agents are granted by reference to a resource that makes "
                         "them exist", id="CKV_GPUB_LIM_8", categories=[CheckCategories.IAM],
                         supported_resources=list(IAM_GRANTS))

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        for member in members(conf):
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
    ("get", "outputs/job/batch/x"), ("create", "outputs/job/batch/x"),
    ("delete", "outputs/job/batch/x"), ("list", "outputs/job/batch/"),
    ("get", "inputs/job/batch/x"), ("list", "inputs/job/batch/"),
]


_GRANTS: dict[int, tuple[Any, dict[tuple[str, str], list[dict[str, Any]]]]] = {}


def _bucket_grants(facts: StackFacts) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(bucket name, service account id) -> its bucket grants, once per file."""
    hit = _GRANTS.get(id(facts.document))
    if hit is not None and hit[0] is facts.document:
        return hit[1]
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for _, _, body in _raw_instances(facts, "google_storage_bucket_iam_member"):
        sa = facts.service_account_id(str(body.get("member", "")))
        if sa is not None:
            bucket = facts.resolve_text(str(body.get("bucket", "")))
            out.setdefault((bucket, sa), []).append(body)
    _GRANTS[id(facts.document)] = (facts.document, out)
    return out


class RunIdentityIsSufficient(GpubCheck):
    def __init__(self) -> None:
        super().__init__(name="Each client's run identity can get/list/create/delete its outputs "
                         "and get/list its inputs (CEL)", id="CKV_GPUB_LIM_9",
                         categories=[CheckCategories.IAM],
                         supported_resources=["google_service_account"])

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        account_id = str(value(conf, "account_id", default=""))
        if not account_id.startswith("run-"):
            return CheckResult.UNKNOWN
        facts = self.facts
        providers = facts.document.get("provider", {}).get("google", [{}])
        project = str((providers[0] if isinstance(providers, list) else providers).get(
            "project", ""))
        bucket = f"{project}-{account_id.removeprefix('run-')}"
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
                permission in STORAGE_PERMISSIONS.get(str(g.get("role", "")), set())
                and (not _condition(g) or _allows(bucket, _condition(g), rtype, name, attrs))
                for g in grants
            )
            if not ok:
                missing.append(f"{permission} {probe}")
        if missing:
            return self.fail(f"{account_id} on {bucket} cannot: {'; '.join(missing)}")
        return CheckResult.PASSED


DEFAULT_SA_QUOTA = 100  # per project: cloud.google.com/iam/docs/service-accounts-create


class ServiceAccountQuota(GpubCheck):
    def __init__(self) -> None:
        super().__init__(name="Service accounts within the project's declared quota",
                         id="CKV_GPUB_LIM_10", categories=[CheckCategories.IAM],
                         supported_resources=["google_service_account"])

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        # A count over the file: judged once, on the file's first service account resource.
        _, _, name = self.entity_path.rsplit(":", 2)
        accounts = (self.facts.document.get("resource") or {}).get("google_service_account", {})
        if accounts and name != next(iter(accounts)):
            return CheckResult.UNKNOWN
        return self.scan_entry({})

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        facts = self.facts
        declared = facts.locals.get("gpub_declared_quotas") or {}
        quota = int(declared.get("service_accounts", DEFAULT_SA_QUOTA)) if isinstance(
            declared, dict) else DEFAULT_SA_QUOTA
        n = len(_by_type(facts).get("google_service_account", []))
        if n > quota:
            return self.fail(
                f"{n} service accounts; the project's quota is {quota} (default "
                f"{DEFAULT_SA_QUOTA}): ask Google for at least {n} (console or support, Cloud "
                "Quotas cannot) and set settings.service_account_quota")
        return CheckResult.PASSED


check_lim_1 = EventarcTriggersPerLocation()
check_lim_2 = ConditionalBindingsPerMember()
check_lim_3 = MembersPerPolicy()
check_lim_4 = LogicOperatorsPerCondition()
check_lim_5 = WorkflowSourceSize()
check_lim_6 = TriggerWaitsForItsGrants()
check_lim_7 = CmekWaitsForKeyGrant()
check_lim_8 = AgentExistsBeforeGrant()
check_lim_9 = RunIdentityIsSufficient()
check_lim_10 = ServiceAccountQuota()
