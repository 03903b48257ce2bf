"""Pub/Sub and service-account IAM from the synthesized stacks, enforced by the local servers.

Read from every `cdk.tf.json`: `google_pubsub_topic_iam_member`/`_binding`/`_policy`,
`google_pubsub_subscription_iam_member`/`_binding`/`_policy`, `google_service_account_iam_
member`/`_binding`/`_policy` (a policy's `policy_data` read by `tfjson.iam`) and
`google_project_iam_member`/`_binding` (inherited by every topic, subscription and service
account of the project). Roles -> permissions: `data/pubsub_roles.json` (source
cited there). Which permission each RPC needs, on which resource
(https://cloud.google.com/pubsub/docs/access-control, "Required permissions"):

- Publish: `pubsub.topics.publish` on the topic; GetTopic, ListTopicSubscriptions:
  `pubsub.topics.get`; DeleteTopic: `pubsub.topics.delete`; CreateTopic, ListTopics:
  `pubsub.topics.create` / `.list` on the project;
- Pull, StreamingPull, Acknowledge, ModifyAckDeadline: `pubsub.subscriptions.consume` on the
  subscription; Get/Delete: `pubsub.subscriptions.get` / `.delete`; CreateSubscription:
  `pubsub.subscriptions.create` on the project and `pubsub.topics.attachSubscription` on the
  topic; ListSubscriptions: `pubsub.subscriptions.list` on the project.

A denial is PERMISSION_DENIED "User not authorized to perform this action." as Pub/Sub
answers; a call without an identity is UNAUTHENTICATED. Members Google manages: the Cloud
Storage service agent (`data.google_storage_project_service_account.*.member`) is
`local.identity.GCS_AGENT_EMAIL`; the Eventarc agent may create and consume the subscription of
each trigger the stacks declare (`local.pubsub_stack.eventarc_subscription`). `group:` members
cannot be resolved offline and grant nothing here.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local import iam_policy
from local.identity import ADMIN_EMAIL, EVENTARC_AGENT_EMAIL, GCS_AGENT_EMAIL
from local.pubsub_stack import deployed_triggers, eventarc_subscription
from tfjson import StackFacts, expand_groups, facts_from_document, flat_strings, instances

ROLES_FILE = Path(__file__).with_name("data") / "pubsub_roles.json"
ACT_AS = "iam.serviceAccounts.actAs"
IAM_FORMS = ("member", "binding", "policy")
DENIED = "User not authorized to perform this action."
UNAUTHENTICATED = ("Request is missing required authentication credential. Expected OAuth 2 "
                   "access token, login cookie or other valid authentication credential.")
_RESOURCE_REF = re.compile(
    r"\$\{google_pubsub_(topic|subscription)\.([A-Za-z0-9_-]+(?:\[\"[^\"\]]*\"\])?)\.(id|name)\}")
_GCS_AGENT_REF = re.compile(r"\$\{data\.google_storage_project_service_account\.[^}]+\.member\}")
_SA_REF = re.compile(r"\$\{(google_service_account\.[^}]+)\.(name|id|email|unique_id)\}")


def role_grants(role: str, permission: str) -> bool:
    return iam_policy.role_grants(role, permission, ROLES_FILE)  # one role-table reader


@dataclass(frozen=True)
class Grant:
    role: str
    members: frozenset[str]
    source: str = ""

    def names(self, email: str) -> bool:
        return bool({f"serviceAccount:{email}", f"user:{email}", "allUsers",
                     "allAuthenticatedUsers"} & self.members)


@dataclass
class IamPolicy:
    """Grants per resource name: `projects/P/topics/T`, `projects/P/subscriptions/S`,
    `projects/P` and service-account emails."""

    grants: dict[str, list[Grant]] = field(default_factory=dict)
    unresolved: list[str] = field(default_factory=list)

    def add(self, resource: str, grant: Grant) -> None:
        self.grants.setdefault(resource, []).append(grant)

    def allows(self, email: str, permission: str, resource: str) -> bool:
        if email == ADMIN_EMAIL:  # the local deployer: a project owner running terraform
            return True
        project = _project_of(resource)
        for name in (resource, f"projects/{project}" if project else ""):
            if any(g.names(email) and role_grants(g.role, permission)
                   for g in self.grants.get(name, ())):
                return True
        return False


def _project_of(resource: str) -> str:
    if resource.startswith("projects/"):
        return resource.split("/")[1]
    m = re.fullmatch(r"[^@]+@([a-z][a-z0-9-]+)\.iam\.gserviceaccount\.com", resource)
    return m.group(1) if m else ""


def _str(raw: Any) -> str:
    while isinstance(raw, list) and len(raw) == 1:
        raw = raw[0]
    return raw if isinstance(raw, str) else ""


def _section(doc: Mapping[str, Any], rtype: str) -> Iterable[tuple[str, dict[str, Any]]]:
    section = doc.get("resource", {}).get(rtype, {})
    for name, conf in (section.items() if isinstance(section, dict) else ()):
        if isinstance(conf, dict):
            yield from instances(name, conf)


def _provider_project(doc: Mapping[str, Any]) -> str:
    providers = doc.get("provider", {}).get("google", [])
    for p in providers if isinstance(providers, list) else [providers]:
        if isinstance(p, dict) and isinstance(p.get("project"), str):
            return str(p["project"])
    return ""


class _Names:
    """Full resource names of the stack's topics and subscriptions, by instance name."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.default_project = _provider_project(doc)
        self.ids: dict[tuple[str, str], str] = {}
        for kind, plural in (("topic", "topics"), ("subscription", "subscriptions")):
            for name, conf in _section(doc, f"google_pubsub_{kind}"):
                project = _str(conf.get("project")) or self.default_project
                self.ids[(kind, name)] = f"projects/{project}/{plural}/{_str(conf.get('name'))}"

    def resolve(self, kind: str, raw: str, project: str) -> str | None:
        m = _RESOURCE_REF.fullmatch(raw.strip())
        if m:
            return self.ids.get((m.group(1), m.group(2)))
        if "${" in raw or not raw:
            return None
        if raw.startswith("projects/"):
            return raw
        plural = "topics" if kind == "topic" else "subscriptions"
        return f"projects/{project or self.default_project}/{plural}/{raw}"


def _members(doc_facts: StackFacts, conf: Mapping[str, Any]) -> frozenset[str]:
    raw = flat_strings(conf.get("member")) + flat_strings(conf.get("members"))
    out = set()
    for m in raw:
        m = _GCS_AGENT_REF.sub(f"serviceAccount:{GCS_AGENT_EMAIL}", m)
        out.add(doc_facts.resolve_text(m))
    return frozenset(out)


def _service_account(doc_facts: Any, raw: str) -> str | None:
    """The email behind `service_account_id` (a reference, `projects/P/serviceAccounts/E`)."""
    text = _SA_REF.sub(lambda m: "${" + m.group(1) + ".email}", raw)
    text = doc_facts.resolve_text(text)
    if text.startswith("projects/") and "/serviceAccounts/" in text:
        text = text.rsplit("/", 1)[1]
    return text if "@" in text and "${" not in text else None


def _grants(facts: StackFacts, conf: Mapping[str, Any], source: str) -> list[Grant]:
    """The unconditional grants of a member, binding or (authoritative) policy resource; a
    conditional binding is not evaluated here (it never widens)."""
    return [Grant(b.role, _members(facts, {"members": b.members}), source)
            for b in facts.grants(conf) or [] if b.condition is None]


def add_document(policy: IamPolicy, doc: Mapping[str, Any]) -> None:
    facts, names = facts_from_document(doc), _Names(doc)
    for kind in ("topic", "subscription"):
        for rtype in (f"google_pubsub_{kind}_iam_{form}" for form in IAM_FORMS):
            for name, conf in _section(doc, rtype):
                project = _str(conf.get("project")) or names.default_project
                resource = names.resolve(kind, _str(conf.get(kind)), project)
                if resource is None:
                    policy.unresolved.append(f"{rtype}.{name}")
                    continue
                for grant in _grants(facts, conf, f"{rtype}.{name}"):
                    policy.add(resource, grant)
    for rtype in (f"google_service_account_iam_{form}" for form in IAM_FORMS):
        for name, conf in _section(doc, rtype):
            email = _service_account(facts, _str(conf.get("service_account_id")))
            if email is None:
                policy.unresolved.append(f"{rtype}.{name}")
                continue
            for grant in _grants(facts, conf, f"{rtype}.{name}"):
                policy.add(email, grant)
    for rtype in ("google_project_iam_member", "google_project_iam_binding"):
        for name, conf in _section(doc, rtype):
            if conf.get("condition"):
                continue  # a conditional project grant: not evaluated here (never widens)
            project = _str(conf.get("project")) or names.default_project
            policy.add(f"projects/{project}", Grant(_str(conf.get("role")),
                                                    _members(facts, conf), f"{rtype}.{name}"))
    agent = frozenset({f"serviceAccount:{EVENTARC_AGENT_EMAIL}"})
    for trigger in deployed_triggers(doc):
        sub = eventarc_subscription(trigger.topic, trigger.name)
        policy.add(sub, Grant("roles/pubsub.editor", agent, trigger.address))
        policy.add(trigger.topic, Grant("roles/pubsub.subscriber", agent, trigger.address))


def load_iam_policy(stack_files: Iterable[Path]) -> IamPolicy:
    """The grants of the given stacks' groups (a platform stack and its client shards)."""
    policy = IamPolicy()
    for path in expand_groups(stack_files):
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        if isinstance(doc, dict):
            add_document(policy, doc)
    return policy


class StackIam:
    """The stacks' IAM, re-read when a file's mtime changes, so a new synth is enforced without
    a restart. The files are stat'ed on every call by default (a few microseconds; Pub/Sub
    and Batch calls are far rarer than storage requests), so nothing waits for a poll."""

    def __init__(self, stack_files: Sequence[Path], check_every_s: float = 0.0) -> None:
        self.files = [Path(p) for p in stack_files]
        self.check_every_s = check_every_s
        self._stamp: tuple[float, ...] | None = None  # of every file of the groups
        self._checked = 0.0
        self._policy = IamPolicy()

    def current(self) -> IamPolicy:
        now = time.monotonic()
        if self._stamp is None or now - self._checked >= self.check_every_s:
            self._checked = now
            files = expand_groups(self.files)  # a shard added by a new synth counts
            stamp = tuple(p.stat().st_mtime if p.is_file() else -1.0 for p in files)
            if stamp != self._stamp:
                self._policy = load_iam_policy(p for p in files if p.is_file())
                self._stamp = stamp
        return self._policy
