"""Job and task state of the local Batch server, kept in memory and mirrored on disk.

Layout under `<root>/batch/`:
  jobs/<job-id>/state.json                  the Job and Task protos (JSON) + bookkeeping
  jobs/<job-id>/tasks/<index>/attempt-<n>.log
  requests.json                             request_id -> job name + request hash
Every change is written atomically, so a server started later (or after a crash) sees the
last state; jobs that were in flight then are marked FAILED by `Store.load`.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.cloud.batch_v1 import Job, JobStatus, StatusEvent, Task, TaskExecution, TaskStatus

from local.procs import kill_orphan_groups, write_json_atomic

JobState = JobStatus.State
TaskState = TaskStatus.State

TERMINAL_JOB_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
TERMINAL_TASK_STATES = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.UNEXECUTED})
GROUP_ID = "group0"  # Batch names the only task group "group0"


def now() -> datetime:
    return datetime.now(UTC)


def _to_dict(msg: Any) -> Any:
    return json.loads(type(msg).to_json(msg, use_integers_for_enums=False))


@dataclass
class JobRecord:
    job: Job
    tasks: list[Task]
    attempts: list[int]  # attempts started per task (BATCH_TASK_RETRY_ATTEMPT of the last + 1)
    request_id: str = ""
    request_hash: str = ""
    run_started: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def job_id(self) -> str:
        return str(self.job.name).rsplit("/", 1)[-1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": _to_dict(self.job),
            "tasks": [_to_dict(t) for t in self.tasks],
            "attempts": self.attempts,
            "request_id": self.request_id,
            "request_hash": self.request_hash,
            "run_started": self.run_started.isoformat() if self.run_started else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobRecord:
        started = d.get("run_started")
        return cls(
            job=Job.from_json(json.dumps(d["job"]), ignore_unknown_fields=True),
            tasks=[Task.from_json(json.dumps(t), ignore_unknown_fields=True) for t in d["tasks"]],
            attempts=[int(a) for a in d["attempts"]],
            request_id=d.get("request_id", ""),
            request_hash=d.get("request_hash", ""),
            run_started=datetime.fromisoformat(started) if started else None,
        )


class Store:
    """All jobs of one local backend. Callers hold `lock` while reading or mutating protos."""

    def __init__(self, batch_root: Path) -> None:
        self.root = batch_root
        self.lock = threading.RLock()
        self.jobs: dict[str, JobRecord] = {}
        self.requests: dict[str, dict[str, str]] = {}

    # ---- paths -------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id

    def log_path(self, job_id: str, index: int, attempt: int) -> Path:
        return self.job_dir(job_id) / "tasks" / str(index) / f"attempt-{attempt}.log"

    # ---- persistence -------------------------------------------------------------------
    def load(self, recovery_reason: str) -> list[str]:
        """Read every job from disk; fail the ones that were in flight. Returns their ids."""
        recovered: list[str] = []
        req_path = self.root / "requests.json"
        if req_path.is_file():
            self.requests = json.loads(req_path.read_text(encoding="utf-8"))
        jobs_dir = self.root / "jobs"
        for path in sorted(jobs_dir.glob("*/state.json")) if jobs_dir.is_dir() else []:
            try:
                rec = JobRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, KeyError) as e:
                # One corrupt file must not take the whole backend down; keep it for a human.
                path.rename(path.with_suffix(".corrupt"))
                print(f"local batch: ignoring unreadable {path}: {e}", flush=True)
                continue
            state = rec.job.status.state
            if state == JobState.DELETION_IN_PROGRESS:
                self.remove(rec.job_id, rec)
                continue
            self.jobs[rec.job_id] = rec
            if state not in TERMINAL_JOB_STATES:
                pid_files = list(self.job_dir(rec.job_id).glob("tasks/*/attempt-*.pids"))
                kill_orphan_groups(pid_files, f"BATCH_JOB_UID={rec.job.uid}")
                self.fail_in_flight(rec, recovery_reason)
                recovered.append(rec.job_id)
        return recovered

    def save(self, rec: JobRecord) -> None:
        with self.lock:
            write_json_atomic(self.job_dir(rec.job_id) / "state.json", rec.to_dict())

    def add(self, rec: JobRecord) -> None:
        with self.lock:
            self.jobs[rec.job_id] = rec
            if rec.request_id:
                self.requests[rec.request_id] = {
                    "job": str(rec.job.name),
                    "hash": rec.request_hash,
                }
                write_json_atomic(self.root / "requests.json", self.requests)
            self.save(rec)

    def remove(self, job_id: str, rec: JobRecord | None = None) -> None:
        """Forget a deleted job. Its logs stay on disk, as Cloud Logging keeps them."""
        with self.lock:
            rec = rec or self.jobs.get(job_id)
            self.jobs.pop(job_id, None)
            (self.job_dir(job_id) / "state.json").unlink(missing_ok=True)
            if rec and rec.request_id and rec.request_id in self.requests:
                del self.requests[rec.request_id]
                write_json_atomic(self.root / "requests.json", self.requests)

    # ---- transitions -------------------------------------------------------------------
    def set_job_state(self, rec: JobRecord, state: int, detail: str = "") -> None:
        new = JobState(state)  # proto-plus enums type-check as int: accept either
        with self.lock:
            old = rec.job.status.state
            if old == new:
                return
            t = now()
            desc = f"Job state is set from {old.name} to {new.name} for job {rec.job.name}."
            if detail:
                desc = f"{desc[:-1]}: {detail}"
            rec.job.status.state = new
            rec.job.status.status_events.append(
                StatusEvent(type_="STATUS_CHANGED", description=desc, event_time=t)
            )
            if new == JobState.RUNNING and rec.run_started is None:
                rec.run_started = t
            if new in TERMINAL_JOB_STATES and rec.run_started is not None:
                rec.job.status.run_duration = t - rec.run_started
            rec.job.update_time = t
            self.save(rec)

    def set_task_state(
        self,
        rec: JobRecord,
        index: int,
        state: int,
        detail: str = "",
        exit_code: int | None = None,
        save: bool = True,
    ) -> None:
        """Move one task, record a Batch-like status event, and refresh the group counts."""
        new = TaskState(state)
        with self.lock:
            task = rec.tasks[index]
            old = task.status.state
            t = now()
            desc = f"Task state is updated from {old.name} to {new.name} on local"
            if exit_code is not None:
                desc += f" with exit code {exit_code}"
            desc += f". {detail}" if detail else "."
            event = StatusEvent(
                type_="STATUS_CHANGED", description=desc, event_time=t, task_state=new
            )
            if exit_code is not None:
                event.task_execution = TaskExecution(exit_code=exit_code)
            task.status.state = new
            task.status.status_events.append(event)
            self.refresh_counts(rec)
            rec.job.update_time = t
            if save:
                self.save(rec)

    def refresh_counts(self, rec: JobRecord) -> None:
        counts = Counter(t.status.state.name for t in rec.tasks)
        rec.job.status.task_groups[GROUP_ID] = JobStatus.TaskGroupStatus(counts=dict(counts))

    def fail_in_flight(self, rec: JobRecord, reason: str) -> None:
        """Terminal bookkeeping for a job whose execution is gone (restart or shutdown)."""
        with self.lock:
            for i, task in enumerate(rec.tasks):
                state = task.status.state
                if state in TERMINAL_TASK_STATES:
                    continue
                target = TaskState.UNEXECUTED if state == TaskState.PENDING else TaskState.FAILED
                self.set_task_state(rec, i, target, reason, save=False)
            self.set_job_state(rec, JobState.FAILED, reason)
