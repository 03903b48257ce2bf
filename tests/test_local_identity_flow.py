"""Identities in the local flow: one root rule, tasks run as the job's service account, and a
run whose identity lacks a permission fails like Batch would, its log naming the permission."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import batch_v1, storage  # type: ignore[attr-defined]

from local.backend import PACKAGE_PARENT, Endpoints, LocalBackend, default_root
from local.client import batch_client
from local.iam_launcher import reload_iam
from local.identity import ADMIN_EMAIL, credentials_for

pytestmark = pytest.mark.slow

FIXTURE = Path(__file__).parent / "fixtures" / "local_iam" / "tenancy_v2" / "cdk.tf.json"
PARENT = "projects/demo-proj/locations/europe-west4"
RUN_ACME = "run-acme@demo-proj.iam.gserviceaccount.com"
WORKFLOW = "gpub-workflows@demo-proj.iam.gserviceaccount.com"  # actAs on run-<c> (fixture)
ACME, GLOBEX = "demo-proj-acme", "demo-proj-globex"


def test_one_root_rule_for_every_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from submit import localmode

    monkeypatch.setenv("GPUB_LOCAL_ROOT", str(tmp_path / "elsewhere"))
    assert default_root() == (tmp_path / "elsewhere").resolve()
    assert localmode.root() == default_root()
    assert LocalBackend().root == default_root()  # bin/demo's backend (no explicit root)
    monkeypatch.delenv("GPUB_LOCAL_ROOT")
    assert default_root() == PACKAGE_PARENT / ".local"
    assert localmode.root() == PACKAGE_PARENT / ".local"


def test_iam_is_off_without_stacks_and_with_local_iam_off(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("GPUB_LOCAL_STACKS", raising=False)
    assert not LocalBackend(tmp_path).iam
    monkeypatch.setenv("GPUB_LOCAL_STACKS", str(FIXTURE))
    assert LocalBackend(tmp_path).iam
    monkeypatch.setenv("LOCAL_IAM", "off")
    assert not LocalBackend(tmp_path).iam


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stack") / "cdk.tf.json"
    shutil.copy(FIXTURE, path)
    return path


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory, stack: Path) -> Iterator[LocalBackend]:
    b = LocalBackend(tmp_path_factory.mktemp("local"), stacks=[stack])
    try:
        yield b
    finally:
        b.stop(timeout=5)


@pytest.fixture(scope="module")
def endpoints(backend: LocalBackend) -> Endpoints:
    ep = backend.ensure_running()
    admin = _storage(ep.gcs_endpoint, ADMIN_EMAIL)
    for name in (ACME, GLOBEX):
        admin.create_bucket(name)
        for i in range(3):
            admin.bucket(name).blob(f"inputs/up/b1/{i}.jsonl").upload_from_string(
                f'{{"id": {i}, "text": "row {i}"}}\n')
    return ep


def _storage(endpoint: str, email: str) -> storage.Client:
    return storage.Client(project="demo-proj", credentials=credentials_for(email),
                          client_options={"api_endpoint": endpoint})


def _manifest(ep: Endpoints, bucket: str, out: str) -> None:
    admin = _storage(ep.gcs_endpoint, ADMIN_EMAIL).bucket(bucket)
    lines = []
    for blob in admin.client.list_blobs(bucket, prefix="inputs/up/b1/"):
        rel = blob.name.removeprefix("inputs/up/b1/")
        lines.append(json.dumps({"name": rel, "size": blob.size,
                                 "generation": str(blob.generation)}))
    admin.blob(f"{out}_manifest.jsonl").upload_from_string("\n".join(lines) + "\n")


def _run(ep: Endpoints, bucket: str, out: str, email: str | None) -> batch_v1.Job:
    job: dict[str, Any] = {
        "taskGroups": [{"taskCount": "1", "taskSpec": {
            "runnables": [{"container": {"imageUri": "europe-docker.pkg.dev/p/r/uppercase:1"}}],
            "environment": {"variables": {
                "GPUB_INPUT_PREFIX": f"gs://{bucket}/inputs/up/b1/",
                "GPUB_OUTPUT_PREFIX": f"gs://{bucket}/{out}",
                "GPUB_MANIFEST": f"gs://{bucket}/{out}_manifest.jsonl",
                "GPUB_STORAGE_TIMEOUT_S": "5",
            }},
        }}],
    }
    if email:
        job["allocationPolicy"] = {"serviceAccount": {"email": email}}
    # The workflow may act as every run identity; nobody may act as the default account, so
    # that job is created by the local deployer (a project owner).
    client = batch_client(ep.batch_target, WORKFLOW if email else ADMIN_EMAIL)
    created = client.create_job(parent=PARENT, job=batch_v1.Job.from_json(json.dumps(job)))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = client.get_job(name=created.name)
        if got.status.state.name in {"SUCCEEDED", "FAILED", "CANCELLED"}:
            return got
        time.sleep(0.1)
    raise AssertionError(f"job {created.name} did not finish")


def _log(backend: LocalBackend, job: batch_v1.Job) -> str:
    job_id = job.name.rsplit("/", 1)[-1]
    return "\n".join(p.read_text() for p in backend.task_log_paths(job_id))


def test_a_task_runs_as_the_jobs_service_account(
    backend: LocalBackend, endpoints: Endpoints
) -> None:
    _manifest(endpoints, ACME, "outputs/up/b1/")
    job = _run(endpoints, ACME, "outputs/up/b1/", RUN_ACME)
    assert job.status.state.name == "SUCCEEDED", _log(backend, job)
    reader = _storage(endpoints.gcs_endpoint, RUN_ACME)
    names = {b.name for b in reader.list_blobs(ACME, prefix="outputs/up/b1/")}
    assert "outputs/up/b1/0.jsonl" in names


def test_a_cross_tenant_run_fails_and_its_log_names_the_permission(
    backend: LocalBackend, endpoints: Endpoints
) -> None:
    _manifest(endpoints, GLOBEX, "outputs/up/x1/")
    job = _run(endpoints, GLOBEX, "outputs/up/x1/", RUN_ACME)
    assert job.status.state.name == "FAILED"
    log = _log(backend, job)
    assert "storage.objects." in log and RUN_ACME in log, log


def test_a_job_without_a_service_account_runs_as_the_default_one_and_is_denied(
    backend: LocalBackend, endpoints: Endpoints
) -> None:
    _manifest(endpoints, ACME, "outputs/up/d1/")
    job = _run(endpoints, ACME, "outputs/up/d1/", None)
    assert job.status.state.name == "FAILED"
    assert "default-compute@developer.gserviceaccount.com does not have" in _log(backend, job)


def test_no_list_grant_for_the_job_identity_fails_the_run(
    backend: LocalBackend, endpoints: Endpoints, stack: Path
) -> None:
    """Defect 1 of the deployability issue: the run identity cannot list its own outputs."""
    doc = json.loads(stack.read_text())
    saved = doc["resource"]["google_storage_bucket_iam_member"].pop("run-viewer")
    # Reading inputs still works (object-level), listing does not: only the list is missing.
    doc["resource"]["google_storage_bucket_iam_member"]["run-read-inputs"] = {
        "for_each": {"acme": {}}, "bucket": "demo-proj-acme",
        "role": "roles/storage.objectViewer",
        "member": "serviceAccount:${google_service_account.run-sa[each.key].email}",
        "condition": {"title": "inputs", "expression":
                      'resource.name.startsWith("projects/_/buckets/demo-proj-acme/objects/")'},
    }
    stack.write_text(json.dumps(doc))
    try:
        reload_iam(endpoints.gcs_endpoint)  # enforce the edited stack now, no waiting
        _manifest(endpoints, ACME, "outputs/up/l1/")
        job = _run(endpoints, ACME, "outputs/up/l1/", RUN_ACME)
        assert job.status.state.name == "FAILED"
        assert "Permission 'storage.objects.list' denied" in _log(backend, job)
    finally:
        del doc["resource"]["google_storage_bucket_iam_member"]["run-read-inputs"]
        doc["resource"]["google_storage_bucket_iam_member"]["run-viewer"] = saved
        stack.write_text(json.dumps(doc))
        reload_iam(endpoints.gcs_endpoint)


def test_create_job_needs_act_as_on_the_jobs_service_account(endpoints: Endpoints) -> None:
    """Batch checks `iam.serviceAccounts.actAs` on the job's service account at create time
    (https://cloud.google.com/batch/docs/create-run-job-custom-service-account)."""
    from google.api_core import exceptions as gexc

    job = batch_v1.Job.from_json(json.dumps({
        "taskGroups": [{"taskSpec": {"runnables": [{"script": {"text": "true"}}]}}],
        "allocationPolicy": {"serviceAccount": {"email": RUN_ACME}}}))
    client_acme = "client-acme@demo-proj.iam.gserviceaccount.com"  # a client, not the workflow
    with pytest.raises(gexc.PermissionDenied, match=r"iam\.serviceAccounts\.actAs.*run-acme"):
        batch_client(endpoints.batch_target, client_acme).create_job(
            parent=PARENT, job=job, job_id="act-as-denied")
    with pytest.raises(gexc.Unauthenticated):
        batch_client(endpoints.batch_target).create_job(parent=PARENT, job=job,
                                                        job_id="act-as-anonymous")
    names = {j.name.rsplit("/", 1)[-1] for j in batch_client(endpoints.batch_target).list_jobs(
        parent=PARENT)}
    assert not names & {"act-as-denied", "act-as-anonymous"}


def test_an_upload_publishes_the_gcs_notification_the_stack_declares(
    endpoints: Endpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    from local.grpc_identity import subscriber_for

    sub = subscriber_for(endpoints.pubsub_target, ADMIN_EMAIL)  # Pub/Sub IAM is on
    name = "projects/demo-proj/subscriptions/test-uploads"
    sub.create_subscription(name=name, topic="projects/demo-proj/topics/gpub-uploads")
    client = _storage(endpoints.gcs_endpoint, "client-acme@demo-proj.iam.gserviceaccount.com")
    client.bucket(ACME).blob("inputs/up/b9/new.jsonl").upload_from_string(b'{"id": 1}\n')
    # Outside the notification's object_name_prefix (inputs/): no message.
    _storage(endpoints.gcs_endpoint, ADMIN_EMAIL).bucket(ACME).blob("other/x").upload_from_string(
        b"x")
    got: list[Any] = []
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        got = list(sub.pull(subscription=name, max_messages=10, timeout=5).received_messages)
    assert len(got) == 1
    attrs = dict(got[0].message.attributes)
    assert attrs["eventType"] == "OBJECT_FINALIZE" and attrs["payloadFormat"] == "JSON_API_V1"
    assert attrs["bucketId"] == ACME and attrs["objectId"] == "inputs/up/b9/new.jsonl"
    assert attrs["notificationConfig"].startswith(f"projects/_/buckets/{ACME}/notificationConfigs/")
    body = json.loads(got[0].message.data)
    assert body["name"] == "inputs/up/b9/new.jsonl" and body["bucket"] == ACME
    assert attrs["objectGeneration"] == str(body["generation"])
    sub.acknowledge(subscription=name, ack_ids=[got[0].ack_id])
    assert not sub.pull(subscription=name, max_messages=10, timeout=5).received_messages
