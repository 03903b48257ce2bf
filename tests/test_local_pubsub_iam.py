"""Pub/Sub IAM from the stack in the local Pub/Sub server, with real google-cloud-pubsub
clients that act as the stack's identities (`local.grpc_identity`): each attack of the issue
(globex pulling and acking acme's results, publishing a forged outcome on acme's topic) is
refused with PERMISSION_DENIED, as Pub/Sub refuses it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from google.api_core import exceptions as gexc

from local.grpc_identity import publisher_for, subscriber_for
from local.identity import ADMIN_EMAIL, EVENTARC_AGENT_EMAIL, GCS_AGENT_EMAIL
from local.procs import terminate
from local.pubsub_iam import load_iam_policy, role_grants
from local.pubsub_launcher import start_pubsub
from stacks.layout import CLIENT_SA_PREFIX, RUN_SA_PREFIX, sa_email

FIXTURE = Path(__file__).parent / "fixtures" / "local_iam" / "tenancy_v2" / "cdk.tf.json"
P = "projects/demo-proj"
ACME_TOPIC, ACME_SUB = f"{P}/topics/acme-results", f"{P}/subscriptions/acme-results-sub"
UPLOADS = f"{P}/topics/gpub-uploads"
CLIENT_ACME = sa_email(CLIENT_SA_PREFIX + "acme", "demo-proj")
CLIENT_GLOBEX = sa_email(CLIENT_SA_PREFIX + "globex", "demo-proj")
RUN_ACME = sa_email(RUN_SA_PREFIX + "acme", "demo-proj")
WORKFLOW = sa_email("gpub-workflows", "demo-proj")


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    mp = pytest.MonkeyPatch()
    mp.delenv("LOCAL_IAM", raising=False)
    try:
        info = start_pubsub(tmp_path_factory.mktemp("pubsub-iam"), [FIXTURE])
        try:
            yield info["target"]
        finally:
            terminate(info["pid"], 5)
    finally:
        mp.undo()


def _publish(target: str, email: str, topic: str, data: bytes) -> str:
    return str(publisher_for(target, email).publish(topic, data).result(timeout=10))


def test_roles_carry_the_documented_permissions() -> None:
    # https://cloud.google.com/pubsub/docs/access-control#roles
    assert role_grants("roles/pubsub.subscriber", "pubsub.subscriptions.consume")
    assert not role_grants("roles/pubsub.subscriber", "pubsub.subscriptions.delete")
    assert not role_grants("roles/pubsub.publisher", "pubsub.subscriptions.consume")
    assert role_grants("roles/iam.serviceAccountUser", "iam.serviceAccounts.actAs")
    assert not role_grants("roles/iam.serviceAccountTokenCreator", "iam.serviceAccounts.actAs")


def test_the_stack_grants_resolve_to_resources_and_members() -> None:
    policy = load_iam_policy([FIXTURE])
    assert policy.allows(CLIENT_ACME, "pubsub.subscriptions.consume", ACME_SUB)
    assert not policy.allows(CLIENT_GLOBEX, "pubsub.subscriptions.consume", ACME_SUB)
    assert policy.allows(RUN_ACME, "pubsub.topics.publish", ACME_TOPIC)
    assert policy.allows(GCS_AGENT_EMAIL, "pubsub.topics.publish", UPLOADS)
    assert policy.allows(WORKFLOW, "iam.serviceAccounts.actAs", RUN_ACME)
    assert not policy.unresolved


def test_another_client_cannot_pull_or_ack_the_results(target: str) -> None:
    msg_id = _publish(target, RUN_ACME, ACME_TOPIC, b'{"state": "SUCCEEDED"}')
    globex = subscriber_for(target, CLIENT_GLOBEX)
    with pytest.raises(gexc.PermissionDenied, match="User not authorized to perform this action"):
        globex.pull(subscription=ACME_SUB, max_messages=10, timeout=10)
    acme = subscriber_for(target, CLIENT_ACME)
    got = acme.pull(subscription=ACME_SUB, max_messages=10, timeout=10).received_messages
    assert [m.message.message_id for m in got] == [msg_id]
    with pytest.raises(gexc.PermissionDenied):
        globex.acknowledge(subscription=ACME_SUB, ack_ids=[got[0].ack_id])
    with pytest.raises(gexc.PermissionDenied):
        globex.modify_ack_deadline(subscription=ACME_SUB, ack_ids=[got[0].ack_id],
                                   ack_deadline_seconds=0)
    acme.acknowledge(subscription=ACME_SUB, ack_ids=[got[0].ack_id])


def test_another_client_cannot_publish_a_forged_outcome(target: str) -> None:
    for forger in (CLIENT_GLOBEX, CLIENT_ACME):
        with pytest.raises(gexc.PermissionDenied):
            _publish(target, forger, ACME_TOPIC, b'{"state": "SUCCEEDED", "forged": true}')
    assert not subscriber_for(target, CLIENT_ACME).pull(
        subscription=ACME_SUB, max_messages=10, timeout=5).received_messages


def test_streaming_pull_is_authorized_on_its_first_request(target: str) -> None:
    future = subscriber_for(target, CLIENT_GLOBEX).subscribe(ACME_SUB, lambda m: m.ack())
    with pytest.raises(gexc.PermissionDenied):
        future.result(timeout=20)


def test_administration_needs_its_own_roles(target: str) -> None:
    acme = subscriber_for(target, CLIENT_ACME)
    with pytest.raises(gexc.PermissionDenied):
        acme.create_subscription(name=f"{P}/subscriptions/sneak", topic=ACME_TOPIC)
    with pytest.raises(gexc.PermissionDenied):
        acme.delete_subscription(subscription=ACME_SUB)
    with pytest.raises(gexc.PermissionDenied):
        publisher_for(target, CLIENT_ACME).delete_topic(topic=ACME_TOPIC)
    admin = subscriber_for(target, ADMIN_EMAIL)  # the local deployer (terraform apply)
    admin.create_subscription(name=f"{P}/subscriptions/audit", topic=ACME_TOPIC)
    admin.delete_subscription(subscription=f"{P}/subscriptions/audit")


def test_service_agents_have_exactly_their_grants(target: str) -> None:
    _publish(target, GCS_AGENT_EMAIL, UPLOADS, b"{}")  # bucket notifications
    with pytest.raises(gexc.PermissionDenied):
        _publish(target, GCS_AGENT_EMAIL, ACME_TOPIC, b"{}")
    eventarc = subscriber_for(target, EVENTARC_AGENT_EMAIL)
    sub = f"{P}/subscriptions/eventarc-dispatch-up"  # its trigger's (made at deploy time)
    with pytest.raises(gexc.AlreadyExists):  # allowed to create it: the name is taken
        eventarc.create_subscription(name=sub, topic=UPLOADS)
    with pytest.raises(gexc.PermissionDenied):  # any other subscription: not its own
        eventarc.create_subscription(name=f"{P}/subscriptions/eventarc-other", topic=UPLOADS)
    eventarc.pull(subscription=sub, max_messages=1, timeout=5)
    with pytest.raises(gexc.PermissionDenied):
        eventarc.pull(subscription=ACME_SUB, max_messages=1, timeout=5)


def test_a_call_without_an_identity_is_unauthenticated(target: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", target)
    with pytest.raises(gexc.Unauthenticated):
        pubsub_v1.SubscriberClient().pull(subscription=ACME_SUB, max_messages=1, timeout=5)
