"""Google Cloud limits: CKV_GPUB_LIM_1..5 and 10 (sources in docs/policies.md; the apply-order
rules LIM_6..9 are in gpub_apply.py).

A checkov check sees one resource; limits are about many. Each rule reads the whole file once
(`StackFacts.document`, every `for_each` expanded as Terraform would) and judges the resource
it is asked about against the count it belongs to.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult

from policies.checkbase import IAM_GRANTS, GpubCheck, by_type, condition_of, raw_instances
from tfjson import StackFacts, members, value

TRIGGERS_PER_LOCATION = 500  # cloud.google.com/eventarc/docs/quotas (hard limit)
CONDITIONAL_BINDINGS = 20  # same role and member, different conditions: iam/quotas
MEMBERS_PER_POLICY = 1500  # principals in all bindings of one allow policy: iam/quotas
LOGIC_OPERATORS = 12  # per condition expression: iam/quotas
WORKFLOW_SOURCE_BYTES = 128 * 1024  # cloud.google.com/workflows/quotas
# The attribute naming the resource whose allow policy an IAM member resource edits.
TARGETS = ("bucket", "topic", "subscription", "service_account_id", "secret_id",
           "repository", "crypto_key_id", "project")
LOGIC_RE = re.compile(r"&&|\|\||!(?!=)")


def _target(rtype: str, conf: dict[str, Any]) -> str:
    for attr in TARGETS:
        got = value(conf, attr)
        if got is not None:
            return f"{rtype.rsplit('_iam_', 1)[0]}:{got}"
    return rtype


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
    for _, _, body in raw_instances(facts, "google_eventarc_trigger"):
        triggers[str(body.get("location", ""))] += 1
    for rtype, _, body in raw_instances(facts, "*_iam_member"):
        target = _target(rtype, body)
        role, member, cond = str(body.get("role", "")), str(body.get("member", "")), condition_of(
            body)
        policy_members[target] += 1
        if cond:
            conditional[(target, role, member)] += 1
    return {"triggers": triggers, "conditional": conditional, "members": policy_members}


class EventarcTriggersPerLocation(GpubCheck):
    def __init__(self) -> None:
        super().__init__(id="CKV_GPUB_LIM_1", categories=[CheckCategories.GENERAL_SECURITY],
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
        super().__init__(id="CKV_GPUB_LIM_2", categories=[CheckCategories.IAM],
                         supported_resources=["google_*_iam_member"])

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        if not condition_of(conf):
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
        super().__init__(id="CKV_GPUB_LIM_3", categories=[CheckCategories.IAM],
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
        super().__init__(id="CKV_GPUB_LIM_4", categories=[CheckCategories.IAM],
                         supported_resources=list(IAM_GRANTS))

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        expression = condition_of(conf)
        if not expression:
            return CheckResult.UNKNOWN
        n = len(LOGIC_RE.findall(expression))
        if n > LOGIC_OPERATORS:
            return self.fail(f"condition has {n} logic operators; IAM allows {LOGIC_OPERATORS}")
        return CheckResult.PASSED


class WorkflowSourceSize(GpubCheck):
    def __init__(self) -> None:
        super().__init__(id="CKV_GPUB_LIM_5",
                         categories=[CheckCategories.GENERAL_SECURITY],
                         supported_resources=["google_workflows_workflow"])

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        source = str(value(conf, "source_contents", default=""))
        source = source.replace("$${", "${").replace("%%{", "%{")
        size = len(source.encode("utf-8"))
        if size > WORKFLOW_SOURCE_BYTES:
            return self.fail(f"source is {size} bytes; Workflows accepts {WORKFLOW_SOURCE_BYTES}")
        return CheckResult.PASSED


DEFAULT_SA_QUOTA = 100  # per project: cloud.google.com/iam/docs/service-accounts-create


class ServiceAccountQuota(GpubCheck):
    def __init__(self) -> None:
        super().__init__(id="CKV_GPUB_LIM_10", categories=[CheckCategories.IAM],
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
        n = len(by_type(facts).get("google_service_account", []))
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
check_lim_10 = ServiceAccountQuota()
