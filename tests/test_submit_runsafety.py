"""End to end on the local backend: runs that never lose data or cross tenants.

Each test reproduces one finding with `bin/submit` (a real Batch gRPC client and a real
google-cloud-storage client against fake-gcs-server) and checks what docs/submit.md promises.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._helpers.local_submit import (
    ACME,
    BUCKET,
    GLOBEX,
    REPO,
    Backend,
    expected_outputs,
    start_backend,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (REPO / "local" / "backend.py").is_file(),
                       reason="local backend (local/backend.py) not present yet"),
]
S = ("uppercase", "--env", "dev", "--local", "--client", "acme")


@pytest.fixture(scope="module")
def local(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    b = start_backend(tmp_path_factory.mktemp("runsafety"), synth_dir)
    try:
        yield b
    finally:
        b.backend.stop()


def inp(batch: str, bucket: str = ACME) -> str:
    return f"gs://{bucket}/inputs/uppercase/{batch}/"


def out(batch: str, bucket: str = ACME) -> str:
    return f"gs://{bucket}/outputs/uppercase/{batch}/"


def outputs(b: Backend, batch: str) -> dict[str, bytes]:
    return {k: v for k, v in b.objects(f"outputs/uppercase/{batch}/", ACME).items()
            if not k.startswith("_")}


def state(b: Backend, job_id: str) -> str:
    proc = b.submit("status", job_id, "--local", "--json")
    assert proc.returncode == 0, proc.stderr
    return str(json.loads(proc.stdout)["state"])


def wait_final(b: Backend, job_id: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (s := state(b, job_id)) in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return s
        time.sleep(0.3)
    raise AssertionError(f"{job_id} did not finish in {timeout}s")


def upload(b: Backend, batch: str, n: int, text: str = "hello") -> dict[str, str]:
    files = {f"f{i:03d}.jsonl": json.dumps({"id": i, "text": f"{text} {i}"}) + "\n"
             for i in range(n)}
    bucket = b.storage().bucket(ACME)
    for name, body in files.items():
        bucket.blob(f"inputs/uppercase/{batch}/{name}").upload_from_string(body)
    return files


# ---- finding 1: one active run per output location, whatever its input ---------------------

def test_overwrite_into_a_running_jobs_output_is_refused_with_exit_3(local: Backend) -> None:
    upload(local, "big50", 50)
    upload(local, "other30", 30)
    first = local.submit(*S, "-p", "1", "--input", inp("big50"), "--output", out("mix"))
    assert first.returncode == 0, first.stderr
    job_a = first.stdout.strip()
    manifest_before = local.objects("outputs/uppercase/mix/", ACME)["_manifest.jsonl"]
    jobs_before = len(local.jobs())

    second = local.submit(*S, "--overwrite", "-p", "1", "--input", inp("other30"),
                          "--output", out("mix"))
    assert second.returncode == 3, second.stderr
    assert f"job {job_a} is already running" in second.stderr
    assert "Traceback" not in second.stderr and second.stdout == ""
    assert len(local.jobs()) == jobs_before
    # Job A's manifest is untouched, so its later tasks still read its own 50 inputs.
    assert local.objects("outputs/uppercase/mix/", ACME)["_manifest.jsonl"] == manifest_before
    # A folder inside the running job's output is the same location.
    nested = local.submit(*S, "--input", inp("other30"), "--output", out("mix") + "sub/")
    assert nested.returncode == 3 and job_a in nested.stderr
    assert local.submit("cancel", job_a, "--local").returncode == 0
    wait_final(local, job_a)


# ---- finding 2: --overwrite never reports stale outputs as success -------------------------

def test_overwrite_with_new_content_recomputes_every_file(local: Backend) -> None:
    upload(local, "b1", 6, text="old")
    first = local.submit(*S, "--wait", "--json", "--poll", "0.3", "--input", inp("b1"),
                         "--output", out("daily"))
    assert first.returncode == 0, first.stderr
    new = upload(local, "b2", 6, text="new")  # same names, new content
    second = local.submit(*S, "--overwrite", "--wait", "--json", "--poll", "0.3",
                          "--input", inp("b2"), "--output", out("daily"))
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["state"] == "SUCCEEDED"
    assert json.loads(second.stdout)["job_id"] != json.loads(first.stdout)["job_id"]
    assert "--overwrite: removed" in second.stderr
    assert outputs(local, "daily") == expected_outputs(new)  # every file recomputed from b2
    record = json.loads(local.objects("outputs/uppercase/daily/", ACME)["_run.json"])
    assert record["input"] == inp("b2") and len(record["attempts"]) == 1

    # Without --overwrite, another input into a used output is refused, naming the owner.
    third = local.submit(*S, "--input", inp("b1"), "--output", out("daily"))
    assert third.returncode == 2 and "belongs to another run" in third.stderr


# ---- finding 3: a cancelled run resumes on re-run ------------------------------------------

def test_cancelled_run_resumes_with_a_new_attempt(local: Backend) -> None:
    files = upload(local, "resume40", 40)
    args = ("-p", "1", "--input", inp("resume40"), "--output", out("resume40"))
    first = local.submit(*S, *args)
    assert first.returncode == 0, first.stderr
    job_1 = first.stdout.strip()
    deadline = time.monotonic() + 60
    while not any(not k.startswith("_")  # an output: each is its input's done marker
                  for k in local.objects("outputs/uppercase/resume40/", ACME)):
        assert time.monotonic() < deadline, "no progress before the cancel"
        time.sleep(0.1)
    assert local.submit("cancel", job_1, "--local").returncode == 0
    assert wait_final(local, job_1) == "CANCELLED"

    again = local.submit(*S, *args, "--wait", "--json", "--poll", "0.3")
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["new"] is True and result["state"] == "SUCCEEDED"
    assert result["job_id"] == job_1[: -len("-1")] + "-2"  # the same run, attempt 2
    assert f"resuming the run of job {job_1} (CANCELLED)" in again.stderr
    assert outputs(local, "resume40") == expected_outputs(files)
    record = json.loads(local.objects("outputs/uppercase/resume40/", ACME)["_run.json"])
    assert record["attempts"] == [job_1, result["job_id"]]

    # Cancelling a job that already ended says so and changes nothing (exit 0).
    cancel = local.submit("cancel", job_1, "--local")
    assert cancel.returncode == 0 and "already ended (CANCELLED)" in cancel.stderr


def test_racing_overwrites_create_exactly_one_job(local: Backend) -> None:
    from concurrent.futures import ThreadPoolExecutor

    upload(local, "race-a", 4)
    upload(local, "race-b", 4, text="other")
    seed = local.submit(*S, "--wait", "--poll", "0.3", "--input", inp("race-a"),
                        "--output", out("race"))
    assert seed.returncode == 0, seed.stderr
    before = len(local.jobs())
    with ThreadPoolExecutor(2) as pool:
        procs = list(pool.map(lambda batch: local.submit(
            *S, "--overwrite", "--input", inp(batch), "--output", out("race")),
            ["race-a", "race-b"]))
    codes = sorted(p.returncode for p in procs)
    assert codes in ([0, 3], [0, 0]), [p.stderr for p in procs]
    winners = [p for p in procs if p.returncode == 0]
    for loser in (p for p in procs if p.returncode == 3):
        assert "Traceback" not in loser.stderr and loser.stdout == ""
    # [0, 0] only when the second started after the first's job had finished deciding and
    # ended; either way every created job is recorded, and one record owns the output.
    assert len(local.jobs()) == before + len(winners)
    record = json.loads(local.objects("outputs/uppercase/race/", ACME)["_run.json"])
    assert record["attempts"][-1] in {w.stdout.strip() for w in winners}
    for w in winners:
        wait_final(local, w.stdout.strip())


# ---- finding 5: --client binds both locations to that client ------------------------------

@pytest.mark.parametrize(("io", "message"), [
    (["--input", inp("b1", GLOBEX), "--output", out("stolen")],
     "--input: gs://example-ml-dev-globex/inputs/uppercase/b1/ is outside client acme's bucket"),
    (["--input", inp("b1"), "--output", out("b1", GLOBEX)], "--output: "),
    (["--input", f"gs://{BUCKET}/inputs/b1/", "--output", out("x")], "--input: "),
    (["--input", f"gs://{ACME}/inputs/embed/b1/", "--output", out("x")],
     "not a batch folder of job uppercase"),
    (["--input", "gs://example-ml-prod-acme/inputs/uppercase/b1/", "--output", out("x")],
     "belongs to environment prod, not dev"),
])
def test_client_runs_stay_inside_the_clients_bucket(local: Backend, io: list[str],
                                                    message: str) -> None:
    before = len(local.jobs())
    proc = local.submit(*S, *io)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(local.jobs()) == before
