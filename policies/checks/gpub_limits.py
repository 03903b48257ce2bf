"""Google Cloud limits: CKV_GPUB_LIM_1..5, 10 and 11 (sources in docs/policies.md; the
apply-order rules LIM_6..9 are in gpub_apply.py).

A checkov check sees one resource; limits are about many. Each rule reads the whole
environment once (every file of the stack's group, `StackFacts.group_documents`: the platform
stack and its client shards, every `for_each` expanded as Terraform would) and judges the
resource it is asked about against the count it belongs to: a project's limits do not care
in which state a resource is. LIM_11 alone counts one state.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult

from policies.checkbase import (
    IAM_GRANTS,
    GpubCheck,
    by_type,
    declared_quotas,
    group_facts,
    group_instances,
    raw_instances,
)
from tfjson import StackFacts, shard_of_document, value

TRIGGERS_PER_LOCATION = 500  # cloud.google.com/eventarc/docs/quotas (hard limit)
CONDITIONAL_BINDINGS = 20  # same role and member, different conditions: iam/quotas
MEMBERS_PER_POLICY = 1500  # principals in all bindings of one allow policy: iam/quotas
LOGIC_OPERATORS = 12  # per condition expression: iam/quotas
WORKFLOW_SOURCE_BYTES = 128 * 1024  # cloud.google.com/workflows/quotas
# The attribute naming the resource whose allow policy an IAM member resource edits.
TARGETS = ("bucket", "topic", "subscription", "service_account_id", "secret_id",
           "repository", "crypto_key_id", "project")
LOGIC_RE = re.compile(r"&&|\|\||!(?!=)")
# The grants that edit one allow policy: a member each, or a whole policy (its bindings,
# conditions included: tfjson.iam).
GRANT_FORMS = ("google_*_iam_member", "google_*_iam_policy")  # checkov's resource globs


def _target(rtype: str, conf: dict[str, Any], facts: StackFacts) -> str:
    """The allow policy a grant edits, named alike whichever file holds it (a client shard
    names the platform's accounts and buckets literally, the platform by reference)."""
    for attr in TARGETS:
        got = value(conf, attr)
        if got is not None:
            return f"{rtype.rsplit('_iam_', 1)[0]}:{facts.resolve_text(str(got))}"
    return rtype


_COUNTS: dict[tuple[int, ...], tuple[Any, dict[str, Counter[Any]]]] = {}


def _counts(facts: StackFacts) -> dict[str, Counter[Any]]:
    """Counts over the whole group, once per group (keyed by its parsed documents)."""
    docs = facts.group_documents
    key = tuple(id(d) for d in docs)
    cached = _COUNTS.get(key)
    if cached is not None and all(a is b for a, b in zip(cached[0], docs, strict=True)):
        return cached[1]
    counts = _count(facts)
    _COUNTS[key] = (docs, counts)
    return counts


def _count(facts: StackFacts) -> dict[str, Counter[Any]]:
    triggers: Counter[Any] = Counter()
    conditional: Counter[Any] = Counter()
    policy_members: Counter[Any] = Counter()
    for _, _, body in group_instances(facts, "google_eventarc_trigger"):
        triggers[str(body.get("location", ""))] += 1
    for member_facts in group_facts(facts):
        for form in GRANT_FORMS:
            for rtype, _, body in raw_instances(member_facts, form.removeprefix("google_")):
                target = _target(rtype, body, member_facts)
                for b in member_facts.grants(body) or []:
                    policy_members[target] += len(b.members)
                    for member in b.members if b.condition else ():
                        conditional[(target, b.role, member_facts.resolve_text(member))] += 1
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
                         supported_resources=list(GRANT_FORMS))

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        rtype, facts = self.entity_type or "", self.facts
        target = _target(rtype, conf, facts)
        keys = [(target, b.role, facts.resolve_text(m))
                for b in facts.grants(conf) or [] if b.condition for m in b.members]
        if not keys:
            return CheckResult.UNKNOWN
        counted = _counts(self.facts)["conditional"]
        n, key = max((counted[k], k) for k in keys)
        if n > CONDITIONAL_BINDINGS:
            return self.fail(f"{n} conditional bindings of {key[1]} for {key[2]} on {key[0]}; "
                             f"IAM allows {CONDITIONAL_BINDINGS}")
        return CheckResult.PASSED


class MembersPerPolicy(GpubCheck):
    def __init__(self) -> None:
        super().__init__(id="CKV_GPUB_LIM_3", categories=[CheckCategories.IAM],
                         supported_resources=list(GRANT_FORMS))

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        target = _target(self.entity_type or "", conf, self.facts)
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
        expressions = [b.condition for b in self.facts.grants(conf) or [] if b.condition]
        if not expressions:
            return CheckResult.UNKNOWN
        n = max(len(LOGIC_RE.findall(e)) for e in expressions)
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
        # A count over the environment: judged once, on the first service account resource
        # of the group's first file that has one (the platform's, sharded or not).
        _, _, name = self.entity_path.rsplit(":", 2)
        facts = self.facts
        first = next((d for d in facts.group_documents
                      if (d.get("resource") or {}).get("google_service_account")), None)
        accounts = (first or {}).get("resource", {}).get("google_service_account", {})
        if first is not facts.document or name != next(iter(accounts)):
            return CheckResult.UNKNOWN
        return self.scan_entry({})

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        facts = self.facts
        quota = int(declared_quotas(facts).get("service_accounts", DEFAULT_SA_QUOTA))
        n = sum(len(by_type(f).get("google_service_account", [])) for f in group_facts(facts))
        if n > quota:
            return self.fail(
                f"{n} service accounts; the project's quota is {quota} (default "
                f"{DEFAULT_SA_QUOTA}): ask Google for at least {n} (console or support, Cloud "
                "Quotas cannot) and set settings.service_account_quota")
        return CheckResult.PASSED


# The target for one state (bench/RESULTS.md, "Client shards"): every plan and refresh reads
# each instance back from the API, and one state is one blast radius
# (developer.hashicorp.com/terraform/cloud-docs/workspaces/best-practices: keep a
# workspace's resources few and related).
INSTANCES_PER_STATE = 2500


class InstancesPerState(GpubCheck):
    def __init__(self) -> None:
        super().__init__(id="CKV_GPUB_LIM_11", categories=[CheckCategories.GENERAL_SECURITY],
                         supported_resources=["*"])

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        # A count over one file (one state): judged once, on the file's first resource.
        _, rtype, name = self.entity_path.rsplit(":", 2)
        resources = self.facts.document.get("resource") or {}
        first_type = next(iter(resources), None)
        if first_type is None or (rtype, name) != (first_type, next(iter(resources[first_type]),
                                                                     None)):
            return CheckResult.UNKNOWN
        return self.scan_entry({})

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        facts = self.facts
        n = sum(len(items) for items in by_type(facts).values())  # data sources not counted
        if n <= INSTANCES_PER_STATE:
            return CheckResult.PASSED
        shard = shard_of_document(facts.document)
        where = f"client shard {shard[1]} of {shard[0]}" if shard else "this stack"
        return self.fail(
            f"{n} resource instances in the state of {where}; at most {INSTANCES_PER_STATE} "
            "in one state (each plan refreshes every one): spread the clients over more "
            f"states, {_shard_advice(facts)} (environments.yaml, docs/clients.md \"Shards\")")


def _shard_advice(facts: StackFacts) -> str:
    """Which `client_shards.count` would keep every state under the limit (placement by the
    clients' names; pins are not in the stack and may need more)."""
    from stacks.shards import count_that_fits

    clients: list[str] = []
    client_instances = 0
    for member in group_facts(facts):
        for rtype, items in by_type(member).items():
            for address, _ in items:
                if address.startswith("clients-"):
                    client_instances += 1
                    if rtype == "google_storage_bucket" and address.startswith("clients-bucket["):
                        clients.append(address.split('"')[1])
    if not clients:
        return "raise client_shards.count"
    per_client = client_instances / len(clients)
    fits = count_that_fits([(c, None) for c in clients],
                           max(1, int(INSTANCES_PER_STATE // per_client)))
    return (f"set client_shards.count to {fits} or more" if fits
            else "raise client_shards.count")


check_lim_1 = EventarcTriggersPerLocation()
check_lim_2 = ConditionalBindingsPerMember()
check_lim_3 = MembersPerPolicy()
check_lim_4 = LogicOperatorsPerCondition()
check_lim_5 = WorkflowSourceSize()
check_lim_10 = ServiceAccountQuota()
check_lim_11 = InstancesPerState()
