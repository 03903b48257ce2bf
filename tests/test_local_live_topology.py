"""The local cloud follows the synthesized stack while it runs (a client onboarded, a trigger
added), runs one stack per root (another environment's stack is refused, never swapped in),
and the local Eventarc delivers at least once, within Workflows' creation rate; `python -m
local events --once` says what it did and fails loudly."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import storage  # type: ignore[attr-defined]

from local.backend import Endpoints, LocalBackend, OtherFaultsRunning, OtherStackRunning
from local.eventarc import LocalEventarc
from local.faults import FaultPlan
from local.gcs_events import LiveNotifications, notifications_key
from local.grpc_identity import publisher_for, subscriber_for
from local.identity import ADMIN_EMAIL, credentials_for
from local.procs import PACKAGE_PARENT, terminate
from local.pubsub_launcher import start_pubsub
from local.workflow_limits import CreationRate

FIXTURE = Path(__file__).parent / "fixtures" / "local_iam" / "tenancy_v2" / "cdk.tf.json"
PROJECT = "projects/demo-proj"
BOOM_TOPIC = f"{PROJECT}/topics/gpub-boom"


def _base() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def _write(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    os.replace(tmp, path)  # a synth writes the new file whole


def onboard(doc: dict[str, Any], client: str, like: str = "acme") -> dict[str, Any]:
    """What onboarding one more client adds to this stack: a copy of `like`'s instance of every
    per-client resource (bucket, identities, grants, topic, subscription, notification)."""
    doc = copy.deepcopy(doc)
    for section in doc["resource"].values():
        for conf in section.values():
            each = conf.get("for_each")
            if not isinstance(each, dict):
                continue
            for key in [k for k in each if like in k]:
                each[key.replace(like, client)] = json.loads(
                    json.dumps(each[key]).replace(like, client))
    wf = doc["resource"]["google_workflows_workflow"]["dispatch-up"]  # its bucket -> client map
    mapping = f'"demo-proj-{like}": "{like}"'
    wf["source_contents"] = wf["source_contents"].replace(
        mapping, f'{mapping}, "demo-proj-{client}": "{client}"')
    return doc


def with_trigger(doc: dict[str, Any], name: str, source: str) -> dict[str, Any]:
    """A topic, a workflow and the Eventarc trigger between them, as a stack declares them."""
    doc = copy.deepcopy(doc)
    res = doc["resource"]
    res["google_pubsub_topic"][name] = {"project": "demo-proj", "name": f"gpub-{name}"}
    wf = dict(res["google_workflows_workflow"]["dispatch-up"])
    res["google_workflows_workflow"][name] = {**wf, "name": name, "source_contents": source}
    trigger = copy.deepcopy(res["google_eventarc_trigger"]["dispatch-up"])
    trigger.update(name=name,
                   transport={"pubsub": {"topic": f"${{google_pubsub_topic.{name}.id}}"}},
                   destination={"workflow": f"${{google_workflows_workflow.{name}.id}}"})
    res["google_eventarc_trigger"][name] = trigger
    return doc


ECHO = "main:\n  params: [event]\n  steps:\n    - done:\n        return: $${event.id}\n"
BOOM = "main:\n  steps:\n    - fail:\n        raise: boom\n"


# ---- the Eventarc loop: at least once, within the creation rate, following the stack -------
@pytest.fixture
def pubsub_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    monkeypatch.setenv("LOCAL_PUBSUB_DUPLICATE_RATE", "1.0")
    stack = tmp_path / "cdk.tf.json"
    _write(stack, with_trigger(_base(), "echo", ECHO))
    info = start_pubsub(tmp_path, [stack])
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", info["target"])
    try:
        yield info["target"], stack
    finally:
        terminate(info["pid"], 5)


def _publisher() -> Any:
    """A publisher acting as the local deployer: the server enforces the stack's IAM, and these
    tests are about delivery, not about who may publish."""
    return publisher_for(os.environ["PUBSUB_EMULATOR_HOST"], ADMIN_EMAIL)


def _subscriber() -> Any:
    return subscriber_for(os.environ["PUBSUB_EMULATOR_HOST"], ADMIN_EMAIL)


def _arc(target: str, stack: Path, creations: CreationRate | None = None) -> LocalEventarc:
    return LocalEventarc([stack], batch_target="127.0.0.1:1", gcs_endpoint="http://127.0.0.1:1",
                         pubsub_target=target, plan=FaultPlan(), creations=creations)


def _rounds(arc: LocalEventarc, n: int = 4) -> list[Any]:
    return [r for _ in range(n) for r in arc.deliver(timeout_s=1)]


def test_eventarc_delivers_duplicates_to_the_workflow(pubsub_only: tuple[str, Path]) -> None:
    target, stack = pubsub_only
    arc = _arc(target, stack)
    msg_id = _publisher().publish(f"{PROJECT}/topics/gpub-echo", b"{}").result(10)
    runs = _rounds(arc)
    assert [r.result for r in runs] == [msg_id, msg_id]  # at least once: the same event twice


def test_the_loop_itself_can_add_duplicates_on_a_cloud_without_knobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack = tmp_path / "cdk.tf.json"
    _write(stack, with_trigger(_base(), "echo", ECHO))
    info = start_pubsub(tmp_path, [stack])  # no knobs: exactly once
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", info["target"])
    try:
        arc = LocalEventarc([stack], batch_target="127.0.0.1:1",
                            gcs_endpoint="http://127.0.0.1:1", pubsub_target=info["target"],
                            plan=FaultPlan(), delivery=FaultPlan(duplicate_rate=1.0, reorder=True))
        pub = _publisher()
        ids = [pub.publish(f"{PROJECT}/topics/gpub-echo", b"{}").result(10) for _ in range(3)]
        runs = _rounds(arc)
    finally:
        terminate(info["pid"], 5)
    assert sorted(r.result for r in runs) == sorted(ids * 2)


def test_a_trigger_added_to_the_running_stack_delivers_its_first_event(
    pubsub_only: tuple[str, Path],
) -> None:
    target, stack = pubsub_only
    arc = _arc(target, stack)
    _write(stack, with_trigger(with_trigger(_base(), "echo", ECHO), "boom", BOOM))
    _publisher().publish(BOOM_TOPIC, b"{}").result(10)
    runs = _rounds(arc)
    assert {r.workflow for r in runs} == {"boom"} and runs
    assert all(r.state == "FAILED" and r.error == "boom" for r in runs)


def test_executions_over_the_creation_rate_are_redelivered_not_lost(
    pubsub_only: tuple[str, Path],
) -> None:
    target, stack = pubsub_only
    now = [0.0]
    arc = _arc(target, stack, CreationRate(per_minute=2, clock=lambda: now[0]))
    pub = _publisher()
    ids = {pub.publish(f"{PROJECT}/topics/gpub-echo", b"{}").result(10) for _ in range(2)}
    first = arc.deliver_round(timeout_s=1)
    assert len(first.executions) == 2 and first.refused == 2  # 4 deliveries (duplicates)
    now[0] = 61.0  # a minute later the refused events start
    later = _rounds(arc)
    assert {r.result for r in first.executions + later} == ids
    assert len(first.executions) + len(later) == 4


def test_notifications_follow_the_stack_file(tmp_path: Path) -> None:
    stack = tmp_path / "cdk.tf.json"
    _write(stack, _base())
    live = LiveNotifications([stack])
    before = {n.bucket for n in live.current()}
    assert before == {"demo-proj-acme", "demo-proj-globex"}
    key = notifications_key(live.current())
    _write(stack, onboard(_base(), "initech"))
    assert {n.bucket for n in live.current()} == before | {"demo-proj-initech"}
    assert notifications_key(live.current()) != key
    stack.write_text("{ half a synth", encoding="utf-8")  # a synth still writing
    assert {n.bucket for n in live.current()} == before | {"demo-proj-initech"}


# ---- the whole local cloud ----------------------------------------------------------------
@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalBackend, Path]]:
    stack = tmp_path_factory.mktemp("stack") / "cdk.tf.json"
    _write(stack, _base())
    backend = LocalBackend(tmp_path_factory.mktemp("local"), stacks=[stack])
    try:
        ep = backend.ensure_running()
        from local.apply import apply_buckets

        apply_buckets(ep.gcs_upstream, [stack])
        yield backend, stack
    finally:
        backend.stop(timeout=5)


def _gcs(ep: Endpoints, email: str) -> storage.Client:
    return storage.Client(project="demo-proj", credentials=credentials_for(email),
                          client_options={"api_endpoint": ep.gcs_endpoint})


def test_a_client_onboarded_into_a_running_cloud_gets_its_first_upload_processed(
    cloud: tuple[LocalBackend, Path],
) -> None:
    backend, stack = cloud
    ep = backend.ensure_running()
    _write(stack, onboard(_base(), "initech"))
    # What any `bin/submit ... --local` does next: find the cloud, apply the stack's buckets.
    again = LocalBackend(backend.root, stacks=[stack])
    assert again.ensure_running() == ep  # the same cloud, no restart of its endpoints
    from local.apply import apply_buckets

    assert apply_buckets(ep.gcs_upstream, [stack]) == ["demo-proj-initech"]
    arc = LocalEventarc([stack], batch_target=ep.batch_target, gcs_endpoint=ep.gcs_endpoint,
                        pubsub_target=ep.pubsub_target, sleep_scale=0.01)
    initech = _gcs(ep, "client-initech@demo-proj.iam.gserviceaccount.com").bucket(
        "demo-proj-initech")
    initech.blob("inputs/up/b1/0.jsonl").upload_from_string('{"id": 0, "text": "r0"}\n')
    initech.blob("inputs/up/b1/_READY").upload_from_string(b"")
    runs: list[Any] = []
    deadline = time.monotonic() + 90
    while len(runs) < 2 and time.monotonic() < deadline:
        runs += arc.deliver(timeout_s=1)
    marker = [r for r in runs if r.event["data"]["message"]["attributes"]["objectId"].endswith(
        "_READY")]
    assert marker and marker[0].state == "SUCCEEDED", [r.error for r in runs]
    sub = f"{PROJECT}/subscriptions/initech-results-sub"
    # Read as the client: arc.subscriber is the Eventarc agent, granted only its triggers' subs.
    reader = subscriber_for(ep.pubsub_target, "client-initech@demo-proj.iam.gserviceaccount.com")
    got = reader.pull(subscription=sub, max_messages=10, timeout=5).received_messages
    assert [json.loads(m.message.data)["state"] for m in got] == ["SUCCEEDED"]


def _cli(backend: LocalBackend, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GPUB_LOCAL_ROOT": str(backend.root), "PYTHONPATH": str(PACKAGE_PARENT),
           "LOCAL_WORKFLOWS_SLEEP_SCALE": "0.01"}
    return subprocess.run([sys.executable, "-m", "local", *args], cwd=PACKAGE_PARENT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_another_environments_stack_is_refused_never_swapped(
    cloud: tuple[LocalBackend, Path], tmp_path: Path,
) -> None:
    backend, _ = cloud
    ep = backend.ensure_running()
    os.environ["PUBSUB_EMULATOR_HOST"] = ep.pubsub_target
    pub, sub = _publisher(), _subscriber()
    pub.publish(f"{PROJECT}/topics/acme-results", b"pending").result(10)
    prod = tmp_path / "prod" / "cdk.tf.json"
    prod.parent.mkdir()
    _write(prod, _base())
    with pytest.raises(OtherStackRunning, match="python -m local stop --root"):
        LocalBackend(backend.root, stacks=[prod]).ensure_running()
    # `bin/submit ls --env prod --local`: the same refusal, exit 2, one line.
    from submit import localmode
    from submit.errors import SubmitError

    mp = pytest.MonkeyPatch()
    mp.setenv("GPUB_LOCAL_ROOT", str(backend.root))
    localmode.use_stacks([prod])
    try:
        with pytest.raises(SubmitError, match=r"^--local: the local cloud at .* runs ") as refused:
            localmode.start()
        assert refused.value.exit_code == 2 and "\n" not in str(refused.value)
    finally:
        localmode.use_stacks([])
        mp.undo()
    proc = _cli(backend, "start", "--stack", str(prod))
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "runs" in line and "GPUB_LOCAL_ROOT" in line
    # The running cloud kept its stack, its endpoints and its pending message.
    assert LocalBackend(backend.root).ensure_running() == ep
    got = sub.pull(subscription=f"{PROJECT}/subscriptions/acme-results-sub", max_messages=10,
                   timeout=5).received_messages
    assert [m.message.data for m in got] == [b"pending"]
    sub.acknowledge(subscription=f"{PROJECT}/subscriptions/acme-results-sub",
                    ack_ids=[m.ack_id for m in got])


def test_other_delivery_knobs_are_refused_and_none_use_the_cloud_as_it_runs(
    cloud: tuple[LocalBackend, Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend, stack = cloud
    ep = backend.ensure_running()  # no knob set: the cloud as it runs
    monkeypatch.setenv("LOCAL_PUBSUB_DUPLICATE_RATE", "0.5")
    knob = r"LOCAL_PUBSUB_DUPLICATE_RATE=0\.5 \(running: 0\.0\)"
    with pytest.raises(OtherFaultsRunning, match=knob):
        LocalBackend(backend.root, stacks=[stack]).ensure_running()
    monkeypatch.delenv("LOCAL_PUBSUB_DUPLICATE_RATE")
    assert LocalBackend(backend.root, stacks=[stack]).ensure_running() == ep


def test_events_once_says_what_it_ran_and_fails_when_an_execution_failed(
    cloud: tuple[LocalBackend, Path],
) -> None:
    backend, stack = cloud
    ep = backend.ensure_running()
    quiet = _cli(backend, "events", "--once", "--stack", str(stack))
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert quiet.stdout.strip().splitlines()[-1].endswith("nothing was pending")
    # An event leased by another consumer is pending too: not "nothing", not exit 0.
    os.environ["PUBSUB_EMULATOR_HOST"] = ep.pubsub_target
    eventarc_sub = f"{PROJECT}/subscriptions/eventarc-dispatch-up"
    _publisher().publish(f"{PROJECT}/topics/gpub-uploads", b"{}").result(10)
    sub = _subscriber()
    (held,) = sub.pull(subscription=eventarc_sub, max_messages=10, timeout=10).received_messages
    sub.modify_ack_deadline(subscription=eventarc_sub, ack_ids=[held.ack_id],
                            ack_deadline_seconds=600)
    busy = _cli(backend, "events", "--once", "--stack", str(stack))
    assert busy.returncode == 1, busy.stdout + busy.stderr[-2000:]
    assert "1 events still pending under another consumer's lease" in busy.stdout
    sub.acknowledge(subscription=eventarc_sub, ack_ids=[held.ack_id])
    _write(stack, with_trigger(onboard(onboard(_base(), "initech"), "hooli"), "boom", BOOM))
    _publisher().publish(BOOM_TOPIC, b"{}").result(10)  # the new topic exists
    proc = _cli(backend, "events", "--once", "--stack", str(stack))
    assert proc.returncode == 1, proc.stdout + proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert any(x.startswith("boom <- ") and ": FAILED" in x for x in lines), lines
    assert "1 executions (0 SUCCEEDED, 1 FAILED)" in lines[-1]
    # The bucket the new synth added exists: `events` applied the stack it re-read.
    assert _gcs(ep, ADMIN_EMAIL).bucket("demo-proj-hooli").exists()
