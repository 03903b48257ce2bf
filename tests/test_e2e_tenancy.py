"""End to end with IAM on, against the REAL synthesized example stack (platform-dev): the
deployed workflow, triggers, bucket policies and topics, run by the local cloud
(docs/operations.md). One stack and one local cloud for the module."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from local.client import batch_client
from tests._helpers.e2e_cloud import (
    ENV,
    JOB,
    PARENT,
    Cloud,
    check_cancel,
    check_rerun,
    check_story,
    deliver_marker_run,
    denied,
    outcomes,
    start_cloud,
    upload_batch,
)

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cloud(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    yield from start_cloud(synth_dir, tmp_path_factory.mktemp("e2e"))


def test_the_client_story_preempted_retry_and_a_job_longer_than_the_connector_timeout(
    cloud: Cloud,
) -> None:
    # check_story: run-acme identity, every task's first attempt preempted then retried,
    # the job outlives the connector's timeout, outputs readable by acme, outcome on acme's
    # subscription only.
    check_story(cloud, cloud.eventarc())


def test_a_rerun_of_a_batch_succeeds(cloud: Cloud) -> None:
    check_rerun(cloud, cloud.eventarc())


def test_a_cancelled_job_ends_its_workflow(cloud: Cloud) -> None:
    check_cancel(cloud, cloud.eventarc())


def test_each_client_subscription_receives_only_its_own_outcomes(cloud: Cloud) -> None:
    arc = cloud.eventarc()
    outcomes(arc, "acme"), outcomes(arc, "globex")
    batch = cloud.batch_name("iso")
    upload_batch(cloud, "globex", batch, n=1)
    run, _ = deliver_marker_run(arc)
    assert run.state == "SUCCEEDED", run.error
    assert [(o["client"], o["batch"]) for o in outcomes(arc, "globex")] == [("globex", batch)]
    assert outcomes(arc, "acme") == []


@pytest.mark.parametrize("who", ["client", "run"])
def test_cross_tenant_reads_lists_and_writes_are_denied(cloud: Cloud, who: str) -> None:
    email = ENV.client_sa_email("acme") if who == "client" else ENV.run_sa_email("acme")
    admin = cloud.gcs("terraform@local.iam.gserviceaccount.com")
    theirs = ENV.client_bucket("globex")
    admin.bucket(theirs).blob(f"outputs/{JOB}/g/0.jsonl").upload_from_string(b"globex only")
    admin.bucket(theirs).blob(f"inputs/{JOB}/g/0.jsonl").upload_from_string(b"globex only")
    me = cloud.gcs(email)
    for name in (f"outputs/{JOB}/g/0.jsonl", f"inputs/{JOB}/g/0.jsonl"):
        denied(partial(me.bucket(theirs).blob(name).download_as_bytes), "storage.objects.get")
    denied(lambda: list(me.list_blobs(theirs, prefix="outputs/")), "storage.objects.list")
    for name in (f"outputs/{JOB}/g/x.jsonl", f"inputs/{JOB}/g/_READY"):
        denied(partial(me.bucket(theirs).blob(name).upload_from_string, b"x"),
               "storage.objects.create")
    # ... while its own bucket answers (the denials above are not a broken setup).
    list(me.list_blobs(ENV.client_bucket("acme"), prefix="outputs/"))


def test_an_upload_outside_the_client_input_location_starts_nothing(cloud: Cloud) -> None:
    arc = cloud.eventarc()
    client = batch_client(cloud.ep.batch_target)
    before = {j.name for j in client.list_jobs(parent=PARENT)}
    acme = cloud.gcs(ENV.client_sa_email("acme")).bucket(ENV.client_bucket("acme"))
    # Data objects notify nothing (the notifications filter on each job's marker prefix),
    # whatever their names; so does a marker of a job that is not declared.
    acme.blob(f"{ENV.layout.job_inputs(JOB)}b/_READY").upload_from_string(b"")  # old marker
    acme.blob(f"{ENV.layout.job_inputs(JOB)}b/c/x.jsonl").upload_from_string(b"{}")
    acme.blob(ENV.layout.marker("no-such-job", "b")).upload_from_string(b'{"count": 1}')
    runs = []
    for _ in range(3):
        runs += arc.deliver(timeout_s=1.5)
    assert runs == [], [(r.result, r.error) for r in runs]
    # Outside inputs/ the client cannot write at all, and the admin's write raises no event.
    denied(lambda: acme.blob("outputs/x/_READY").upload_from_string(b""),
           "storage.objects.create")
    admin = cloud.gcs("terraform@local.iam.gserviceaccount.com")
    admin.bucket(ENV.client_bucket("acme")).blob("scratch/_READY").upload_from_string(b"")
    assert arc.deliver(timeout_s=1.5) == []
    assert {j.name for j in client.list_jobs(parent=PARENT)} == before


def test_a_command_that_names_no_stack_keeps_the_running_cloud_and_its_iam(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`bin/submit status|logs|list --local` (no stack given) after `bin/demo`: the same
    servers, IAM still on, instead of a restart without IAM."""
    from local.backend import LocalBackend

    monkeypatch.delenv("GPUB_LOCAL_STACKS", raising=False)
    monkeypatch.delenv("LOCAL_IAM", raising=False)
    again = LocalBackend(cloud.backend.root)
    assert again.stacks == [cloud.stack.resolve()] and again.iam
    assert again.ensure_running() == cloud.ep
    me = cloud.gcs(ENV.client_sa_email("acme"))
    denied(lambda: list(me.list_blobs(ENV.client_bucket("globex"))), "storage.objects.list")


def test_python_m_local_events_delivers_what_was_uploaded_before_it_started(
    cloud: Cloud,
) -> None:
    """Eventarc's subscription exists from the deploy on (the local Pub/Sub creates it from
    the stack), so an upload made while nothing delivers still starts its run later."""
    batch = cloud.batch_name("cli")
    upload_batch(cloud, "acme", batch, n=1)
    env = {**os.environ, "GPUB_LOCAL_ROOT": str(cloud.backend.root), "PYTHONPATH": str(REPO),
           "LOCAL_WORKFLOWS_SLEEP_SCALE": "0.01"}
    proc = subprocess.run([sys.executable, "-m", "local", "events", "--once", "--stack",
                           str(cloud.stack)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"{ENV.layout.marker(JOB, batch)}: SUCCEEDED" in proc.stdout, proc.stdout[-2000:]
    outcomes(cloud.eventarc(), "acme")
