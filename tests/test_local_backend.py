"""The local Batch backend end to end: real gRPC server, real google-cloud-batch client,
real fake-gcs-server, real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import google.cloud.storage as storage
import grpc
import pytest
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import batch_v1

from local.backend import LocalBackend
from local.client import batch_client
from local.executor import FaultConfig, docker_available
from local.procs import pid_alive

pytestmark = pytest.mark.slow

PARENT = "projects/demo/locations/europe-west4"
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}

ECHOER_MAIN = '''
import os, sys
from google.auth.credentials import AnonymousCredentials
import google.cloud.storage as storage

client = storage.Client(project="local", credentials=AnonymousCredentials())
name = f"out/{os.environ['BATCH_TASK_INDEX']}.txt"
body = " ".join([os.environ["ECHO_GREETING"], os.environ["OVERRIDE_ME"], *sys.argv[1:]])
client.bucket(os.environ["OUT_BUCKET"]).blob(name).upload_from_string(body)
print("wrote", name, "python", sys.executable)
'''


@pytest.fixture(scope="module")
def repo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway repository with one image, `echoer`, runnable through local.json."""
    root = tmp_path_factory.mktemp("repo")
    image = root / "images" / "echoer"
    (image / "src").mkdir(parents=True)
    (image / "src" / "echoer_main.py").write_text(ECHOER_MAIN)
    (image / "local.json").write_text(
        json.dumps(
            {
                "entrypoint": ["python", "-m", "echoer_main"],
                "env": {"ECHO_GREETING": "hello", "OVERRIDE_ME": "from-image"},
                "pythonpath": ["images/echoer/src"],
            }
        )
    )
    return root


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Iterator[LocalBackend]:
    b = LocalBackend(tmp_path_factory.mktemp("local"), repo_root=repo_root)
    try:
        yield b
    finally:
        b.stop(timeout=5)


@pytest.fixture(scope="module")
def client(backend: LocalBackend) -> batch_v1.BatchServiceClient:
    return batch_client(backend.ensure_running().batch_target)


def _job(script: str = "true", **group: Any) -> batch_v1.Job:
    spec = group.pop("spec", {})
    spec.setdefault("runnables", [{"script": {"text": script}}])
    return batch_v1.Job.from_json(json.dumps({"taskGroups": [{"taskSpec": spec, **group}]}))


def _wait(client: batch_v1.BatchServiceClient, name: str, timeout: float = 30) -> batch_v1.Job:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get_job(name=name)
        if job.status.state.name in TERMINAL or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def _tasks(client: batch_v1.BatchServiceClient, job: batch_v1.Job) -> list[batch_v1.Task]:
    return list(client.list_tasks(parent=f"{job.name}/taskGroups/group0"))


def _exit_codes(task: batch_v1.Task) -> list[int]:
    # Presence, not truthiness: a success event carries an (empty) exit code 0.
    return [e.task_execution.exit_code for e in task.status.status_events if "task_execution" in e]


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def test_script_job_runs_tasks_with_batch_env(
    client: batch_v1.BatchServiceClient, backend: LocalBackend, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    job = _job(
        f'env > "{out}/$BATCH_TASK_INDEX.env"',
        taskCount="3",
        spec={"environment": {"variables": {"GREETING": "hi"}}},
    )
    created = client.create_job(parent=PARENT, job=job, job_id=f"env-{_uid()}")
    assert created.status.state.name in ("QUEUED", "SCHEDULED", "RUNNING")
    assert created.uid and created.create_time
    assert created.task_groups[0].name == f"{created.name}/taskGroups/group0"
    done = _wait(client, created.name)
    assert done.status.state.name == "SUCCEEDED"
    assert dict(done.status.task_groups["group0"].counts) == {"SUCCEEDED": 3}
    states = [e.description.split(" to ")[1].split(" ")[0] for e in done.status.status_events]
    assert states == ["SCHEDULED", "RUNNING", "SUCCEEDED"]
    ep = backend.ensure_running()
    for i in range(3):
        lines = (out / f"{i}.env").read_text().splitlines()
        env = dict(line.split("=", 1) for line in lines if "=" in line)
        assert env["BATCH_TASK_INDEX"] == str(i)
        assert env["BATCH_TASK_COUNT"] == "3"
        assert env["BATCH_TASK_RETRY_ATTEMPT"] == "0"
        assert env["BATCH_JOB_ID"] == created.name.rsplit("/", 1)[1]
        assert env["GREETING"] == "hi"
        assert env["STORAGE_EMULATOR_HOST"] == ep.gcs_endpoint
    logs = backend.task_log_paths(created.name.rsplit("/", 1)[1])
    assert [(p.parent.name, p.name) for p in logs] == [(str(i), "attempt-0.log") for i in range(3)]


def test_get_list_jobs_and_tasks(client: batch_v1.BatchServiceClient) -> None:
    job = _job("echo task $BATCH_TASK_INDEX", taskCount="2")
    job.labels = {"job": "lister", "env": "dev"}
    jid = f"list-{_uid()}"
    created = client.create_job(parent=PARENT, job=job, job_id=jid)
    _wait(client, created.name)
    got = client.get_job(name=created.name)
    assert got.name == f"{PARENT}/jobs/{jid}" and got.labels["job"] == "lister"

    names = [j.name for j in client.list_jobs(parent=PARENT)]
    assert created.name in names
    filtered = list(
        client.list_jobs(
            request=batch_v1.ListJobsRequest(parent=PARENT, filter='labels.job="lister"')
        )
    )
    assert [j.name for j in filtered] == [created.name]
    assert not list(client.list_jobs(parent="projects/other/locations/europe-west4"))
    # Paging: the client's pager follows next_page_token.
    request = batch_v1.ListJobsRequest(parent=PARENT, page_size=1)
    assert len(list(client.list_jobs(request=request))) == len(names)

    tasks = _tasks(client, created)
    assert [t.name.rsplit("/", 1)[1] for t in tasks] == ["0", "1"]
    assert all(t.status.state.name == "SUCCEEDED" for t in tasks)
    task = client.get_task(name=tasks[1].name)
    assert _exit_codes(task) == [0]
    failed = list(
        client.list_tasks(
            request=batch_v1.ListTasksRequest(parent=tasks[0].name.rsplit("/tasks/", 1)[0],
                                              filter="State=FAILED")
        )
    )
    assert failed == []

    with pytest.raises(gexc.NotFound):
        client.get_job(name=f"{PARENT}/jobs/no-such-job")
    with pytest.raises(gexc.NotFound):
        client.get_task(name=f"{created.name}/taskGroups/group0/tasks/7")


def test_request_id_and_job_id_rules(client: batch_v1.BatchServiceClient) -> None:
    request_id = str(uuid.uuid4())
    jid = f"idem-{_uid()}"

    def create(job: batch_v1.Job, job_id: str, request_id: str = "") -> batch_v1.Job:
        # request_id is not a flattened argument of create_job: pass the whole request.
        request = batch_v1.CreateJobRequest(
            parent=PARENT, job=job, job_id=job_id, request_id=request_id
        )
        return client.create_job(request=request)

    first = create(_job(), jid, request_id)
    again = create(_job(), jid, request_id)
    assert again.uid == first.uid  # the retried create returned the same job
    assert sum(j.name == first.name for j in client.list_jobs(parent=PARENT)) == 1

    with pytest.raises(gexc.InvalidArgument, match="different request"):
        create(_job("false"), jid, request_id)
    with pytest.raises(gexc.AlreadyExists):
        client.create_job(parent=PARENT, job=_job(), job_id=jid)
    for bad in ("Upper", "1abc", "ends-", "a" * 64, "under_score"):
        with pytest.raises(gexc.InvalidArgument, match="job_id"):
            client.create_job(parent=PARENT, job=_job(), job_id=bad)
    with pytest.raises(gexc.InvalidArgument, match="UUID"):
        create(_job(), f"r-{_uid()}", "abc")
    with pytest.raises(gexc.InvalidArgument, match="runnables"):
        client.create_job(parent=PARENT, job=_job(spec={"runnables": []}), job_id=f"e-{_uid()}")
    # "a" alone and a 63-character id are valid.
    assert client.create_job(parent=PARENT, job=_job(), job_id="a" + _uid()[:1] * 62).name


def test_max_run_duration_kills_with_50005(client: batch_v1.BatchServiceClient) -> None:
    job = _job("sleep 30", spec={"maxRunDuration": "1s"})
    created = client.create_job(parent=PARENT, job=job, job_id=f"slow-{_uid()}")
    done = _wait(client, created.name, timeout=15)
    assert done.status.state.name == "FAILED"
    (task,) = _tasks(client, done)
    assert task.status.state.name == "FAILED"
    assert _exit_codes(task) == [50005]
    assert "maximum run duration" in task.status.status_events[-1].description


def test_preemption_is_retried_by_lifecycle_policy(
    client: batch_v1.BatchServiceClient, backend: LocalBackend
) -> None:
    # Deterministic: every first attempt is preempted, retries are not.
    env = {
        "LOCAL_BATCH_PREEMPT_RATE": "1.0",
        "LOCAL_BATCH_PREEMPT_ATTEMPTS": "1",
        "LOCAL_BATCH_PREEMPT_MAX_DELAY_S": "0.3",
        "LOCAL_BATCH_SEED": "7",
    }
    job = _job(
        "echo attempt $BATCH_TASK_RETRY_ATTEMPT; sleep 0.5",
        taskCount="2",
        spec={
            "maxRetryCount": 2,
            "lifecyclePolicies": [
                {"action": "RETRY_TASK", "actionCondition": {"exitCodes": [50001]}}
            ],
            "environment": {"variables": env},
        },
    )
    jid = f"preempt-{_uid()}"
    done = _wait(client, client.create_job(parent=PARENT, job=job, job_id=jid).name)
    assert done.status.state.name == "SUCCEEDED"
    for task in _tasks(client, done):
        assert _exit_codes(task) == [50001, 0]
        retry = [e for e in task.status.status_events if e.task_state.name == "PENDING"]
        assert len(retry) == 1 and "retry 1 of 2" in retry[0].description
    logs = backend.task_log_paths(jid)
    assert [p.name for p in logs] == ["attempt-0.log", "attempt-1.log"] * 2
    assert "exit code 50001" in logs[0].read_text()
    assert "attempt 1" in logs[1].read_text()


def test_fail_task_policy_and_default_retry(client: batch_v1.BatchServiceClient) -> None:
    fail_fast = _job(
        "exit 7",
        spec={
            "maxRetryCount": 3,
            "lifecyclePolicies": [{"action": "FAIL_TASK", "actionCondition": {"exitCodes": [7]}}],
        },
    )
    # Without a matching policy any non-zero exit is retried while retries remain.
    flaky = _job('[ "$BATCH_TASK_RETRY_ATTEMPT" -ge 1 ] || exit 3', spec={"maxRetryCount": 1})
    a = client.create_job(parent=PARENT, job=fail_fast, job_id=f"ff-{_uid()}")
    b = client.create_job(parent=PARENT, job=flaky, job_id=f"flaky-{_uid()}")
    a_done, b_done = _wait(client, a.name), _wait(client, b.name)
    assert a_done.status.state.name == "FAILED"
    assert _exit_codes(_tasks(client, a_done)[0]) == [7]
    assert b_done.status.state.name == "SUCCEEDED"
    assert _exit_codes(_tasks(client, b_done)[0]) == [3, 0]


def test_parallelism_and_task_environments(
    client: batch_v1.BatchServiceClient, tmp_path: Path
) -> None:
    script = f'date +%s.%N > "{tmp_path}/$BATCH_TASK_INDEX.start"; echo "$COLOR" > ' \
        f'"{tmp_path}/$BATCH_TASK_INDEX.color"; sleep 0.4; date +%s.%N > "{tmp_path}/$BATCH_TASK_INDEX.end"'  # noqa: E501
    colors = ["red", "green", "blue", "cyan"]
    job = _job(
        script,
        taskCount="99",  # taskEnvironments overrides taskCount
        parallelism="2",
        taskEnvironments=[{"variables": {"COLOR": c}} for c in colors],
    )
    done = _wait(client, client.create_job(parent=PARENT, job=job, job_id=f"par-{_uid()}").name)
    assert done.status.state.name == "SUCCEEDED"
    assert done.task_groups[0].task_count == 4
    spans = []
    for i, color in enumerate(colors):
        assert (tmp_path / f"{i}.color").read_text().strip() == color
        spans.append((float((tmp_path / f"{i}.start").read_text()),
                      float((tmp_path / f"{i}.end").read_text())))
    for start, _ in spans:
        assert sum(s <= start < e for s, e in spans) <= 2  # never more than 2 at once


def test_secrets_from_secrets_json(
    client: batch_v1.BatchServiceClient, backend: LocalBackend, tmp_path: Path
) -> None:
    version = "projects/demo/secrets/job-key/versions/latest"
    (backend.root / "secrets.json").write_text(json.dumps({version: "s3cr3t"}))
    spec = {"environment": {"secretVariables": {"BATCH_JOB_KEY": version}}}
    ok = _job(f'echo "$BATCH_JOB_KEY" > "{tmp_path}/key"', spec=spec)
    done = _wait(client, client.create_job(parent=PARENT, job=ok, job_id=f"sec-{_uid()}").name)
    assert done.status.state.name == "SUCCEEDED"
    assert (tmp_path / "key").read_text().strip() == "s3cr3t"
    assert "s3cr3t" not in json.dumps(batch_v1.Job.to_dict(done))

    missing = {"environment": {"secretVariables": {"K": "projects/demo/secrets/nope/versions/1"}}}
    jid = f"nosec-{_uid()}"
    bad = _wait(client, client.create_job(parent=PARENT, job=_job(spec=missing), job_id=jid).name)
    assert bad.status.state.name == "FAILED"
    (task,) = _tasks(client, bad)
    assert "projects/demo/secrets/nope/versions/1 is not in" in task.status.status_events[-1].description  # noqa: E501
    assert "secrets.json" in backend.task_log_paths(jid)[0].read_text()


def test_container_runnable_from_local_json(
    client: batch_v1.BatchServiceClient, backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    ep = backend.ensure_running()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", ep.gcs_endpoint)
    gcs = storage.Client(project="local", credentials=AnonymousCredentials())
    bucket = gcs.create_bucket(f"out-{_uid()}")
    image = "europe-west4-docker.pkg.dev/demo/batch-images/echoer:v1"
    job = _job(
        taskCount="2",
        spec={
            "runnables": [{"container": {"imageUri": image, "commands": ["a", "b"]}}],
            "environment": {"variables": {"OUT_BUCKET": bucket.name, "OVERRIDE_ME": "job"}},
        },
    )
    jid = f"ctr-{_uid()}"
    done = _wait(client, client.create_job(parent=PARENT, job=job, job_id=jid).name)
    assert done.status.state.name == "SUCCEEDED", backend.task_log_paths(jid)[0].read_text()
    assert bucket.blob("out/1.txt").download_as_bytes() == b"hello job a b"
    assert ".venv" in backend.task_log_paths(jid)[0].read_text() or "python" in (
        backend.task_log_paths(jid)[0].read_text()
    )

    digest = "europe-west4-docker.pkg.dev/demo/batch-images/echoer@sha256:" + "0" * 64
    job.task_groups[0].task_spec.runnables[0].container.image_uri = digest
    done = _wait(client, client.create_job(parent=PARENT, job=job, job_id=f"dig-{_uid()}").name)
    assert done.status.state.name == "SUCCEEDED"


@pytest.mark.skipif(docker_available(), reason="a Docker daemon answers here")
def test_unknown_image_without_docker_fails_clearly(client: batch_v1.BatchServiceClient) -> None:
    job = _job(spec={"runnables": [{"container": {"imageUri": "docker.io/library/nope:1"}}]})
    done = _wait(client, client.create_job(parent=PARENT, job=job, job_id=f"img-{_uid()}").name)
    assert done.status.state.name == "FAILED"
    desc = _tasks(client, done)[0].status.status_events[-1].description
    assert "local.json" in desc and "docker info" in desc


def test_cancel_and_delete_kill_running_tasks(
    client: batch_v1.BatchServiceClient, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    job = _job(f'sleep 60 & echo $! > "{pid_file}"; wait')
    created = client.create_job(parent=PARENT, job=job, job_id=f"cancel-{_uid()}")
    _wait_for(lambda: pid_file.is_file() and pid_file.read_text().strip() != "")
    child = int(pid_file.read_text())
    assert pid_alive(child)
    client.cancel_job(name=created.name).result(timeout=30)
    cancelled = client.get_job(name=created.name)
    assert cancelled.status.state.name == "CANCELLED"
    _wait_for(lambda: not pid_alive(child))  # the whole process group went, not just bash
    with pytest.raises(gexc.FailedPrecondition):
        client.cancel_job(name=created.name).result(timeout=30)

    pid_file.unlink()
    running = client.create_job(parent=PARENT, job=job, job_id=f"del-{_uid()}")
    _wait_for(lambda: pid_file.is_file() and pid_file.read_text().strip() != "")
    child = int(pid_file.read_text())
    client.delete_job(name=running.name).result(timeout=30)
    with pytest.raises(gexc.NotFound):
        client.get_job(name=running.name)
    _wait_for(lambda: not pid_alive(child))
    with pytest.raises(gexc.NotFound):
        client.delete_job(name=running.name)


def test_state_survives_restart(tmp_path: Path, repo_root: Path) -> None:
    backend = LocalBackend(tmp_path / "local", repo_root=repo_root)
    try:
        ep = backend.ensure_running()
        client = batch_client(ep.batch_target)
        done = _wait(client, client.create_job(parent=PARENT, job=_job(), job_id="kept").name)
        assert done.status.state.name == "SUCCEEDED"
        inflight = client.create_job(parent=PARENT, job=_job("sleep 60"), job_id="inflight")
        _wait_for(lambda: client.get_job(name=inflight.name).status.state.name == "RUNNING")

        # Another process (here: another LocalBackend object) reuses the running servers.
        assert LocalBackend(tmp_path / "local", repo_root=repo_root).ensure_running() == ep
        backend.stop(timeout=5)
        assert not backend.status()["batch"]["running"]

        client = batch_client(backend.ensure_running().batch_target)
        kept = client.get_job(name=done.name)
        assert kept.status.state.name == "SUCCEEDED" and kept.uid == done.uid
        lost = client.get_job(name=inflight.name)
        assert lost.status.state.name == "FAILED"
        assert "stopped" in lost.status.status_events[-1].description
        assert [t.status.state.name for t in _tasks(client, lost)] == ["FAILED"]
    finally:
        backend.stop(timeout=5)


def test_restart_after_crash_fails_in_flight_jobs(tmp_path: Path, repo_root: Path) -> None:
    backend = LocalBackend(tmp_path / "local", repo_root=repo_root)
    task_pid = 0
    try:
        client = batch_client(backend.ensure_running().batch_target)
        pid_file = tmp_path / "task.pid"
        job = _job(f'echo $$ > "{pid_file}"; exec sleep 60')
        job = client.create_job(parent=PARENT, job=job, job_id="crashed")
        _wait_for(lambda: pid_file.is_file() and pid_file.read_text().strip() != "")
        task_pid = int(pid_file.read_text())
        pid = backend.status()["batch"]["pid"]
        os.kill(pid, 9)  # no clean shutdown: the next start must repair the state
        _wait_for(lambda: not pid_alive(pid))
        assert pid_alive(task_pid)  # the task lives on in its own session...
        client = batch_client(backend.ensure_running().batch_target)
        _wait_for(lambda: not pid_alive(task_pid))  # ...until the new server kills it
        after = client.get_job(name=job.name)
        assert after.status.state.name == "FAILED"
        assert "restarted" in after.status.status_events[-1].description
    finally:
        backend.stop(timeout=5)
        if task_pid and pid_alive(task_pid):
            os.kill(task_pid, 9)  # never leave an orphan, even when the test failed


def test_fault_config_is_deterministic_with_a_seed() -> None:
    faults = FaultConfig(preempt_rate=0.3, seed="42")
    draws = [faults.preempt_after("uid", i, 0) for i in range(200)]
    assert draws == [faults.preempt_after("uid", i, 0) for i in range(200)]
    assert 40 <= sum(d is not None for d in draws) <= 80
    assert all(d is None or 0 <= d <= faults.max_delay_s for d in draws)
    assert FaultConfig.from_env({"LOCAL_BATCH_PREEMPT_RATE": "0.5"}, faults).seed == "42"


def test_rpc_errors_are_grpc_status_codes(backend: LocalBackend) -> None:
    channel = grpc.insecure_channel(backend.ensure_running().batch_target)
    try:
        get = channel.unary_unary(
            "/google.cloud.batch.v1.BatchService/GetJob",
            request_serializer=batch_v1.GetJobRequest.serialize,
            response_deserializer=batch_v1.Job.deserialize,
        )
        with pytest.raises(grpc.RpcError) as err:
            get(batch_v1.GetJobRequest(name="not-a-name"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        channel.close()


def _wait_for(cond: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_cli_start_status_stop(tmp_path: Path, repo_root: Path) -> None:
    root = tmp_path / "cli"
    cmd = [sys.executable, "-m", "local"]
    args = ["--root", str(root), "--repo-root", str(repo_root)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    try:
        started = subprocess.run([*cmd, "start", *args], capture_output=True, text=True, env=env)
        assert started.returncode == 0, started.stderr
        assert "STORAGE_EMULATOR_HOST=http://127.0.0.1:" in started.stdout
        status = subprocess.run([*cmd, "status", *args], capture_output=True, text=True, env=env)
        assert status.returncode == 0 and json.loads(status.stdout)["batch"]["running"]
    finally:
        stopped = subprocess.run([*cmd, "stop", *args], capture_output=True, text=True, env=env)
    assert stopped.returncode == 0
    status = subprocess.run([*cmd, "status", *args], capture_output=True, text=True, env=env)
    assert status.returncode == 1
