"""The local Pub/Sub follows the stack: declared topics and subscriptions are created, updated
(ack deadline, retention, dead-letter policy) and deleted as `terraform apply` of the new synth
would, on the first RPC after the stack file changes (`local.topology.StackWatch`, checked by
a gRPC server interceptor). Topics and subscriptions made through the API, never declared,
are left alone.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import grpc
from google.pubsub_v1 import types as ps

from local.delivery import refusal
from local.pubsub_stack import SubscriptionConfig, declared_subscriptions, declared_topics
from local.topology import StackWatch


class PubSubState(Protocol):
    """What the topology needs of `local.pubsub_server.PubSub` (no import: no cycle)."""

    cond: threading.Condition
    topics: dict[str, ps.Topic]
    subs: dict[str, Any]

    def delete_topic(self, req: ps.DeleteTopicRequest) -> Any: ...

    def create_subscription(self, sub: ps.Subscription) -> ps.Subscription: ...

log = logging.getLogger("local.pubsub")


def subscription_proto(name: str, c: SubscriptionConfig) -> ps.Subscription:
    sub = ps.Subscription(name=name, topic=c.topic, ack_deadline_seconds=c.ack_deadline_s,
                          message_retention_duration=dt.timedelta(seconds=c.retention_s))
    if c.dead_letter_topic:
        sub.dead_letter_policy = ps.DeadLetterPolicy(
            dead_letter_topic=c.dead_letter_topic, max_delivery_attempts=c.max_delivery_attempts)
    return sub


class StackTopology:
    def __init__(self, state: PubSubState, files: Sequence[Path]) -> None:
        self.state = state
        self.watch = StackWatch(files)
        self.topics: set[str] = set()  # what the stack declared at the last reload
        self.subs: set[str] = set()
        self._lock = threading.Lock()  # a concurrent RPC waits until the new stack is applied

    def refresh(self) -> bool:
        """Apply the stack if it changed since the last call; whether it did."""
        with self._lock:
            docs = self.watch.changed()
            return docs is not None and self._apply_docs(docs)

    def _apply_docs(self, docs: list[dict[str, Any]]) -> bool:
        topics, subs = declared_topics(docs), declared_subscriptions(docs)
        st = self.state
        with st.cond:
            for name in sorted(self.subs - set(subs)):
                st.subs.pop(name, None)
            for name in sorted(self.topics - set(topics)):
                if name in st.topics:
                    st.delete_topic(ps.DeleteTopicRequest(topic=name))
            for name in topics:
                st.topics.setdefault(name, ps.Topic(name=name))
            for name, config in subs.items():
                self._apply(name, config)
            self.topics, self.subs = set(topics), set(subs)
        log.info("stack applied: %d topics, %d subscriptions", len(st.topics), len(st.subs))
        return True

    def _apply(self, name: str, config: SubscriptionConfig) -> None:
        st = self.state
        if config.topic not in st.topics:
            return  # on a topic the stack does not declare: Pub/Sub would refuse it
        existing = st.subs.get(name)
        refused = refusal(config)
        if refused is not None:  # `terraform apply` would fail on it: not created, not changed
            log.error("%s: not applied: %s", name, refused)
        elif existing is None:
            st.create_subscription(subscription_proto(name, config))
        elif existing.queue.config != config:
            existing.sub = subscription_proto(name, config)
            existing.queue.config = config


class RefreshInterceptor(grpc.ServerInterceptor):
    """Every RPC first applies a changed stack: the reload hook of the live topology."""

    def __init__(self, topology: StackTopology) -> None:
        self.topology = topology

    def intercept_service(self, continuation: Callable[[Any], Any],
                          handler_call_details: Any) -> Any:
        self.topology.refresh()
        return continuation(handler_call_details)
