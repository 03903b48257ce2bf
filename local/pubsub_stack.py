"""What a synthesized stack declares for Pub/Sub: topics, subscriptions, and the GCS
notifications that publish into them. `for_each` expanded by `tfjson.instances`,
references resolved the way Terraform would:

- `google_pubsub_topic`: id `projects/{project}/topics/{name}`;
- `google_pubsub_subscription.topic`: that id, or a bare name in the subscription's project
  (https://registry.terraform.io/providers/hashicorp/google/latest/docs/resources/pubsub_subscription);
- `google_storage_notification.topic`: `projects/P/topics/T` or a bare name in the provider's
  project (https://registry.terraform.io/providers/hashicorp/google/latest/docs/resources/storage_notification).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tfjson import facts_from_document, instances

_TOPIC_REF = re.compile(
    r"\$\{google_pubsub_topic\.([A-Za-z0-9_-]+(?:\[\"[^\"\]]*\"\])?)\.(id|name)\}"
)


@dataclass(frozen=True)
class Notification:
    bucket: str
    topic: str  # projects/P/topics/T
    payload_format: str = "JSON_API_V1"
    event_types: tuple[str, ...] = ()  # empty: every event type
    object_name_prefix: str = ""
    custom_attributes: tuple[tuple[str, str], ...] = ()
    address: str = ""

    def wants(self, event_type: str, name: str) -> bool:
        return (not self.event_types or event_type in self.event_types) and name.startswith(
            self.object_name_prefix)


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


class _Resolver:
    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.default_project = _provider_project(doc)
        self.topics: dict[str, str] = {}  # resource instance name -> id
        for name, conf in _section(doc, "google_pubsub_topic"):
            project = _str(conf.get("project")) or self.default_project
            self.topics[name] = f"projects/{project}/topics/{_str(conf.get('name'))}"

    def topic(self, raw: str, project: str) -> str:
        m = _TOPIC_REF.fullmatch(raw.strip())
        if m and m.group(1) in self.topics:
            return self.topics[m.group(1)]
        if raw.startswith("projects/"):
            return raw
        return f"projects/{project or self.default_project}/topics/{raw}"


# Subscription defaults (google.pubsub.v1.Subscription, https://cloud.google.com/pubsub/docs/
# reference/rpc/google.pubsub.v1#subscription): ack deadline 10 s, unacknowledged messages kept
# 7 days; a dead-letter policy's max_delivery_attempts is 5 when 0 or unset (5-100 allowed).
DEFAULT_ACK_DEADLINE_S = 10
DEFAULT_RETENTION_S = 7 * 24 * 3600
DEFAULT_MAX_DELIVERY_ATTEMPTS = 5
# Eventarc's own subscription keeps messages 24 h and has no dead-letter topic unless one is set
# (https://cloud.google.com/eventarc/docs/retry-events).
EVENTARC_RETENTION_S = 24 * 3600
_DURATION = re.compile(r"(\d+(?:\.\d+)?)s")


@dataclass(frozen=True)
class SubscriptionConfig:
    """What the stack configures for one subscription's delivery."""

    topic: str
    ack_deadline_s: int = DEFAULT_ACK_DEADLINE_S
    retention_s: float = DEFAULT_RETENTION_S
    dead_letter_topic: str = ""  # "": dead-lettering off
    max_delivery_attempts: int = DEFAULT_MAX_DELIVERY_ATTEMPTS


def _block(raw: Any) -> dict[str, Any]:
    """A nested block as CDKTF writes it: an object, or a list of one object."""
    while isinstance(raw, list) and len(raw) == 1:
        raw = raw[0]
    return raw if isinstance(raw, dict) else {}


def _int(raw: Any, default: int) -> int:
    return int(raw) if isinstance(raw, int | str) and str(raw).isdigit() and int(raw) else default


def _seconds(raw: Any, default: float) -> float:
    m = _DURATION.fullmatch(_str(raw).strip())
    return float(m.group(1)) if m else default


def _subscription(conf: Mapping[str, Any], r: _Resolver, project: str) -> SubscriptionConfig:
    dead = _block(conf.get("dead_letter_policy"))
    dead_topic = _str(dead.get("dead_letter_topic"))
    return SubscriptionConfig(
        topic=r.topic(_str(conf.get("topic")), project),
        ack_deadline_s=_int(conf.get("ack_deadline_seconds"), DEFAULT_ACK_DEADLINE_S),
        retention_s=_seconds(conf.get("message_retention_duration"), DEFAULT_RETENTION_S),
        dead_letter_topic=r.topic(dead_topic, project) if dead_topic else "",
        max_delivery_attempts=_int(dead.get("max_delivery_attempts"),
                                   DEFAULT_MAX_DELIVERY_ATTEMPTS),
    )


def declared_subscriptions(docs: Iterable[Mapping[str, Any]]) -> dict[str, SubscriptionConfig]:
    """Subscription id -> its delivery configuration, Eventarc's own subscriptions included."""
    subs: dict[str, SubscriptionConfig] = {}
    for doc in docs:
        r = _Resolver(doc)
        for _, conf in _section(doc, "google_pubsub_subscription"):
            project = _str(conf.get("project")) or r.default_project
            subs[f"projects/{project}/subscriptions/{_str(conf.get('name'))}"] = _subscription(
                conf, r, project)
        # Eventarc makes its own subscription on a trigger's topic when the trigger is
        # created (https://cloud.google.com/eventarc/docs/workflows/quickstart-pubsub): events
        # published after the deploy wait for delivery even before anything pulls them.
        for trigger in deployed_triggers(doc):
            subs.setdefault(eventarc_subscription(trigger.topic, trigger.name),
                            SubscriptionConfig(trigger.topic, retention_s=EVENTARC_RETENTION_S))
    return subs


def declared_topics(docs: Iterable[Mapping[str, Any]]) -> list[str]:
    topics: list[str] = []
    for doc in docs:
        topics += [t for t in _Resolver(doc).topics.values() if t not in topics]
    return topics


def declared_topics_and_subscriptions(
    docs: Iterable[Mapping[str, Any]],
) -> tuple[list[str], dict[str, tuple[str, int]]]:
    """Topic ids, and subscription id -> (topic id, ack deadline seconds)."""
    docs = list(docs)
    return declared_topics(docs), {name: (c.topic, c.ack_deadline_s)
                                   for name, c in declared_subscriptions(docs).items()}


@dataclass(frozen=True)
class Trigger:
    """An Eventarc trigger on a Pub/Sub topic whose destination is a workflow."""

    address: str
    name: str
    topic: str
    workflow: str  # the workflow's resource name or id, as written in the stack


def deployed_triggers(doc: Mapping[str, Any]) -> list[Trigger]:
    topics = _Resolver(doc)
    out = []
    for name, conf in _section(doc, "google_eventarc_trigger"):
        address = f"google_eventarc_trigger.{name}"
        transport = conf.get("transport") or {}
        transport = transport[0] if isinstance(transport, list) and transport else transport
        pubsub = transport.get("pubsub") if isinstance(transport, dict) else None
        pubsub = pubsub[0] if isinstance(pubsub, list) and pubsub else pubsub
        dest = conf.get("destination") or {}
        dest = dest[0] if isinstance(dest, list) and dest else dest
        topic = _str(pubsub.get("topic")) if isinstance(pubsub, dict) else ""
        workflow = _str(dest.get("workflow")) if isinstance(dest, dict) else ""
        if topic and workflow:
            out.append(Trigger(address, _str(conf.get("name")),
                               topics.topic(topic, _str(conf.get("project"))), workflow))
    return out


def eventarc_subscription(topic: str, trigger: str) -> str:
    """The subscription the local Eventarc pulls a trigger's events from."""
    return f"projects/{topic.split('/')[1]}/subscriptions/eventarc-{trigger}"


def declared_notifications(docs: Iterable[Mapping[str, Any]]) -> list[Notification]:
    out: list[Notification] = []
    for doc in docs:
        r = _Resolver(doc)
        facts = facts_from_document(doc)
        for name, conf in _section(doc, "google_storage_notification"):
            attrs = conf.get("custom_attributes")
            out.append(Notification(
                bucket=facts.resolve_text(_str(conf.get("bucket"))),
                topic=r.topic(_str(conf.get("topic")), ""),
                payload_format=_str(conf.get("payload_format")) or "JSON_API_V1",
                event_types=tuple(str(e) for e in conf.get("event_types") or ()),
                object_name_prefix=_str(conf.get("object_name_prefix")),
                custom_attributes=tuple(sorted((str(k), str(v)) for k, v in
                                               (attrs.items() if isinstance(attrs, dict) else ()))),
                address=f"google_storage_notification.{name}",
            ))
    return out
