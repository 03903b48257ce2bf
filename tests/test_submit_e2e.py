"""End to end: `bin/submit` against the embedded local backend (real Batch gRPC client, real
google-cloud-storage client on fake-gcs-server), with the `uppercase` job, IAM ON: the local
cloud enforces the bucket policies of the synthesized example stack (a copy of the session's
synth), and bin/submit acts as the environment's operator identity.

Tenancy v2 paths: a run for client acme reads gs://<project>-acme/inputs/uppercase/<batch>/
and writes .../outputs/uppercase/<batch>/; a run without --client uses the data bucket's
jobs/ area. Every backend gets its own temporary root.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._helpers.local_submit import (
    ACME,
    BUCKET,
    REPO,
    Backend,
    expected_outputs,
    start_backend,
)
from tests._helpers.tf import edit_policies

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (REPO / "local" / "backend.py").is_file(),
                       reason="local backend (local/backend.py) not present yet"),
]
@pytest.fixture(scope="module")
def local(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    b = start_backend(tmp_path_factory.mktemp("submit-e2e"), synth_dir)
    try:
        yield b
    finally:
        b.backend.stop()


def _io(name: str) -> list[str]:
    """A run without --client: the data bucket's jobs/ area."""
    return ["--input", f"gs://{BUCKET}/jobs/in/{name}/", "--output",
            f"gs://{BUCKET}/jobs/out/{name}/"]


def _acme_io(name: str) -> list[str]:
    """Input and output of a run for client acme (its bucket, its job folders)."""
    return ["--client", "acme", "--input", f"gs://{ACME}/inputs/uppercase/{name}/",
            "--output", f"gs://{ACME}/outputs/uppercase/{name}/"]


def _outputs(b: Backend, name: str, bucket: str = BUCKET,
             prefix: str = "jobs/out/") -> dict[str, bytes]:
    return {k: v for k, v in b.objects(f"{prefix}{name}/", bucket).items()
            if not k.startswith("_")}


def _wait_final(b: Backend, job_id: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = b.submit("status", job_id, "--local", "--json")
        state = str(json.loads(proc.stdout)["state"])
        if state in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return state
        time.sleep(0.3)
    raise AssertionError(f"{job_id} did not finish in {timeout}s")


def test_n_inputs_give_n_outputs_with_wait(local: Backend) -> None:
    files = local.upload("inputs/uppercase/basic/", 23, extra={"notes.txt": "not an input"},
                         bucket_name=ACME)
    proc = local.submit("uppercase", "--env", "dev", *_acme_io("basic"), "--local", "--wait",
                        "--json", "--poll", "0.3")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["state"] == "SUCCEEDED" and result["new"] is True
    assert result["task_count"] == 3 and result["files"] == 23
    assert "estimated cost: at most $" in proc.stderr
    assert "SUCCEEDED: tasks 3/3 succeeded" in proc.stderr
    assert _outputs(local, "basic", ACME, "outputs/uppercase/") == expected_outputs(files)

    raw = local.objects("outputs/uppercase/basic/", ACME)["_manifest.jsonl"]
    assert sorted(json.loads(line)["name"] for line in raw.decode().splitlines()) == sorted(files)
    job = next(j for j in local.jobs() if j.name.endswith(result["job_id"]))
    assert dict(job.labels).items() >= {
        "job": "uppercase", "env": "dev", "client": "acme", "submitter": "ci-test"}.items()
    assert len(job.labels["manifest-hash"]) == 32
    # The tasks ran as acme's run identity, which the stack lets write acme's outputs/.
    assert job.allocation_policy.service_account.email == (
        "run-acme@example-ml-dev.iam.gserviceaccount.com")

    status = local.submit("status", result["job_id"], "--local")
    assert status.returncode == 0 and "SUCCEEDED" in status.stdout
    listing = local.submit("list", "--local")
    assert result["job_id"] in listing.stdout
    logs = local.submit("logs", result["job_id"], "--local")
    assert logs.returncode == 0 and "==> task 0 attempt-0 <==" in logs.stdout


def test_dry_run_prints_exactly_the_job_and_creates_nothing(local: Backend) -> None:
    from google.cloud import batch_v1

    local.upload("jobs/in/dry/", 5)
    before = len(local.jobs())
    proc = local.submit("uppercase", "--env", "dev", *_io("dry"), "--local", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    job = batch_v1.Job.from_json(proc.stdout)  # stdout is the job JSON and nothing else
    group = job.task_groups[0]
    assert group.task_count == 1 and group.parallelism == 1
    variables = group.task_spec.environment.variables
    assert variables["GPUB_MANIFEST"] == f"gs://{BUCKET}/jobs/out/dry/_manifest.jsonl"
    assert variables["GPUB_INPUT_PREFIX"] == f"gs://{BUCKET}/jobs/in/dry/"
    assert len(job.labels["manifest-hash"]) == 32
    assert "dry run: nothing created" in proc.stderr
    assert len(local.jobs()) == before
    assert local.objects("jobs/out/dry/") == {}  # no manifest either


def test_dry_run_never_loads_the_provider_bindings(local: Backend) -> None:
    local.upload("jobs/in/imports/", 2)
    code = (
        "import sys\n"
        "from submit.cli import main\n"
        "try:\n"
        f"    main({['uppercase', '--env', 'dev', *_io('imports'), '--local', '--dry-run']!r})\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "bad = [m for m in sys.modules if m == 'stacks.provider' or m.split('.')[0] in\n"
        "       ('cdktn', 'cdktn_provider_google', 'jsii', 'constructs')]\n"
        "print('LOADED', bad, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=local.env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stderr


def test_duplicate_concurrent_submit_is_refused_with_exit_3(local: Backend) -> None:
    local.upload("jobs/in/dup/", 120)
    # Parallelism 1: twelve tasks one after the other keep the first job busy (about 8 s
    # locally) well past the second submit (about 1.5 s); four tasks left a thin margin.
    first = local.submit("uppercase", "--env", "dev", *_io("dup"), "--local", "-p", "1")
    assert first.returncode == 0, first.stderr
    job_id = first.stdout.strip()
    jobs_before = len(local.jobs())
    second = local.submit("uppercase", "--env", "dev", *_io("dup"), "--local", "-p", "1",
                          "--overwrite")
    assert second.returncode == 3, second.stderr
    assert f"job {job_id} is already running" in second.stderr
    assert len(local.jobs()) == jobs_before
    cancel = local.submit("cancel", job_id, "--local")
    assert cancel.returncode == 0, cancel.stderr
    _wait_final(local, job_id)


def test_retried_submit_creates_one_job(local: Backend) -> None:
    from google.cloud import batch_v1

    from submit import batch, ids

    # 1. The same CreateJob request sent twice (a retry after a lost reply): one job.
    local.upload("jobs/in/retry/", 3)
    proc = local.submit("uppercase", "--env", "dev", *_io("retry"), "--local", "--dry-run")
    job = batch_v1.Job.from_json(proc.stdout)
    conn = batch.Connection(local.batch(), "projects/example-ml-dev/locations/europe-west4", True)
    job_id = job.task_groups[0].task_spec.environment.variables["GPUB_JOB_NAME"]
    assert job_id.startswith("uppercase-") and job_id.endswith("-1")
    kwargs: dict[str, Any] = dict(job_id=job_id, job=job, request_id=ids.request_id(job_id))
    a, created_a = batch.create_job(conn, **kwargs)
    b, created_b = batch.create_job(conn, **kwargs)
    assert a.name == b.name and a.uid == b.uid and created_a and not created_b
    assert sum(j.name == a.name for j in local.jobs()) == 1
    _wait_final(local, job_id)

    # 2. The whole submit run again after it SUCCEEDED (same inputs, same output): reported
    # as the job that completed it, not a second one.
    local.upload("jobs/in/retry2/", 3)
    first = local.submit("uppercase", "--env", "dev", *_io("retry2"), "--local", "--wait",
                         "--json", "--poll", "0.3")
    assert first.returncode == 0, first.stderr
    again = local.submit("uppercase", "--env", "dev", *_io("retry2"), "--local", "--json")
    assert again.returncode == 0, again.stderr
    r1, r2 = json.loads(first.stdout), json.loads(again.stdout)
    assert r2["new"] is False and r2["job_id"] == r1["job_id"]
    assert r2["request_id"] == r1["request_id"]
    assert "already completed this run" in again.stderr
    key = next(j for j in local.jobs() if j.name.endswith(r1["job_id"])).labels["run-key"]
    assert sum(j.labels.get("run-key") == key for j in local.jobs()) == 1


def test_preemption_at_half_rate_still_succeeds_without_duplicates(
    tmp_path: Path, synth_dir: Path,
) -> None:
    # Its own backend: the fault injection is a server setting. Only first attempts are
    # preempted (the job allows one retry), killed within 0.3 s so they die mid-task.
    b = start_backend(tmp_path, synth_dir, env={"LOCAL_BATCH_PREEMPT_RATE": "0.5",
                              "LOCAL_BATCH_PREEMPT_ATTEMPTS": "1",
                              "LOCAL_BATCH_PREEMPT_MAX_DELAY_S": "0.3"})
    try:
        files = b.upload("jobs/in/preempt/", 120)
        proc = b.submit("uppercase", "--env", "dev", *_io("preempt"), "--local", "--wait",
                        "--json", "--poll", "0.3")
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert result["state"] == "SUCCEEDED"
        # 12 tasks at rate 0.5: all 12 escaping is a 1-in-4096 event.
        assert result["preemptions"] >= 1 and result["retries"] >= result["preemptions"]
        assert "preemptions" in proc.stderr
        objects = b.objects("jobs/out/preempt/")
        assert _outputs(b, "preempt") == expected_outputs(files)  # each output once, complete
        assert not any(k.startswith("_errors/") for k in objects)
        assert not any(k.startswith("_done/") for k in objects)  # outputs are the markers
    finally:
        b.backend.stop()


@pytest.mark.parametrize(("args", "message"), [
    (["uppercase", "--env", "dev", *_io("empty")], "--input: no *.jsonl objects under"),
    (["uppercase", "--env", "dev", *_io("costly"), "--max-cost", "0.001"], "--max-cost: "),
    (["nosuchjob", "--env", "dev", *_io("costly")], "JOB: unknown job"),
    (["uppercase", "--env", "qa", *_io("costly")], "--env: unknown environment"),
    (["uppercase", "--env", "dev", "--input", "gs://Bad_Bucket/x/", "--output",
      f"gs://{BUCKET}/jobs/out/costly/"], "--input: "),
    (["uppercase", "--env", "dev", *_io("costly"), "--parallelism", "0"], "--parallelism"),
])
def test_bad_input_exits_2_and_creates_nothing(local: Backend, args: list[str],
                                               message: str) -> None:
    local.upload("jobs/in/costly/", 2)
    local.upload("jobs/in/empty/", 0, extra={"only.csv": "a,b\n"})
    before = len(local.jobs())
    proc = local.submit(*args, "--local")
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert len(local.jobs()) == before
    assert local.objects("jobs/out/costly/") == {} and local.objects("jobs/out/empty/") == {}


def test_a_run_without_client_runs_as_the_adhoc_identity_in_jobs(local: Backend) -> None:
    files = local.upload("jobs/in/adhoc/", 3)
    proc = local.submit("uppercase", "--env", "dev", *_io("adhoc"), "--local", "--wait",
                        "--json", "--poll", "0.3")
    assert proc.returncode == 0, proc.stderr
    job = next(j for j in local.jobs() if j.name.endswith(json.loads(proc.stdout)["job_id"]))
    assert job.allocation_policy.service_account.email == (
        "batch-adhoc@example-ml-dev.iam.gserviceaccount.com")
    assert _outputs(local, "adhoc") == expected_outputs(files)
    # Outside jobs/ an ad-hoc run is refused before anything is created.
    bad = local.submit("uppercase", "--env", "dev", "--input", f"gs://{BUCKET}/in/x/",
                       "--output", f"gs://{BUCKET}/jobs/out/x/", "--local")
    assert bad.returncode == 2 and "--input: " in bad.stderr and "jobs/" in bad.stderr


def test_a_run_whose_identity_lacks_a_permission_fails_like_batch(local: Backend) -> None:
    """The stack loses run-acme's write grant: the tasks' uploads get 403, the job FAILS, and
    the runner's log (shown by the failure summary) names the denied permission."""
    from local.iam_launcher import reload_iam

    stack = local.synth / "stacks" / "platform-dev" / "cdk.tf.json"
    pristine = stack.read_text()
    doc = json.loads(pristine)
    edit_policies(doc, "google_storage_bucket_iam_policy", "clients-bucket-policy",
                  lambda client, bindings: [b for b in bindings
                                            if b.title != "acme-run-writes-outputs"])
    assert "acme-run-writes-outputs" in pristine and "acme-run-writes-outputs" not in json.dumps(
        doc)
    local.upload("inputs/uppercase/denied/", 2, bucket_name=ACME)
    try:
        stack.write_text(json.dumps(doc))
        reload_iam(local.endpoints.gcs_endpoint)  # the IAM layer enforces it now
        proc = local.submit("uppercase", "--env", "dev", *_acme_io("denied"), "--local",
                            "--wait", "--json", "--poll", "0.3")
    finally:
        stack.write_text(pristine)
        reload_iam(local.endpoints.gcs_endpoint)
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert result["state"] == "FAILED"
    logs = local.submit("logs", result["job_id"], "--local")
    assert "storage.objects.create" in logs.stdout, logs.stdout[-2000:]
    assert "run-acme@example-ml-dev.iam.gserviceaccount.com" in logs.stdout
