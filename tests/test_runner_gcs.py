"""The runner as a process against a real fake-gcs-server: kill and resume, racing attempts,
failure budget, results callback, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from gpub_runner import Item, Result, contract

from tests._helpers.gcs_server import fake_gcs

ROOT = Path(__file__).resolve().parents[1]
PYTHONPATH = os.pathsep.join(
    str(ROOT / p) for p in (".", "images/runner/src", "images/uppercase/src"))
BUCKET = "gpub-test"
KEY = "k3y-do-not-log-0123456789"

pytestmark = pytest.mark.slow


# ---- handlers the subprocess runs (GPUB_HANDLER=tests.test_runner_gcs:...) -----------------

def slow_upper(batch: list[Item]) -> Sequence[Result]:
    """uppercase_handler, slowed down so a kill lands mid-task."""
    import uppercase_handler

    time.sleep(float(os.environ.get("TEST_SLEEP_PER_BATCH", "0")))
    return uppercase_handler.process(batch)


# ---- fixtures and helpers ----------------------------------------------------------------

@pytest.fixture(scope="module")
def gcs() -> Iterator[tuple[str, storage.Bucket]]:
    with fake_gcs() as url:
        client = storage.Client(project="test", credentials=AnonymousCredentials(),
                                client_options={"api_endpoint": url})
        yield url, client.create_bucket(BUCKET)


_counter = iter(range(10_000))


def seed(bucket: storage.Bucket, n: int, bad: Sequence[int] = ()) -> str:
    """Upload n JSON-lines inputs and a manifest; return a fresh run prefix."""
    run = f"run{next(_counter)}"
    lines = []
    for i in range(n):
        name = f"part/{i:04d}.jsonl"
        body = b"{not json" if i in bad else f'{{"id": {i}, "text": "row {i}"}}\n'.encode()
        blob = bucket.blob(f"{run}/in/{name}")
        blob.upload_from_string(body)
        lines.append(json.dumps({"name": name, "size": blob.size,
                                 "generation": str(blob.generation)}))
    bucket.blob(f"{run}/out/_manifest.jsonl").upload_from_string("\n".join(lines) + "\n")
    return run


def runner_env(url: str, run: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUB_", "BATCH_"))}
    env.update(
        STORAGE_EMULATOR_HOST=url, PYTHONPATH=PYTHONPATH,
        GPUB_MANIFEST=f"gs://{BUCKET}/{run}/out/_manifest.jsonl",
        GPUB_INPUT_PREFIX=f"gs://{BUCKET}/{run}/in/",
        GPUB_OUTPUT_PREFIX=f"gs://{BUCKET}/{run}/out/",
        GPUB_HANDLER="uppercase_handler:process", GPUB_JOB_NAME=f"job-{run}",
        BATCH_TASK_INDEX="0", BATCH_TASK_COUNT="1", GPUB_STORAGE_TIMEOUT_S="10",
    )
    env.update(extra)
    return env


def start(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "gpub_runner"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_task(env: dict[str, str], timeout: float = 60) -> tuple[int, list[dict[str, Any]], str]:
    proc = subprocess.run([sys.executable, "-m", "gpub_runner"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()], \
        proc.stdout + proc.stderr


def objects(bucket: storage.Bucket, prefix: str) -> dict[str, storage.Blob]:
    return {b.name[len(prefix):]: b for b in bucket.client.list_blobs(bucket, prefix=prefix)}


def done_rels(out: dict[str, storage.Blob]) -> set[str]:
    """Input names (relative to `in/`) that some output says it was made from."""
    return {b.metadata[contract.META_INPUT].split("/in/", 1)[1] for b in out.values()
            if b.metadata and contract.META_INPUT in b.metadata}


def outputs_of(out: dict[str, storage.Blob]) -> set[str]:
    return {k for k in out if not k.startswith("_")}


def expected(i: int) -> bytes:
    return f'{{"id": {i}, "text": "ROW {i}"}}\n'.encode()


# ---- tests -------------------------------------------------------------------------------

def test_two_tasks_split_the_manifest(gcs: tuple[str, storage.Bucket]) -> None:
    url, bucket = gcs
    run = seed(bucket, 7)
    for k in range(2):
        code, logs, _ = run_task(runner_env(url, run, BATCH_TASK_INDEX=str(k),
                                            BATCH_TASK_COUNT="2"))
        assert code == 0
        assert logs[-1]["message"] == "task finished" and logs[-1]["task"] == k
        assert logs[-1]["ok"] == [3, 4][k]
    out = objects(bucket, f"{run}/out/")
    for i in range(7):
        assert out[f"part/{i:04d}.jsonl"].download_as_bytes() == expected(i)
        assert f"part/{i:04d}.jsonl" in done_rels(out)
    assert {"_tasks/00000.json", "_tasks/00001.json"} <= set(out)


def test_sigkill_midway_then_rerun_completes_exactly_once(
        gcs: tuple[str, storage.Bucket]) -> None:
    url, bucket = gcs
    n = 40
    run = seed(bucket, n)
    env = runner_env(url, run, GPUB_HANDLER="tests.test_runner_gcs:slow_upper",
                     GPUB_BATCH_SIZE="2", GPUB_CONCURRENCY="4", TEST_SLEEP_PER_BATCH="0.15")
    proc = start(env)
    deadline = time.monotonic() + 30
    while len(outputs_of(objects(bucket, f"{run}/out/"))) < 6:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "runner made no progress"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    before = objects(bucket, f"{run}/out/")
    done_before = done_rels(before)
    outputs_before = {k: b.generation for k, b in before.items() if k.startswith("part/")}
    assert set(outputs_before) == done_before  # an output is its input's done marker
    assert 6 <= len(done_before) < n, "the kill must land mid-task"
    for name in outputs_before:  # whatever is visible is complete, never partial
        i = int(name[5:9])
        assert before[name].download_as_bytes() == expected(i)
    assert "_tasks/00000.json" not in before

    code, logs, _ = run_task(dict(env, BATCH_TASK_RETRY_ATTEMPT="1", TEST_SLEEP_PER_BATCH="0"))
    assert code == 0
    assert logs[-1]["skipped"] == len(done_before)
    after = objects(bucket, f"{run}/out/")
    assert set(after) == (
        {f"part/{i:04d}.jsonl" for i in range(n)} | {"_manifest.jsonl", "_tasks/00000.json"}
    )
    assert done_rels(after) == {f"part/{i:04d}.jsonl" for i in range(n)}
    for i in range(n):
        assert after[f"part/{i:04d}.jsonl"].download_as_bytes() == expected(i)
    # Create-once: nothing the killed attempt wrote was rewritten by the second one.
    for name, generation in outputs_before.items():
        assert after[name].generation == generation
    assert logs[-1]["outputs_created"] + logs[-1]["outputs_existing"] == n - len(done_before)


def test_two_attempts_racing_write_each_output_once(gcs: tuple[str, storage.Bucket]) -> None:
    url, bucket = gcs
    n = 30
    run = seed(bucket, n)
    # Slowed down so the two attempts overlap instead of one finding all done markers.
    env = runner_env(url, run, GPUB_HANDLER="tests.test_runner_gcs:slow_upper",
                     GPUB_BATCH_SIZE="3", GPUB_CONCURRENCY="4", TEST_SLEEP_PER_BATCH="0.05")
    procs = [start(env), start(dict(env, BATCH_TASK_RETRY_ATTEMPT="1"))]
    finals = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stdout + stderr
        finals.append(json.loads(stdout.splitlines()[-1]))
    # Every output was created by exactly one of the two attempts.
    assert sum(f["outputs_created"] for f in finals) == n
    out = objects(bucket, f"{run}/out/")
    assert len([k for k in out if k.startswith("part/")]) == n
    assert all(out[f"part/{i:04d}.jsonl"].download_as_bytes() == expected(i) for i in range(n))


def test_failure_budget_decides_exit_3_or_0(gcs: tuple[str, storage.Bucket]) -> None:
    url, bucket = gcs
    run = seed(bucket, 10, bad=[3])
    code, logs, _ = run_task(runner_env(url, run, GPUB_FAILURE_BUDGET="0"))
    assert code == 3
    assert logs[-1]["status"] == "failed" and logs[-1]["failed"] == 1
    err = json.loads(bucket.blob(f"{run}/out/_errors/part/0003.jsonl.json").download_as_bytes())
    assert "line 1: not JSON" in err["error"] and err["input"].endswith("in/part/0003.jsonl")
    summary = json.loads(bucket.blob(f"{run}/out/_tasks/00000.json").download_as_bytes())
    assert summary["exit_code"] == 3

    run = seed(bucket, 10, bad=[3])
    code, logs, _ = run_task(runner_env(url, run, GPUB_FAILURE_BUDGET="0.1"))
    assert code == 0 and logs[-1]["failed"] == 1 and logs[-1]["ok"] == 9


class _CallbackServer(HTTPServer):
    requests_seen: list[tuple[dict[str, str], dict[str, Any]]]
    fail_first: int


class _CallbackHandler(BaseHTTPRequestHandler):
    server: _CallbackServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests_seen.append((dict(self.headers), body))
        status = 503 if self.server.fail_first > 0 else 200
        self.server.fail_first -= 1
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_callback_once_from_the_last_task_with_bearer_key(
        gcs: tuple[str, storage.Bucket]) -> None:
    url, bucket = gcs
    run = seed(bucket, 6, bad=[5])
    server = _CallbackServer(("127.0.0.1", 0), _CallbackHandler)
    server.requests_seen, server.fail_first = [], 1  # first POST fails: must be retried
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cb = f"http://127.0.0.1:{server.server_port}/results?token=query-secret"
        output = ""
        for k in (1, 0):  # task 0 finishing last sends it
            code, _, text = run_task(runner_env(
                url, run, BATCH_TASK_INDEX=str(k), BATCH_TASK_COUNT="2",
                GPUB_FAILURE_BUDGET="0.5", GPUB_CALLBACK_URL=cb, BATCH_JOB_KEY=KEY,
                GPUB_CALLBACK_BACKOFF_S="0.01"))
            assert code == 0
            output += text
        # A retry of a task after the callback was sent does not send it again.
        code, _, text = run_task(runner_env(
            url, run, BATCH_TASK_INDEX="1", BATCH_TASK_COUNT="2", GPUB_CALLBACK_URL=cb,
            BATCH_JOB_KEY=KEY, BATCH_TASK_RETRY_ATTEMPT="1", GPUB_FAILURE_BUDGET="0.5"))
        assert code == 0
        output += text
    finally:
        server.shutdown()
    assert len(server.requests_seen) == 2  # one 503, then the successful retry
    headers, body = server.requests_seen[-1]
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert body["status"] == "succeeded" and body["task_count"] == 2
    assert body["files"]["ok"] == 5 and body["files"]["failed"] == 1
    assert "callback sent" in output and "callback attempt failed; retrying" in output
    assert KEY not in output
    assert "query-secret" not in output


def test_storage_unreachable_exits_4() -> None:
    code, logs, text = run_task(runner_env("http://127.0.0.1:9", "nowhere",
                                           GPUB_STORAGE_TIMEOUT_S="0.5"))
    assert code == 4, text
    assert logs[-1]["message"] == "infrastructure error"


def test_bad_configuration_exits_2(gcs: tuple[str, storage.Bucket]) -> None:
    url, _ = gcs
    code, logs, _ = run_task(runner_env(url, "x", GPUB_HANDLER=""))
    assert code == 2 and "GPUB_HANDLER" in logs[-1]["error"]
    code, logs, _ = run_task(runner_env(url, "no-such-run"))
    assert code == 2 and "manifest" in logs[-1]["error"]


# ---- a job that plans itself (issue 20 items 2, 4, 8) on real storage ----------------------

def seed_batch(bucket: storage.Bucket, n: int, extra: Sequence[str] = ()) -> str:
    run = f"run{next(_counter)}"
    for i in range(n):
        bucket.blob(f"{run}/in/part/{i:04d}.jsonl").upload_from_string(
            f'{{"id": {i}, "text": "row {i}"}}\n'.encode())
    for name in extra:
        bucket.blob(f"{run}/in/{name}").upload_from_string(b"x")
    return run


def plan_env(url: str, run: str, **extra: str) -> dict[str, str]:
    env = runner_env(url, run, GPUB_MANIFEST="", GPUB_INPUT_FORMAT="jsonl",
                     GPUB_PLAN_WAIT_S="60", GPUB_LISTING_WAIT_S="0")
    env.update(extra)
    return env


def test_the_job_plans_itself_waiting_tasks_included(gcs: tuple[str, storage.Bucket]) -> None:
    url, bucket = gcs
    run = seed_batch(bucket, 9, ["notes.txt", "_x.jsonl"])
    base = plan_env(url, run, BATCH_TASK_COUNT="2", GPUB_EXPECTED_INPUTS="11")
    waiting = start(dict(base, BATCH_TASK_INDEX="1"))  # starts before task 0 has planned
    code, logs, text = run_task(dict(base, BATCH_TASK_INDEX="0"))
    assert code == 0, text
    stdout, stderr = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, stdout + stderr
    assert logs[-1]["ok"] + json.loads(stdout.splitlines()[-1])["ok"] == 9
    out = objects(bucket, f"{run}/out/")
    assert outputs_of(out) == {f"part/{i:04d}.jsonl" for i in range(9)} == done_rels(out)
    gens = {b.metadata[contract.META_GENERATION] for k, b in out.items() if k in outputs_of(out)}
    inputs = objects(bucket, f"{run}/in/")
    assert gens == {str(inputs[f"part/{i:04d}.jsonl"].generation) for i in range(9)}
    record = json.loads(out[contract.PLAN_NAME].download_as_bytes())
    assert (record["listed"], record["accepted"], record["refused"]) == (11, 9, 2)
    assert {"_errors/notes.txt.json", "_errors/_x.jsonl.json"} <= set(out)
    # One list of the inputs, one of the outputs, a plan read, a shard and 2 per file.
    assert logs[-1]["requests"]["list"] == 2


def test_short_listing_exits_with_the_plan_code(gcs: tuple[str, storage.Bucket]) -> None:
    url, bucket = gcs
    run = seed_batch(bucket, 3)
    code, logs, text = run_task(plan_env(url, run, GPUB_EXPECTED_INPUTS="5"))
    assert code == contract.EXIT_PLAN, text
    assert logs[-1]["message"] == "the job's plan failed"
    assert "listed 3 of the 5 inputs" in logs[-1]["error"]
    record = json.loads(bucket.blob(f"{run}/out/_plan.json").download_as_bytes())
    assert record["status"] == "failed" and "listed 3 of the 5" in record["reason"]


def test_rerun_after_an_input_changed_replaces_only_its_stale_output(
        gcs: tuple[str, storage.Bucket]) -> None:
    url, bucket = gcs
    run = seed_batch(bucket, 4)
    assert run_task(plan_env(url, run, GPUB_JOB_NAME="first"))[0] == 0
    before = objects(bucket, f"{run}/out/")
    bucket.blob(f"{run}/in/part/0002.jsonl").upload_from_string(b'{"id": 2, "text": "new"}\n')
    code, logs, text = run_task(plan_env(url, run, GPUB_JOB_NAME="second"))
    assert code == 0, text
    assert logs[-1]["skipped"] == 3 and logs[-1]["ok"] == 1
    after = objects(bucket, f"{run}/out/")
    assert after["part/0002.jsonl"].download_as_bytes() == b'{"id": 2, "text": "NEW"}\n'
    for i in (0, 1, 3):  # untouched: same object generation
        assert after[f"part/{i:04d}.jsonl"].generation == before[f"part/{i:04d}.jsonl"].generation
