"""The local Pub/Sub server against the real google-cloud-pubsub client (PUBSUB_EMULATOR_HOST),
with the topics and subscriptions of a Tenancy v2 stack fixture."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1  # type: ignore[attr-defined]

from local.procs import terminate
from local.pubsub_launcher import start_pubsub

FIXTURE = Path(__file__).parent / "fixtures" / "local_iam" / "tenancy_v2" / "cdk.tf.json"
ACME_TOPIC = "projects/demo-proj/topics/acme-results"
ACME_SUB = "projects/demo-proj/subscriptions/acme-results-sub"
GLOBEX_SUB = "projects/demo-proj/subscriptions/globex-results-sub"


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    mp = pytest.MonkeyPatch()
    mp.setenv("LOCAL_IAM", "off")  # delivery semantics here; IAM: tests/test_local_pubsub_iam.py
    info = start_pubsub(tmp_path_factory.mktemp("pubsub"), [FIXTURE])
    mp.setenv("PUBSUB_EMULATOR_HOST", info["target"])  # what the client library reads
    try:
        yield info["target"]
    finally:
        mp.undo()
        terminate(info["pid"], 5)


def test_topics_and_subscriptions_come_from_the_stack(target: str) -> None:
    pub = pubsub_v1.PublisherClient()
    topics = {t.name for t in pub.list_topics(project="projects/demo-proj")}
    assert topics == {"projects/demo-proj/topics/gpub-uploads", ACME_TOPIC,
                      "projects/demo-proj/topics/globex-results"}
    sub = pubsub_v1.SubscriberClient().get_subscription(subscription=ACME_SUB)
    assert sub.topic == ACME_TOPIC and sub.ack_deadline_seconds == 20


def test_publish_pull_ack_and_nack_redelivery(target: str) -> None:
    pub, sub = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    msg_id = pub.publish(ACME_TOPIC, b'{"state": "SUCCEEDED"}', job="j1").result(timeout=10)
    got = sub.pull(subscription=ACME_SUB, max_messages=10, timeout=10).received_messages
    assert [m.message.message_id for m in got] == [msg_id]
    assert got[0].message.attributes["job"] == "j1"
    # The other client's subscription is on another topic: it gets nothing.
    assert not sub.pull(subscription=GLOBEX_SUB, max_messages=10, timeout=10).received_messages
    sub.modify_ack_deadline(subscription=ACME_SUB, ack_ids=[got[0].ack_id],
                            ack_deadline_seconds=0)  # nack: delivered again
    again = sub.pull(subscription=ACME_SUB, max_messages=10, timeout=10).received_messages
    assert [m.message.message_id for m in again] == [msg_id]
    # Reported only with a dead-letter policy (google.pubsub.v1 ReceivedMessage.delivery_attempt).
    assert again[0].delivery_attempt == 0
    sub.acknowledge(subscription=ACME_SUB, ack_ids=[again[0].ack_id])
    assert not sub.pull(subscription=ACME_SUB, max_messages=10, timeout=10).received_messages


def test_streaming_pull_delivers_to_a_subscribe_callback(target: str) -> None:
    pub, sub = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    received: list[bytes] = []
    done = threading.Event()

    def callback(message: pubsub_v1.subscriber.message.Message) -> None:
        received.append(message.data)
        message.ack()
        if len(received) == 3:
            done.set()

    future = sub.subscribe(ACME_SUB, callback)
    try:
        for i in range(3):
            pub.publish(ACME_TOPIC, f"m{i}".encode()).result(timeout=10)
        assert done.wait(15), received
    finally:
        future.cancel()
    assert sorted(received) == [b"m0", b"m1", b"m2"]
    assert not sub.pull(subscription=ACME_SUB, max_messages=10, timeout=10).received_messages


def test_unknown_topic_is_not_found(target: str) -> None:
    with pytest.raises(gexc.NotFound):
        pubsub_v1.PublisherClient().get_topic(topic="projects/demo-proj/topics/nope")
