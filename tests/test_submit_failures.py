"""Failures that explain themselves: exit codes in words, last log lines, the next command;
readable `logs` and `logs --follow`."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from google.cloud import batch_v1

from submit import failures, logs


def _task(index: int, state: str, codes: list[int]) -> batch_v1.Task:
    events = [batch_v1.StatusEvent(type_="STATUS_CHANGED", description=f"exit {c}",
                                   task_execution=batch_v1.TaskExecution(exit_code=c))
              for c in codes]
    return batch_v1.Task(
        name=f"projects/p/locations/r/jobs/j/taskGroups/group0/tasks/{index}",
        status=batch_v1.TaskStatus(state=getattr(batch_v1.TaskStatus.State, state),
                                   status_events=events))


@pytest.mark.parametrize(("code", "category"), [
    (50001, failures.PREEMPTION),
    (50005, failures.TIMEOUT),
    (50002, failures.INFRASTRUCTURE),
    (3, failures.APPLICATION),
    (2, failures.CONFIGURATION),
    (1, failures.APPLICATION),
    (None, failures.INFRASTRUCTURE),
])
def test_exit_codes_are_put_in_words(code: int | None, category: str) -> None:
    assert failures.classify(code)[0] == category


def test_batch_reserved_codes_match_the_documented_table() -> None:
    # https://cloud.google.com/batch/docs/troubleshooting#reserved-exit-codes
    assert {c for c in failures.EXIT_CODES if c >= 50000} == set(range(50000, 50007))
    assert "preempted" in failures.EXIT_CODES[50001][1]
    assert "maxRunDuration" in failures.EXIT_CODES[50005][1]


def test_a_403_in_the_log_means_permission_denied_whatever_the_code() -> None:
    tail = ["12:00:00 ERROR upload failed error=403 POST https://storage...: Forbidden"]
    assert failures.classify(4, tail)[0] == failures.PERMISSION


def test_failed_tasks_report_the_last_attempt_and_count_attempts() -> None:
    tasks = [_task(0, "SUCCEEDED", [0]), _task(2, "FAILED", [50001, 3]),
             _task(1, "FAILED", [50005])]
    found = failures.failed_tasks(tasks, lambda i: [f"line of {i}"])
    assert [(f.index, f.exit_code, f.attempts, f.category) for f in found] == [
        (1, 50005, 1, failures.TIMEOUT), (2, 3, 2, failures.APPLICATION)]
    text = "\n".join(failures.render(found, job_id="uppercase-x", local=True))
    assert "task 1 FAILED after 1 attempt: exit code 50005 -- timeout" in text
    assert "    | line of 2" in text
    assert "bin/submit logs uppercase-x --task 2 --local" in text


def test_readable_lines_from_runner_json() -> None:
    line = json.dumps({"severity": "ERROR", "message": "file failed", "time":
                       "2026-11-30T09:00:01.250+00:00", "task_index": 0, "file": "a.jsonl"})
    assert logs.readable(logs.record(line)) == "09:00:01.250 ERROR file failed file=a.jsonl"
    assert logs.readable(logs.record("plain text")) == "plain text"


class _Backend:
    def __init__(self, root: Path) -> None:
        self.root = root

    def task_log_paths(self, job_id: str) -> list[Path]:
        return sorted((self.root / job_id).glob("*/attempt-*.log"))


def test_follow_prints_lines_as_they_are_written_until_the_job_ends(tmp_path: Path) -> None:
    log = tmp_path / "j" / "0" / "attempt-0.log"
    log.parent.mkdir(parents=True)
    log.write_text(json.dumps({"severity": "INFO", "message": "first"}) + "\n")
    finished = threading.Event()

    def writer() -> None:
        time.sleep(0.3)
        with log.open("a") as fh:
            fh.write(json.dumps({"severity": "INFO", "message": "second"}) + "\n")
            fh.write("half a li")  # completed after the job is final: still printed
        finished.set()

    threading.Thread(target=writer).start()
    got = list(logs.local_follow(_Backend(tmp_path), "j", finished.is_set, poll_s=0.05))
    assert got == ["[task 0 attempt-0] INFO first\n", "[task 0 attempt-0] INFO second\n",
                   "[task 0 attempt-0] half a li\n"]


def test_google_backend_logs_format_cloud_entries_and_tails_never_raise(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`logs` on Google goes through the Backend seam: Cloud Logging records become the same
    readable lines, raw JSON or sorted JSON as locally; a failing log read in the failure
    summary is one line, never an exception hiding the failure."""
    from submit import backend as seam
    from submit.batch import Connection

    seen: dict[str, object] = {}

    def entries(project: str, uid: str, *, limit: int, task: int | None = None,
                **_: object) -> list[dict[str, object]]:
        seen.update(project=project, uid=uid, limit=limit, task=task)
        return [logs.cloud_entry({"timestamp": "2026-11-30T09:00:01.5Z", "severity": "ERROR",
                                  "jsonPayload": {"message": "boom", "file": "a.jsonl"}})]

    monkeypatch.setattr(logs, "cloud_entries", entries)
    conn = Connection(None, "projects/proj-1/locations/europe-west4", local=False)
    job = batch_v1.Job(name="projects/proj-1/locations/europe-west4/jobs/j", uid="u-1")
    google = seam.GoogleBackend()
    assert list(google.log_lines(conn, job, limit=7, task=2)) == [
        "09:00:01.5Z ERROR boom file=a.jsonl\n"]
    assert seen == {"project": "proj-1", "uid": "u-1", "limit": 7, "task": 2}
    as_json = list(google.log_lines(conn, job, limit=7, fmt="json"))
    assert json.loads(as_json[0])["message"] == "boom"

    def broken(*_: object, **__: object) -> list[str]:
        raise RuntimeError("HTTP 403: logging.entries.list denied")

    monkeypatch.setattr(logs, "cloud_tail", broken)
    assert google.log_tail(conn, job, 0, 5) == [
        "(log unavailable: HTTP 403: logging.entries.list denied)"]


def test_hints_name_the_real_cause_and_the_right_command() -> None:
    """Issue 23: a missing image is not "transient"; a run without output has no _errors/;
    resuming is a plain re-run, --overwrite deletes."""
    pull = ["Error: manifest for europe-west4-docker.pkg.dev/p/batch-images/x:9 not found"]
    assert failures.classify(1, pull)[0] == failures.IMAGE
    image = failures.TaskFailure(0, 1, 1, failures.IMAGE, "m", pull)
    hint = failures.next_step(image, job_id="j", local=False)
    assert "image name and tag" in hint and "transient" not in hint
    app = failures.TaskFailure(1, 1, 1, failures.APPLICATION, "m")
    as_written = failures.next_step(app, job_id="j", local=False)
    assert "_errors/" not in as_written and "read the log" in as_written
    with_output = failures.next_step(app, job_id="j", local=False, output="gs://b/out/")
    assert "gs://b/out/_errors/" in with_output and "plain re-run resumes" in with_output
    for category in (failures.PREEMPTION, failures.TIMEOUT, failures.INFRASTRUCTURE):
        text = failures.next_step(failures.TaskFailure(2, 50001, 1, category, "m"), job_id="j",
                                  local=True, output="gs://b/out/")
        assert "--overwrite" not in text and "run the same command again" in text
