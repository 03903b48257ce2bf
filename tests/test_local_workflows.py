"""The deployed workflow, taken from the (fixture) stack after Terraform's substitutions and run
by the local Eventarc/Workflows on the local backend with IAM on: the client story from the
upload to the outcome on the client's subscription."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import storage  # type: ignore[attr-defined]

from local.backend import Endpoints, LocalBackend
from local.client import batch_client
from local.connectors import Connectors
from local.eventarc import LocalEventarc
from local.identity import credentials_for
from local.workflows import (
    DeployedWorkflow,
    WorkflowFailed,
    WorkflowSyntaxError,
    deployed_workflows,
    execute,
    parse_source,
    terraform_string,
)

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent / "fixtures" / "local_iam" / "tenancy_v2"
FIXTURE = HERE / "cdk.tf.json"
ACME, GLOBEX = "demo-proj-acme", "demo-proj-globex"
CLIENT_ACME = "client-acme@demo-proj.iam.gserviceaccount.com"
CLIENT_GLOBEX = "client-globex@demo-proj.iam.gserviceaccount.com"
ADMIN = "terraform@local.iam.gserviceaccount.com"
PARENT = "projects/demo-proj/locations/europe-west4"


# ---- source and syntax -----------------------------------------------------------------------
def test_the_source_is_the_yaml_terraform_would_deploy() -> None:
    doc = json.loads(FIXTURE.read_text())
    (wf,) = deployed_workflows(doc)
    assert wf.source == (HERE / "dispatch.yaml").read_text()  # `$${` unescaped
    assert wf.service_account == "gpub-workflows@demo-proj.iam.gserviceaccount.com"
    assert wf.id == f"{PARENT}/workflows/dispatch-up"


def test_an_unresolved_terraform_reference_is_refused() -> None:
    with pytest.raises(WorkflowSyntaxError, match="unresolved"):
        terraform_string("main: ${google_thing.x.id}", {})


@pytest.mark.parametrize(
    "source",
    [
        "main:\n  steps:\n    - a:\n        cal: sys.log\n",  # unknown step field
        "main:\n  steps:\n    - a: {return: 1}\n  bogus: 2\n",  # unknown workflow field
        "main:\n  steps: [\n",  # not YAML
        "main:\n  steps:\n    - data: ${f({\"a\": 1})}\n",  # `: ` inside an unquoted expression
    ],
)
def test_syntax_workflows_rejects_fails_before_running(source: str) -> None:
    with pytest.raises(WorkflowSyntaxError):
        parse_source(source)


# ---- the flow on the local backend -----------------------------------------------------------
@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Endpoints, LocalEventarc]]:
    stack = tmp_path_factory.mktemp("stack") / "cdk.tf.json"
    shutil.copy(FIXTURE, stack)
    backend = LocalBackend(tmp_path_factory.mktemp("local"), stacks=[stack])
    try:
        ep = backend.ensure_running()
        admin = _gcs(ep, ADMIN)
        for name in (ACME, GLOBEX):
            admin.create_bucket(name)
        arc = LocalEventarc([stack], batch_target=ep.batch_target,
                            gcs_endpoint=ep.gcs_endpoint, pubsub_target=ep.pubsub_target)
        yield ep, arc
    finally:
        backend.stop(timeout=5)


def _gcs(ep: Endpoints, email: str) -> storage.Client:
    return storage.Client(project="demo-proj", credentials=credentials_for(email),
                          client_options={"api_endpoint": ep.gcs_endpoint})


def _outcomes(arc: LocalEventarc, client: str) -> list[dict[str, Any]]:
    from local.grpc_identity import subscriber_for

    sub = f"projects/demo-proj/subscriptions/{client}-results-sub"
    # as the client: Pub/Sub IAM grants it subscriber on its own results subscription only
    me = subscriber_for(arc.endpoints["pubsub_target"],
                        f"client-{client}@demo-proj.iam.gserviceaccount.com")
    resp = me.pull(subscription=sub, max_messages=50, timeout=5)
    if resp.received_messages:
        me.acknowledge(subscription=sub, ack_ids=[m.ack_id for m in resp.received_messages])
    return [{**json.loads(m.message.data), **dict(m.message.attributes)}
            for m in resp.received_messages]


def _deliver_until(arc: LocalEventarc, n: int, timeout: float = 90) -> list[Any]:
    runs: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(runs) < n and time.monotonic() < deadline:
        runs += arc.deliver(timeout_s=1)
    return runs


def test_the_client_story_upload_marker_job_outputs_outcome_isolation(
    env: tuple[Endpoints, LocalEventarc],
) -> None:
    ep, arc = env
    acme = _gcs(ep, CLIENT_ACME).bucket(ACME)
    for i in range(3):
        acme.blob(f"inputs/up/b1/{i}.jsonl").upload_from_string(f'{{"id": {i}, "text": "r{i}"}}\n')
    acme.blob("inputs/up/b1/_READY").upload_from_string(b"")
    runs = _deliver_until(arc, 4)
    # One execution per upload notification; only the marker starts a job.
    assert [r.result for r in runs[:3]] == ["ignored"] * 3, [r.error for r in runs]
    assert runs[3].state == "SUCCEEDED", runs[3].error
    assert runs[3].result == "SUCCEEDED"
    job = batch_client(ep.batch_target).get_job(name=f"{PARENT}/jobs/up-acme-b1")
    assert job.allocation_policy.service_account.email == (
        "run-acme@demo-proj.iam.gserviceaccount.com")
    names = {b.name for b in _gcs(ep, CLIENT_ACME).list_blobs(ACME, prefix="outputs/up/b1/")}
    assert {"outputs/up/b1/0.jsonl", "outputs/up/b1/2.jsonl"} <= names
    assert _outcomes(arc, "acme") == [
        {"batch": "b1", "state": "SUCCEEDED", "job": f"{PARENT}/jobs/up-acme-b1",
         "client": "acme"}]
    assert _outcomes(arc, "globex") == []  # only acme's outcomes reach acme's subscription
    # acme cannot read globex's outputs, nor list them, nor write into globex's bucket.
    globex = _gcs(ep, ADMIN).bucket(GLOBEX)
    globex.blob("outputs/up/g1/0.jsonl").upload_from_string(b"globex secret")
    snoop = _gcs(ep, CLIENT_ACME)
    with pytest.raises(gexc.Forbidden, match=r"storage\.objects\.get"):
        snoop.bucket(GLOBEX).blob("outputs/up/g1/0.jsonl").download_as_bytes()
    with pytest.raises(gexc.Forbidden, match=r"storage\.objects\.list"):
        list(snoop.list_blobs(GLOBEX, prefix="outputs/"))
    with pytest.raises(gexc.Forbidden, match=r"storage\.objects\.create"):
        snoop.bucket(GLOBEX).blob("inputs/up/x/_READY").upload_from_string(b"")


def test_an_upload_outside_the_input_location_starts_nothing(
    env: tuple[Endpoints, LocalEventarc],
) -> None:
    ep, arc = env
    before = len(list(batch_client(ep.batch_target).list_jobs(parent=PARENT)))
    acme = _gcs(ep, CLIENT_ACME).bucket(ACME)
    acme.blob("inputs/other-job/b2/_READY").upload_from_string(b"")  # another job's inputs
    runs = _deliver_until(arc, 1, timeout=20)
    assert [r.result for r in runs] == ["ignored"]
    _gcs(ep, ADMIN).bucket(ACME).blob("scratch/_READY").upload_from_string(b"")
    assert arc.deliver(timeout_s=1) == []  # outside the notification's prefix: no event at all
    assert len(list(batch_client(ep.batch_target).list_jobs(parent=PARENT))) == before


def _one_step_workflow(ep: Endpoints, body: dict[str, Any], params: dict[str, Any],
                       job_id: str | None = None) -> Any:
    args = {"parent": PARENT, "body": body, "connector_params": params,
            "jobId": job_id or "c" + str(time.time_ns())[-9:]}
    source = (
        "main:\n  steps:\n    - run:\n"
        "        call: googleapis.batch.v1.projects.locations.jobs.create\n"
        f"        args: {json.dumps(args)}\n"
        "        result: job\n    - done:\n        return: ${job.status.state}\n"
    )
    wf = DeployedWorkflow("x", "x", "demo-proj", "europe-west4", ADMIN, source)
    conn = Connectors(batch_target=ep.batch_target, gcs_endpoint=ep.gcs_endpoint,
                      pubsub_target=ep.pubsub_target, identity=ADMIN, poll_s=0.1)
    return execute(wf, None, conn)


def _script(text: str) -> dict[str, Any]:
    return {"taskGroups": [{"taskSpec": {"runnables": [{"script": {"text": text}}]}}]}


def test_the_batch_connector_waits_and_times_out_like_workflows(
    env: tuple[Endpoints, LocalEventarc],
) -> None:
    ep, _ = env
    assert _one_step_workflow(ep, _script("true"), {}) == "SUCCEEDED"
    with pytest.raises(WorkflowFailed) as failed:
        _one_step_workflow(ep, _script("sleep 30"), {"timeout": 1})
    assert "TimeoutError" in failed.value.payload["tags"]
    # skip_polling returns at creation, whatever the job then does.
    assert _one_step_workflow(ep, _script("sleep 30"), {"skip_polling": True}) in {
        "QUEUED", "SCHEDULED", "RUNNING", "STATE_UNSPECIFIED"}


def test_a_failed_or_cancelled_job_ends_the_connector_call(
    env: tuple[Endpoints, LocalEventarc],
) -> None:
    ep, _ = env
    with pytest.raises(WorkflowFailed) as failed:
        _one_step_workflow(ep, _script("exit 1"), {})
    assert "OperationError" in failed.value.payload["tags"]

    # A cancelled job is final too: the call ends instead of waiting out its timeout.
    job_id = "cancel-" + str(time.time_ns())[-9:]
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            _one_step_workflow(ep, _script("sleep 60"), {"timeout": 120}, job_id)
        except WorkflowFailed as exc:
            result["payload"] = exc.payload

    worker = threading.Thread(target=run)
    worker.start()
    client = batch_client(ep.batch_target)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if client.get_job(name=f"{PARENT}/jobs/{job_id}").status.state.name == "RUNNING":
                break
        except gexc.NotFound:
            pass
        time.sleep(0.1)
    client.cancel_job(name=f"{PARENT}/jobs/{job_id}")
    worker.join(30)
    assert not worker.is_alive()
    assert "OperationError" in result["payload"]["tags"]
