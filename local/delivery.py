"""One subscription's backlog, delivered the way Pub/Sub delivers
(https://cloud.google.com/pubsub/docs/subscription-overview, .../lease-management,
.../handling-failures, google.pubsub.v1 `ReceivedMessage.delivery_attempt` and
`DeadLetterPolicy`):

- at least once: a message not acknowledged within its lease comes back; with
  `LOCAL_PUBSUB_DUPLICATE_RATE` a message is also delivered a second time even when acknowledged
  (a duplicate carries the same `message_id`, as Pub/Sub's duplicates do);
- no order without ordering keys: with `LOCAL_PUBSUB_REORDER` ready messages leave shuffled;
- retention: an unacknowledged message older than the subscription's
  `message_retention_duration` (default 7 days) is dropped;
- dead-lettering: with a dead-letter policy, a message whose delivery attempts (1 + nacks +
  expired leases) reached `max_delivery_attempts` is forwarded to the dead-letter topic instead
  of being delivered again, with Pub/Sub's `CloudPubSubDeadLetterSource*` attributes;
  `delivery_attempt` is reported only when such a policy is set (0 otherwise).

Pure bookkeeping: the caller holds the server's lock, supplies the clock and new ack ids, and
publishes what comes back as dead letters.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from google.pubsub_v1 import types as ps

from local.faults import FaultPlan
from local.pubsub_stack import SubscriptionConfig

DEAD_LETTER_ATTRS = ("CloudPubSubDeadLetterSourceDeliveryCount",
                     "CloudPubSubDeadLetterSourceSubscription",
                     "CloudPubSubDeadLetterSourceSubscriptionProject",
                     "CloudPubSubDeadLetterSourceTopicPublishTime")


def refusal(config: SubscriptionConfig) -> str | None:
    """Why Pub/Sub would refuse this subscription's settings (INVALID_ARGUMENT), else None:
    `max_delivery_attempts` 5-100, retention 10 minutes to 31 days, ack deadline 10-600 s
    (google.pubsub.v1 DeadLetterPolicy, Subscription)."""
    if config.dead_letter_topic and not 5 <= config.max_delivery_attempts <= 100:
        return (f"dead_letter_policy.max_delivery_attempts: got {config.max_delivery_attempts}; "
                "allowed: 5 to 100")
    if not 600 <= config.retention_s <= 31 * 24 * 3600:
        return (f"message_retention_duration: got {config.retention_s:g}s; allowed: 600s to "
                f"{31 * 24 * 3600}s")
    if not 10 <= config.ack_deadline_s <= 600:
        return f"ack_deadline_seconds: got {config.ack_deadline_s}; allowed: 10 to 600"
    return None


@dataclass
class Pending:
    msg: ps.PubsubMessage
    published: float  # the caller's clock at publish time
    attempts: int = 0  # deliveries so far (1 + nacks + expired leases once delivered)
    duplicated: bool = False  # this copy already drew its duplicate


@dataclass
class DeadLetter:
    topic: str
    msg: ps.PubsubMessage  # with the CloudPubSubDeadLetterSource* attributes added


@dataclass
class SubscriptionQueue:
    name: str
    config: SubscriptionConfig
    plan: FaultPlan = field(default_factory=FaultPlan)
    ready: deque[Pending] = field(default_factory=deque)
    leased: dict[str, tuple[Pending, float]] = field(default_factory=dict)  # ack id -> until
    dropped: int = 0  # messages that outlived the retention
    dead_lettered: int = 0

    def __post_init__(self) -> None:
        self.rng: random.Random = self.plan.stream(self.name)

    def push(self, msg: ps.PubsubMessage, now: float) -> None:
        self.ready.append(Pending(msg, now))

    def backlog(self) -> int:
        return len(self.ready) + len(self.leased)

    # ---- delivery -----------------------------------------------------------------------
    def take(self, now: float, max_messages: int, lease_s: float,
             new_ack_id: Callable[[], str]) -> tuple[list[ps.ReceivedMessage], list[DeadLetter]]:
        """Lease up to `max_messages`; also the messages to forward to the dead-letter topic."""
        self._expire_leases(now)
        out: list[ps.ReceivedMessage] = []
        dead: list[DeadLetter] = []
        while self.ready and len(out) < max_messages:
            p = self._next()
            if now - p.published >= self.config.retention_s:
                self.dropped += 1
                continue
            if self._dead_lettering() and p.attempts >= self.config.max_delivery_attempts:
                dead.append(self._dead_letter(p))
                continue
            p.attempts += 1
            if not p.duplicated and self.plan.duplicate_rate and (
                    self.rng.random() < self.plan.duplicate_rate):
                p.duplicated = True  # one extra delivery per message at most
                self.ready.append(Pending(p.msg, p.published, p.attempts - 1, duplicated=True))
            ack_id = new_ack_id()
            self.leased[ack_id] = (p, now + lease_s)
            out.append(ps.ReceivedMessage(
                ack_id=ack_id, message=p.msg,
                delivery_attempt=p.attempts if self._dead_lettering() else 0))
        return out, dead

    def ack(self, ack_ids: Iterable[str]) -> None:
        for ack_id in ack_ids:
            self.leased.pop(ack_id, None)

    def modify(self, ack_ids: Iterable[str], seconds: float, now: float) -> None:
        """Extend leases; 0 s is a nack (the message is ready again at once)."""
        for ack_id in ack_ids:
            if ack_id in self.leased:
                p, _ = self.leased[ack_id]
                self.leased[ack_id] = (p, now + seconds)
        if seconds == 0:
            self._expire_leases(now)

    # ---- internals ----------------------------------------------------------------------
    def _dead_lettering(self) -> bool:
        return bool(self.config.dead_letter_topic)

    def _next(self) -> Pending:
        if self.plan.reorder and len(self.ready) > 1:
            i = self.rng.randrange(len(self.ready))
            self.ready[0], self.ready[i] = self.ready[i], self.ready[0]
        return self.ready.popleft()

    def _expire_leases(self, now: float) -> None:
        for ack_id, (p, until) in list(self.leased.items()):
            if until <= now:
                del self.leased[ack_id]
                self.ready.appendleft(p)

    def _dead_letter(self, p: Pending) -> DeadLetter:
        self.dead_lettered += 1
        project = self.name.split("/")[1] if self.name.startswith("projects/") else ""
        attrs = dict(p.msg.attributes)
        attrs.update(zip(DEAD_LETTER_ATTRS, (
            str(p.attempts), self.name, project,
            p.msg.publish_time.isoformat() if hasattr(p.msg.publish_time, "isoformat") else ""),
            strict=True))
        msg = ps.PubsubMessage(data=p.msg.data, attributes=attrs, ordering_key=p.msg.ordering_key)
        return DeadLetter(self.config.dead_letter_topic, msg)
