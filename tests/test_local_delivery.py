"""The local Pub/Sub delivers like Pub/Sub: at least once (duplicates), out of order, with
retention and dead-lettering as the stack configures them, reproducibly from a seed; and it
follows the stack file while it runs. Driven through the real google-cloud-pubsub client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.pubsub_v1 import types as ps

from local.delivery import DEAD_LETTER_ATTRS, SubscriptionQueue
from local.faults import FaultConfigError, FaultPlan, plan_from_env
from local.grpc_identity import publisher_for, subscriber_for
from local.identity import ADMIN_EMAIL
from local.procs import PACKAGE_PARENT, terminate
from local.pubsub_launcher import start_pubsub
from local.pubsub_stack import SubscriptionConfig, declared_subscriptions

FIXTURE = Path(__file__).parent / "fixtures" / "local_iam" / "tenancy_v2" / "cdk.tf.json"
PROJECT = "projects/demo-proj"
ACME_TOPIC = f"{PROJECT}/topics/acme-results"
ACME_SUB = f"{PROJECT}/subscriptions/acme-results-sub"
INTAKE_TOPIC = f"{PROJECT}/topics/intake"
INTAKE_SUB = f"{PROJECT}/subscriptions/intake-sub"
DEAD_TOPIC = f"{PROJECT}/topics/intake-dead"
DEAD_SUB = f"{PROJECT}/subscriptions/intake-dead-sub"
# The server enforces the stack's IAM; these tests are about delivery, so they call as the local
# deployer (a project owner), whom every Pub/Sub permission is granted.
ACTOR = ADMIN_EMAIL


def _stack_with_dead_letter(max_attempts: int = 5) -> dict[str, Any]:
    """The fixture plus an intake topic whose subscription dead-letters, as a stack declares it
    (hashicorp/google `google_pubsub_subscription.dead_letter_policy`)."""
    doc = json.loads(FIXTURE.read_text(encoding="utf-8"))
    res = doc["resource"]
    res["google_pubsub_topic"]["intake"] = {"project": "demo-proj", "name": "intake"}
    res["google_pubsub_topic"]["dead"] = {"project": "demo-proj", "name": "intake-dead"}
    res["google_pubsub_subscription"]["intake-sub"] = {
        "project": "demo-proj", "name": "intake-sub",
        "topic": "${google_pubsub_topic.intake.id}", "ack_deadline_seconds": 30,
        "message_retention_duration": "86400s",
        "dead_letter_policy": {"dead_letter_topic": "${google_pubsub_topic.dead.id}",
                               "max_delivery_attempts": max_attempts}}
    res["google_pubsub_subscription"]["dead-sub"] = {
        "project": "demo-proj", "name": "intake-dead-sub",
        "topic": "${google_pubsub_topic.dead.id}"}
    return doc


def _write(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    os.replace(tmp, path)  # what a synth does: the new file, whole


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A local Pub/Sub on a stack file of its own, with the knobs the test set beforehand."""
    stack = tmp_path / "cdk.tf.json"
    _write(stack, _stack_with_dead_letter())
    info = start_pubsub(tmp_path, [stack])
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", info["target"])
    try:
        yield info["target"], stack
    finally:
        terminate(info["pid"], 5)


def _pull_all(sub: Any, name: str, rounds: int = 3) -> list[Any]:
    out: list[Any] = []
    for _ in range(rounds):
        got = sub.pull(subscription=name, max_messages=100, timeout=10).received_messages
        if got:
            sub.acknowledge(subscription=name, ack_ids=[m.ack_id for m in got])
        out += got
    return out


def _publisher() -> Any:
    return publisher_for(os.environ["PUBSUB_EMULATOR_HOST"], ACTOR)


def _subscriber() -> Any:
    return subscriber_for(os.environ["PUBSUB_EMULATOR_HOST"], ACTOR)


def _publish(n: int, topic: str = ACME_TOPIC) -> list[str]:
    pub = _publisher()
    return [pub.publish(topic, f"m{i}".encode()).result(timeout=10) for i in range(n)]


# ---- at least once, out of order, reproducible ------------------------------------------
@pytest.mark.parametrize("knobs", [{"LOCAL_PUBSUB_DUPLICATE_RATE": "1.0"}])
def test_duplicate_rate_one_delivers_every_message_twice_even_when_acked(
    knobs: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    for k, v in knobs.items():
        monkeypatch.setenv(k, v)
    stack = tmp_path / "cdk.tf.json"
    _write(stack, _stack_with_dead_letter())
    info = start_pubsub(tmp_path, [stack])
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", info["target"])
    try:
        ids = _publish(5)
        got = _pull_all(_subscriber(), ACME_SUB)
    finally:
        terminate(info["pid"], 5)
    # Each message twice, with the same message_id, though the first copy was acknowledged.
    assert sorted(m.message.message_id for m in got) == sorted(ids * 2)


def _order(plan: FaultPlan, n: int = 40) -> list[str]:
    q = SubscriptionQueue(ACME_SUB, SubscriptionConfig(ACME_TOPIC), plan)
    for i in range(n):
        q.push(ps.PubsubMessage(data=b"x", message_id=str(i)), now=0.0)
    ids = iter(range(10**6))
    got, _ = q.take(1.0, 1000, 10, lambda: str(next(ids)))
    return [m.message.message_id for m in got]


def test_reorder_shuffles_and_the_seed_reproduces_the_order() -> None:
    in_order = [str(i) for i in range(40)]
    assert _order(FaultPlan()) == in_order
    shuffled = _order(FaultPlan(reorder=True, seed=7))
    assert shuffled != in_order and sorted(shuffled, key=int) == in_order
    assert _order(FaultPlan(reorder=True, seed=7)) == shuffled
    assert _order(FaultPlan(reorder=True, seed=8)) != shuffled


def test_duplicates_draw_from_the_seed() -> None:
    def dup_count(seed: int) -> int:
        return len(_order(FaultPlan(duplicate_rate=0.5, seed=seed), 200)) - 200

    assert 60 < dup_count(1) < 140  # about half of 200 messages come twice
    assert dup_count(1) == dup_count(1)


@pytest.mark.parametrize(("env", "field"), [
    ({"LOCAL_PUBSUB_DUPLICATE_RATE": "1.5"}, "LOCAL_PUBSUB_DUPLICATE_RATE"),
    ({"LOCAL_CONNECTOR_ERROR_RATE": "lots"}, "LOCAL_CONNECTOR_ERROR_RATE"),
    ({"LOCAL_PUBSUB_REORDER": "maybe"}, "LOCAL_PUBSUB_REORDER"),
    ({"LOCAL_FAULT_SEED": "x1"}, "LOCAL_FAULT_SEED"),
])
def test_a_bad_knob_is_refused_naming_it(env: dict[str, str], field: str) -> None:
    with pytest.raises(FaultConfigError, match=f"^{field}: got .*; allowed: "):
        plan_from_env(env)
    proc = subprocess.run([sys.executable, "-m", "local.pubsub_server"], cwd=PACKAGE_PARENT,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"local pubsub: {plan_from_env_message(env)}"]


def plan_from_env_message(env: dict[str, str]) -> str:
    try:
        plan_from_env(env)
    except FaultConfigError as exc:
        return str(exc)
    raise AssertionError("accepted")


# ---- retention and dead-lettering from the stack ------------------------------------------
def test_the_stack_configures_retention_and_dead_lettering() -> None:
    subs = declared_subscriptions([_stack_with_dead_letter(7)])
    assert subs[INTAKE_SUB] == SubscriptionConfig(INTAKE_TOPIC, 30, 86400.0, DEAD_TOPIC, 7)
    # Unset: Pub/Sub's defaults (10 s lease, 7 days); Eventarc's own subscription keeps 24 h.
    assert subs[ACME_SUB].retention_s == 7 * 24 * 3600
    eventarc = next(c for n, c in subs.items() if "/subscriptions/eventarc-" in n)
    assert eventarc.retention_s == 24 * 3600 and not eventarc.dead_letter_topic


def test_unacked_messages_past_retention_are_dropped() -> None:
    q = SubscriptionQueue(INTAKE_SUB, SubscriptionConfig(INTAKE_TOPIC, retention_s=600))
    q.push(ps.PubsubMessage(data=b"old", message_id="1"), now=0.0)
    q.push(ps.PubsubMessage(data=b"new", message_id="2"), now=500.0)
    ids = iter(range(100))
    got, _ = q.take(650.0, 10, 10, lambda: str(next(ids)))
    assert [m.message.message_id for m in got] == ["2"] and q.dropped == 1


def test_nacked_past_max_delivery_attempts_goes_to_the_dead_letter_topic(
    server: tuple[str, Path],
) -> None:
    sub = _subscriber()
    (msg_id,) = _publish(1, INTAKE_TOPIC)
    attempts = []
    for _ in range(6):
        got = sub.pull(subscription=INTAKE_SUB, max_messages=10, timeout=10).received_messages
        if not got:
            break
        attempts.append(got[0].delivery_attempt)
        sub.modify_ack_deadline(subscription=INTAKE_SUB, ack_ids=[got[0].ack_id],
                                ack_deadline_seconds=0)
    assert attempts == [1, 2, 3, 4, 5]
    dead = _pull_all(sub, DEAD_SUB, rounds=1)
    assert [m.message.data for m in dead] == [b"m0"]
    attrs = dead[0].message.attributes
    assert attrs["CloudPubSubDeadLetterSourceSubscription"] == INTAKE_SUB
    assert attrs["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
    assert set(DEAD_LETTER_ATTRS) <= set(attrs)
    assert dead[0].message.message_id != msg_id  # a new publish on the dead-letter topic
    assert not sub.pull(subscription=INTAKE_SUB, max_messages=10, timeout=10).received_messages


# ---- live topology ------------------------------------------------------------------------
def test_a_topic_and_subscription_added_to_the_stack_exist_at_the_next_request(
    server: tuple[str, Path],
) -> None:
    _, stack = server
    doc = _stack_with_dead_letter()
    res = doc["resource"]
    res["google_pubsub_topic"]["results"]["for_each"]["initech"] = {}
    res["google_pubsub_subscription"]["results-sub"]["for_each"]["initech"] = {}
    del res["google_pubsub_subscription"]["dead-sub"]
    _write(stack, doc)  # a client onboarded while the local cloud runs
    pub, sub = _publisher(), _subscriber()
    pub.publish(f"{PROJECT}/topics/initech-results", b"first").result(timeout=10)
    got = _pull_all(sub, f"{PROJECT}/subscriptions/initech-results-sub", rounds=1)
    assert [m.message.data for m in got] == [b"first"]
    names = {s.name for s in sub.list_subscriptions(project=PROJECT)}
    assert DEAD_SUB not in names  # removed from the stack: gone, as after terraform apply
    assert ACME_SUB in names


def test_settings_pubsub_refuses_are_refused(server: tuple[str, Path]) -> None:
    from google.api_core import exceptions as gexc

    sub = _subscriber()
    with pytest.raises(gexc.InvalidArgument, match="max_delivery_attempts: got 101; allowed"):
        sub.create_subscription(request={
            "name": f"{PROJECT}/subscriptions/too-many", "topic": INTAKE_TOPIC,
            "dead_letter_policy": {"dead_letter_topic": DEAD_TOPIC,
                                   "max_delivery_attempts": 101}})
    _, stack = server
    doc = _stack_with_dead_letter(max_attempts=3)  # terraform apply would fail on it
    doc["resource"]["google_pubsub_subscription"]["intake-sub"]["name"] = "intake-sub-3"
    _write(stack, doc)
    names = {s.name for s in sub.list_subscriptions(project=PROJECT)}
    assert f"{PROJECT}/subscriptions/intake-sub-3" not in names and ACME_SUB in names
