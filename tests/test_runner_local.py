"""A job that plans itself, run by the local Batch backend the way the intake workflow starts
it (only the input prefix, the expected count, no manifest), with parallelism 1 below the
task count: the case where a Batch barrier would wait forever and the plan object does not."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import google.cloud.storage as storage
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import batch_v1
from gpub_runner import contract

from local.backend import LocalBackend
from local.client import batch_client

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PARENT = "projects/demo/locations/europe-west4"
IMAGE = "europe-west4-docker.pkg.dev/demo/batch-images/uppercase:v1"


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBackend]:
    b = LocalBackend(tmp_path_factory.mktemp("local"), repo_root=ROOT)
    try:
        yield b
    finally:
        b.stop(timeout=5)


def _wait(client: batch_v1.BatchServiceClient, name: str, timeout: float = 120) -> batch_v1.Job:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get_job(name=name)
        if job.status.state.name in {"SUCCEEDED", "FAILED", "CANCELLED"}:
            return job
        assert time.monotonic() < deadline, f"job still {job.status.state.name}"
        time.sleep(0.1)


def _job(bucket: str, batch: str, expected: int, tasks: int) -> batch_v1.Job:
    variables = {
        contract.INPUT_PREFIX: f"gs://{bucket}/inputs/uppercase/{batch}/",
        contract.OUTPUT_PREFIX: f"gs://{bucket}/outputs/uppercase/{batch}/",
        contract.EXPECTED_INPUTS: str(expected), contract.INPUT_FORMAT: "jsonl",
        contract.LISTING_WAIT_S: "0", contract.PLAN_WAIT_S: "60",
    }
    return batch_v1.Job.from_json(json.dumps({"taskGroups": [{
        "taskCount": str(tasks), "parallelism": "1",
        "taskSpec": {"runnables": [{"container": {"imageUri": IMAGE}}],
                     "environment": {"variables": variables}},
    }]}))


def test_a_batch_plans_itself_under_local_batch_at_parallelism_one(
        backend: LocalBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    ep = backend.ensure_running()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", ep.gcs_endpoint)
    gcs = storage.Client(project="local", credentials=AnonymousCredentials())
    bucket = gcs.create_bucket(f"client-{uuid.uuid4().hex[:8]}")
    for i in range(12):
        bucket.blob(f"inputs/uppercase/b1/{i:03d}.jsonl").upload_from_string(
            f'{{"id": {i}, "text": "row {i}"}}\n')
    bucket.blob("inputs/uppercase/b1/readme.txt").upload_from_string("not an input")
    client = batch_client(ep.batch_target)
    jid = f"plan-{uuid.uuid4().hex[:8]}"
    job = _wait(client, client.create_job(parent=PARENT, job=_job(bucket.name, "b1", 13, 3),
                                          job_id=jid).name)
    logs = "\n".join(p.read_text() for p in backend.task_log_paths(jid))
    assert job.status.state.name == "SUCCEEDED", logs
    out = {b.name.split("/b1/", 1)[1]: b for b in bucket.list_blobs(prefix="outputs/uppercase/b1/")}
    assert {k for k in out if not k.startswith("_")} == {f"{i:03d}.jsonl" for i in range(12)}
    record = json.loads(out[contract.PLAN_NAME].download_as_bytes())
    assert {k: record[k] for k in ("listed", "accepted", "refused", "expected")} == {
        "listed": 13, "accepted": 12, "refused": 1, "expected": 13}
    assert record["job"] == jid  # BATCH_JOB_ID names the job when GPUB_JOB_NAME is unset
    assert "_errors/readme.txt.json" in out
    assert sum(k.startswith("_tasks/") for k in out) == 3

    # A short batch fails every task with the plan's exit code and the reason.
    jid2 = f"short-{uuid.uuid4().hex[:8]}"
    bucket.blob("inputs/uppercase/b2/only.jsonl").upload_from_string('{"id": 1}\n')
    job2 = _wait(client, client.create_job(parent=PARENT, job=_job(bucket.name, "b2", 5, 2),
                                           job_id=jid2).name)
    assert job2.status.state.name == "FAILED"
    record2 = json.loads(bucket.blob("outputs/uppercase/b2/_plan.json").download_as_bytes())
    assert "listed 1 of the 5 inputs" in record2["reason"]
    logs2 = "\n".join(p.read_text() for p in backend.task_log_paths(jid2))
    assert "the job's plan failed" in logs2
