"""A Pub/Sub server speaking the real gRPC API (`google.pubsub.v1.Publisher` and `Subscriber`:
topics, subscriptions, Publish, Pull, Acknowledge, ModifyAckDeadline, StreamingPull), so the
real google-cloud-pubsub client works against it through PUBSUB_EMULATOR_HOST, the variable the
client library reads to talk to an emulator
(https://cloud.google.com/pubsub/docs/emulator#env).

    python -m local.pubsub_server --port P [--stack cdk.tf.json ...]

Topics and subscriptions declared in the stacks (`google_pubsub_topic`,
`google_pubsub_subscription`) exist from the start, and follow the stack file while the server
runs (`local.topology`: re-read on the first RPC after it changes). Delivery is at-least-once
as in Pub/Sub (`local.delivery`): a message not acknowledged within its subscription's ack
deadline (default 10 s, https://cloud.google.com/pubsub/docs/lease-management) is delivered
again; duplicates, reordering, retention and dead-lettering as `local.delivery` describes, with
the knobs of `local.faults`.
"""

from __future__ import annotations

import argparse
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import empty_pb2, timestamp_pb2
from google.pubsub_v1 import types as ps

from local.delivery import DeadLetter, SubscriptionQueue, refusal
from local.faults import FaultConfigError, FaultPlan, plan_from_env
from local.grpc_plumbing import RpcError, unary
from local.procs import serve_until_signalled
from local.pubsub_admin import admin_handler
from local.pubsub_stack import DEFAULT_ACK_DEADLINE_S, SubscriptionConfig
from local.pubsub_topology import RefreshInterceptor, StackTopology
from local.rpc_iam import pubsub_interceptors

WAIT_S = 0.5  # how long an empty Pull waits for a message before answering


@dataclass
class _Sub:
    sub: ps.Subscription
    queue: SubscriptionQueue


def config_of(sub: ps.Subscription) -> SubscriptionConfig:
    """The delivery settings a Subscription carries (defaults where it leaves them unset)."""
    base = SubscriptionConfig(sub.topic)
    retention = sub.message_retention_duration
    seconds = retention.total_seconds() if hasattr(retention, "total_seconds") else 0.0
    policy = sub.dead_letter_policy
    return SubscriptionConfig(
        topic=sub.topic, ack_deadline_s=sub.ack_deadline_seconds or base.ack_deadline_s,
        retention_s=seconds or base.retention_s,
        dead_letter_topic=policy.dead_letter_topic,
        max_delivery_attempts=policy.max_delivery_attempts or base.max_delivery_attempts)


class PubSub:
    """All state, in memory, behind one lock and one condition (messages arrived)."""

    def __init__(self, plan: FaultPlan | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.topics: dict[str, ps.Topic] = {}
        self.subs: dict[str, _Sub] = {}
        self.cond = threading.Condition()
        self._ids = itertools.count(1)
        self.plan = plan or FaultPlan()
        self.clock = clock
        self.topology: StackTopology | None = None  # set by load_stacks

    # ---- topics ---------------------------------------------------------------------------
    def create_topic(self, topic: ps.Topic) -> ps.Topic:
        with self.cond:
            if topic.name in self.topics:
                raise RpcError(grpc.StatusCode.ALREADY_EXISTS, "Topic already exists")
            self.topics[topic.name] = topic
            return topic

    def get_topic(self, req: ps.GetTopicRequest) -> ps.Topic:
        with self.cond:
            return self._topic(req.topic)

    def _topic(self, name: str) -> ps.Topic:
        if name not in self.topics:
            raise RpcError(grpc.StatusCode.NOT_FOUND, f"Topic not found: {name}")
        return self.topics[name]

    def list_topics(self, req: ps.ListTopicsRequest) -> ps.ListTopicsResponse:
        with self.cond:
            prefix = req.project + "/topics/"
            return ps.ListTopicsResponse(
                topics=[t for n, t in sorted(self.topics.items()) if n.startswith(prefix)])

    def delete_topic(self, req: ps.DeleteTopicRequest) -> empty_pb2.Empty:
        with self.cond:
            self._topic(req.topic)
            del self.topics[req.topic]
            for s in self.subs.values():
                if s.sub.topic == req.topic:
                    s.sub.topic = "_deleted-topic_"
            return empty_pb2.Empty()

    def list_topic_subscriptions(
        self, req: ps.ListTopicSubscriptionsRequest
    ) -> ps.ListTopicSubscriptionsResponse:
        with self.cond:
            self._topic(req.topic)
            names = sorted(n for n, s in self.subs.items() if s.sub.topic == req.topic)
            return ps.ListTopicSubscriptionsResponse(subscriptions=names)

    def publish(self, req: ps.PublishRequest) -> ps.PublishResponse:
        with self.cond:
            self._topic(req.topic)
            if not req.messages:
                raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "No messages to publish")
            ids = []
            stamp = timestamp_pb2.Timestamp()
            stamp.GetCurrentTime()
            for m in req.messages:
                msg = ps.PubsubMessage(data=m.data, attributes=dict(m.attributes),
                                       ordering_key=m.ordering_key,
                                       message_id=str(next(self._ids)), publish_time=stamp)
                ids.append(msg.message_id)
                self._fan_out(req.topic, msg)
            self.cond.notify_all()
            return ps.PublishResponse(message_ids=ids)

    def _fan_out(self, topic: str, msg: ps.PubsubMessage) -> None:
        now = self.clock()
        for s in self.subs.values():
            if s.sub.topic == topic:
                s.queue.push(msg, now)

    def _forward(self, dead: list[DeadLetter]) -> None:
        """Publish dead letters (a missing dead-letter topic keeps nothing, as on Pub/Sub)."""
        for d in dead:
            if d.topic in self.topics:
                d.msg.message_id = str(next(self._ids))
                stamp = timestamp_pb2.Timestamp()
                stamp.GetCurrentTime()
                d.msg.publish_time = stamp
                self._fan_out(d.topic, d.msg)
        if dead:
            self.cond.notify_all()

    # ---- subscriptions ----------------------------------------------------------------------
    def create_subscription(self, sub: ps.Subscription) -> ps.Subscription:
        with self.cond:
            if sub.name in self.subs:
                raise RpcError(grpc.StatusCode.ALREADY_EXISTS, "Subscription already exists")
            self._topic(sub.topic)
            if not sub.ack_deadline_seconds:
                sub.ack_deadline_seconds = DEFAULT_ACK_DEADLINE_S
            config = config_of(sub)
            if (refused := refusal(config)) is not None:
                raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, refused)
            self.subs[sub.name] = _Sub(sub, SubscriptionQueue(sub.name, config, self.plan))
            return sub

    def _sub(self, name: str) -> _Sub:
        if name not in self.subs:
            raise RpcError(grpc.StatusCode.NOT_FOUND, f"Subscription does not exist: {name}")
        return self.subs[name]

    def get_subscription(self, req: ps.GetSubscriptionRequest) -> ps.Subscription:
        with self.cond:
            return self._sub(req.subscription).sub

    def list_subscriptions(self, req: ps.ListSubscriptionsRequest) -> ps.ListSubscriptionsResponse:
        with self.cond:
            prefix = req.project + "/subscriptions/"
            return ps.ListSubscriptionsResponse(
                subscriptions=[s.sub for n, s in sorted(self.subs.items()) if n.startswith(prefix)])

    def delete_subscription(self, req: ps.DeleteSubscriptionRequest) -> empty_pb2.Empty:
        with self.cond:
            self._sub(req.subscription)
            del self.subs[req.subscription]
            return empty_pb2.Empty()

    # ---- delivery ---------------------------------------------------------------------------
    def take(self, name: str, max_messages: int, deadline_s: float | None = None
             ) -> list[ps.ReceivedMessage]:
        """Lease up to `max_messages` (expired leases first come back); [] when none."""
        s = self._sub(name)
        lease = deadline_s or s.sub.ack_deadline_seconds or DEFAULT_ACK_DEADLINE_S
        got, dead = s.queue.take(self.clock(), max_messages, lease,
                                 lambda: f"{name}:{next(self._ids)}")
        self._forward(dead)
        return got

    def pull(self, req: ps.PullRequest) -> ps.PullResponse:
        end = time.monotonic() + WAIT_S
        with self.cond:
            while True:
                got = self.take(req.subscription, max(1, req.max_messages))
                if got or time.monotonic() >= end:
                    return ps.PullResponse(received_messages=got)
                self.cond.wait(max(0.0, end - time.monotonic()))

    def acknowledge(self, req: ps.AcknowledgeRequest) -> empty_pb2.Empty:
        with self.cond:
            self._sub(req.subscription).queue.ack(req.ack_ids)
            return empty_pb2.Empty()

    def modify_ack_deadline(self, req: ps.ModifyAckDeadlineRequest) -> empty_pb2.Empty:
        with self.cond:
            self._modify(self._sub(req.subscription), req.ack_ids, req.ack_deadline_seconds)
            return empty_pb2.Empty()

    def _modify(self, s: _Sub, ack_ids: Any, seconds: int) -> None:
        s.queue.modify(ack_ids, seconds, self.clock())
        if seconds == 0:
            self.cond.notify_all()  # a nack: the message is ready again now

    def streaming_pull(self, requests: Iterator[ps.StreamingPullRequest],
                       context: grpc.ServicerContext) -> Iterator[ps.StreamingPullResponse]:
        first = next(requests)
        name = first.subscription
        with self.cond:
            s = self._sub(name)
        lease = first.stream_ack_deadline_seconds or s.sub.ack_deadline_seconds
        closed = threading.Event()

        def apply(req: ps.StreamingPullRequest) -> None:
            with self.cond:
                s.queue.ack(req.ack_ids)
                for ack_id, secs in zip(req.modify_deadline_ack_ids,
                                        req.modify_deadline_seconds, strict=False):
                    self._modify(s, [ack_id], secs)

        def read() -> None:
            try:
                for req in requests:
                    apply(req)
            except grpc.RpcError:
                pass
            finally:
                closed.set()
                with self.cond:
                    self.cond.notify_all()

        apply(first)
        threading.Thread(target=read, daemon=True).start()
        while context.is_active() and not closed.is_set():
            with self.cond:
                self._sub(name)  # deleted while streaming: NOT_FOUND
                got = self.take(name, 100, lease)
                if not got:
                    self.cond.wait(WAIT_S)
                    continue
            yield ps.StreamingPullResponse(received_messages=got)


# ---- gRPC plumbing -------------------------------------------------------------------------
def _unary(fn: Callable[[Any], Any], req_type: Any, serialize: Callable[[Any], bytes]
           ) -> grpc.RpcMethodHandler:
    return unary(fn, req_type, serialize, "local pubsub server")


def handlers(state: PubSub) -> list[grpc.GenericRpcHandler]:
    empty = empty_pb2.Empty.SerializeToString

    def stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from state.streaming_pull(requests, context)
        except RpcError as e:
            context.abort(e.code, str(e))

    publisher = {
        "CreateTopic": _unary(state.create_topic, ps.Topic, ps.Topic.serialize),
        "GetTopic": _unary(state.get_topic, ps.GetTopicRequest, ps.Topic.serialize),
        "ListTopics": _unary(state.list_topics, ps.ListTopicsRequest,
                             ps.ListTopicsResponse.serialize),
        "DeleteTopic": _unary(state.delete_topic, ps.DeleteTopicRequest, empty),
        "ListTopicSubscriptions": _unary(state.list_topic_subscriptions,
                                         ps.ListTopicSubscriptionsRequest,
                                         ps.ListTopicSubscriptionsResponse.serialize),
        "Publish": _unary(state.publish, ps.PublishRequest, ps.PublishResponse.serialize),
    }
    subscriber = {
        "CreateSubscription": _unary(state.create_subscription, ps.Subscription,
                                     ps.Subscription.serialize),
        "GetSubscription": _unary(state.get_subscription, ps.GetSubscriptionRequest,
                                  ps.Subscription.serialize),
        "ListSubscriptions": _unary(state.list_subscriptions, ps.ListSubscriptionsRequest,
                                    ps.ListSubscriptionsResponse.serialize),
        "DeleteSubscription": _unary(state.delete_subscription, ps.DeleteSubscriptionRequest,
                                     empty),
        "Pull": _unary(state.pull, ps.PullRequest, ps.PullResponse.serialize),
        "Acknowledge": _unary(state.acknowledge, ps.AcknowledgeRequest, empty),
        "ModifyAckDeadline": _unary(state.modify_ack_deadline, ps.ModifyAckDeadlineRequest,
                                    empty),
        "StreamingPull": grpc.stream_stream_rpc_method_handler(
            stream, request_deserializer=ps.StreamingPullRequest.deserialize,
            response_serializer=ps.StreamingPullResponse.serialize),
    }
    return [grpc.method_handlers_generic_handler("google.pubsub.v1.Publisher", publisher),
            grpc.method_handlers_generic_handler("google.pubsub.v1.Subscriber", subscriber)]


def load_stacks(state: PubSub, stacks: list[Path]) -> StackTopology:
    """The stacks' topics and subscriptions now, and the topology that follows the files."""
    state.topology = StackTopology(state, stacks)
    state.topology.refresh()
    return state.topology


def serve(port: int, stacks: list[Path], port_file: Path | None = None,
          plan: FaultPlan | None = None) -> None:
    state = PubSub(plan)
    topology = load_stacks(state, stacks)
    # StreamingPull holds a worker per open stream: room for many subscribers.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="ps"),
                         interceptors=[RefreshInterceptor(topology),
                                       *pubsub_interceptors(stacks)])  # IAM from the stacks
    server.add_generic_rpc_handlers([*handlers(state), admin_handler(state)])
    serve_until_signalled(server, port, "local pubsub", port_file,
                          f": {len(state.topics)} topics, {len(state.subs)} subscriptions")
    server.stop(grace=1).wait()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m local.pubsub_server", description=__doc__)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file", type=Path)
    p.add_argument("--stack", type=Path, action="append", default=[])
    a = p.parse_args(argv)
    try:
        plan = plan_from_env()
    except FaultConfigError as exc:
        p.exit(2, f"local pubsub: {exc}\n")
    serve(a.port, a.stack, a.port_file, plan)


if __name__ == "__main__":
    main()
