"""Runs one job's tasks the way Google Batch would, on this machine.

One task group; `taskCount` tasks (or one per `taskEnvironments` entry), `parallelism` at a
time; each attempt runs the runnables in order in a fresh process group so a timeout, a
cancellation or an injected preemption kills everything the task started.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from google.cloud.batch_v1 import Runnable, StatusEvent, TaskSpec

from local.capacity import CapacityConfig, job_placement, stockout_event
from local.identity import DEFAULT_COMPUTE_EMAIL, token_for
from local.state import JobRecord, JobState, Store, TaskState, now
from local.task_process import (
    AttemptProcesses,
    TaskSetupError,
    docker_available,
    note,
    resolve_environment,
    runnable_command,
    should_retry,
)
from local.vm_faults import FaultConfig

# FaultConfig and docker_available are part of this module's interface (the Batch server and
# the tests import them from here).
__all__ = ["FaultConfig", "JobRunner", "ServerConfig", "docker_available"]

EXIT_TIMEOUT = 50005  # task exceeded maxRunDuration

# Variables a task inherits from the server; everything else comes from the job, as on a VM.
_INHERITED_ENV = ("HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "TZ", "SSL_CERT_FILE")


@dataclass
class ServerConfig:
    root: Path  # the backend root (.local)
    repo_root: Path  # where images/<name>/local.json live
    gcs_endpoint: str
    faults: FaultConfig = field(default_factory=FaultConfig)
    max_parallelism: int = 16  # a laptop is not a fleet: cap concurrent tasks per job
    capacity: CapacityConfig = field(default_factory=CapacityConfig)  # local/capacity.py
    # LOCAL_BATCH_SCHEDULE_DELAY_S: how long a job stays SCHEDULED before its tasks start,
    # the stand-in for Batch provisioning VMs (minutes on Google Cloud; 0 locally by default).
    schedule_delay_s: float = 0.0


class JobRunner:
    """Executes one job in a background thread; `cancel()` stops it."""

    def __init__(self, store: Store, rec: JobRecord, config: ServerConfig) -> None:
        self.store = store
        self.rec = rec
        self.config = config
        self.spec: TaskSpec = rec.job.task_groups[0].task_spec
        group = rec.job.task_groups[0]
        self.task_envs: list[dict[str, str]] = [dict(e.variables) for e in group.task_environments]
        self.parallelism = max(1, min(int(group.parallelism), config.max_parallelism))
        self.faults = FaultConfig.from_env(dict(self.spec.environment.variables), config.faults)
        self.stopping = threading.Event()
        self.stop_reason = ""
        self.stop_state: int = JobState.CANCELLED
        self.failed = threading.Event()
        self._attempts: dict[int, AttemptProcesses] = {}
        self._attempts_lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name=f"job-{rec.job_id}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def cancel(self, reason: str, final: int = JobState.CANCELLED) -> None:
        """Kill every running attempt; the job ends in `final` (CANCELLED or FAILED)."""
        self.stop_reason, self.stop_state = reason, final
        self.stopping.set()
        with self._attempts_lock:
            attempts = list(self._attempts.values())
        for a in attempts:
            a.kill()

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)

    # ---- job -----------------------------------------------------------------------------
    def _run(self) -> None:
        store, rec = self.store, self.rec
        try:
            if self.stopping.is_set() or not self._await_capacity():
                return self._finish()
            store.set_job_state(rec, JobState.SCHEDULED)
            if self.stopping.wait(self.config.schedule_delay_s):
                return self._finish()  # cancelled before any VM came up
            with ThreadPoolExecutor(
                max_workers=self.parallelism, thread_name_prefix=f"{rec.job_id}-task"
            ) as pool:
                for index in range(len(rec.tasks)):
                    pool.submit(self._guarded_task, index)
            self._finish()
        except Exception as e:  # never leave a job RUNNING because of a bug here
            with store.lock:
                store.fail_in_flight(rec, f"local backend error: {e!r}")

    def _await_capacity(self) -> bool:
        """Stay QUEUED until the simulated capacity has a VM (local/capacity.py); False when
        the job was stopped first. A job with no VM gets a capacity status event."""
        region, model, gpus = job_placement(self.rec.job, self.rec.job.name.split("/")[3])
        wait, why = self.config.capacity.admission(region, model, gpus)
        vms = self.config.capacity.max_vms(region, model, gpus)
        if vms is not None:
            self.parallelism = max(1, min(self.parallelism, vms))
        if wait == 0:
            return True
        if wait is None and self.config.capacity.fails(region, model):
            # Batch fails the job when its VMs cannot be created: the event is the reason.
            self.stop_reason, self.stop_state = stockout_event(region, why), JobState.FAILED
            self.stopping.set()
            return False
        with self.store.lock:
            self.rec.job.status.status_events.append(StatusEvent(
                type_="RESOURCE_ALLOCATION", description=stockout_event(region, why),
                event_time=now()))
            self.store.save(self.rec)
        return not self.stopping.wait(wait)  # wait None: until cancelled

    def _finish(self) -> None:
        store, rec = self.store, self.rec
        with store.lock:
            for i, task in enumerate(rec.tasks):
                if task.status.state == TaskState.PENDING:
                    why = self.stop_reason or "an earlier task failed"
                    store.set_task_state(rec, i, TaskState.UNEXECUTED, why, save=False)
            if self.stopping.is_set() and self.stop_state == JobState.FAILED:
                store.fail_in_flight(rec, self.stop_reason)
            elif self.stopping.is_set():
                store.set_job_state(rec, self.stop_state, self.stop_reason)
            elif all(t.status.state == TaskState.SUCCEEDED for t in rec.tasks):
                store.set_job_state(rec, JobState.SUCCEEDED)
            else:
                failed = [i for i, t in enumerate(rec.tasks) if t.status.state == TaskState.FAILED]
                store.set_job_state(rec, JobState.FAILED, f"task(s) {failed[:10]} failed")

    def _guarded_task(self, index: int) -> None:
        try:
            self._run_task(index)
        except Exception as e:
            self.store.set_task_state(self.rec, index, TaskState.FAILED, f"local backend: {e!r}")
            self.failed.set()

    # ---- task ----------------------------------------------------------------------------
    def _run_task(self, index: int) -> None:
        store, rec = self.store, self.rec
        max_retries = int(self.spec.max_retry_count)
        while True:
            # Batch stops starting tasks once one has failed the job.
            if self.stopping.is_set() or self.failed.is_set():
                return
            with store.lock:
                attempt = rec.attempts[index]
                rec.attempts[index] = attempt + 1
                if rec.job.status.state == JobState.SCHEDULED:
                    store.set_job_state(rec, JobState.RUNNING)
                store.set_task_state(rec, index, TaskState.ASSIGNED, save=False)
                store.set_task_state(rec, index, TaskState.RUNNING, f"attempt {attempt}")
            try:
                code, detail = self._run_attempt(index, attempt)
            except TaskSetupError as e:
                log_path = store.log_path(rec.job_id, index, attempt)
                log_path.parent.mkdir(parents=True, exist_ok=True)
                with log_path.open("ab") as log:
                    note(log, f"task failed before it started: {e}")
                store.set_task_state(rec, index, TaskState.FAILED, str(e))
                self.failed.set()
                return
            if self.stopping.is_set():  # killed by us: its exit code means nothing
                store.set_task_state(rec, index, TaskState.FAILED, self.stop_reason)
                return
            if code == 0:
                store.set_task_state(rec, index, TaskState.SUCCEEDED, detail, 0)
                return
            if should_retry(code, attempt, max_retries, list(self.spec.lifecycle_policies)):
                store.set_task_state(
                    rec, index, TaskState.PENDING,
                    f"{detail} Retrying: retry {attempt + 1} of {max_retries}.".strip(), code,
                )  # fmt: skip
                continue
            store.set_task_state(rec, index, TaskState.FAILED, detail, code)
            self.failed.set()
            return

    def _environment(self, index: int, attempt: int) -> dict[str, str]:
        env = {k: os.environ[k] for k in _INHERITED_ENV if k in os.environ}
        # The venv's bin first, so `python` in a script is the interpreter the backend uses.
        env["PATH"] = os.pathsep.join(
            [str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")]
        )
        env.update(resolve_environment(self.spec.environment, self.config.root))
        if self.task_envs:
            env.update(self.task_envs[index])
        env.update(
            BATCH_TASK_INDEX=str(index),
            BATCH_TASK_COUNT=str(len(self.rec.tasks)),
            BATCH_TASK_RETRY_ATTEMPT=str(attempt),
            BATCH_JOB_ID=self.rec.job_id,
            BATCH_JOB_UID=str(self.rec.job.uid),
            STORAGE_EMULATOR_HOST=self.config.gcs_endpoint,
            # The job's identity, as a VM's metadata server would hand it to the task.
            GPUB_LOCAL_TOKEN=token_for(self.identity),
        )
        return env

    @property
    def identity(self) -> str:
        """allocationPolicy.serviceAccount.email; Batch's default is the Compute Engine
        default service account (https://cloud.google.com/batch/docs/create-run-job-custom-service-account)."""
        email = str(self.rec.job.allocation_policy.service_account.email or "")
        return email or DEFAULT_COMPUTE_EMAIL

    def _run_attempt(self, index: int, attempt: int) -> tuple[int, str]:
        """Run the runnables of one attempt. Returns (exit code, detail for the event)."""
        env = self._environment(index, attempt)
        log_path = self.store.log_path(self.rec.job_id, index, attempt)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        workdir = log_path.parent / "workdir"
        workdir.mkdir(exist_ok=True)
        max_run = self.spec.max_run_duration
        start = time.monotonic()
        deadline = start + max_run.total_seconds() if max_run else None
        preempt_at = self.faults.preempt_after(str(self.rec.job.uid), index, attempt)
        preempt_deadline = start + preempt_at if preempt_at is not None else None
        handle = AttemptProcesses(log_path.with_suffix(".pids"))
        with self._attempts_lock:
            self._attempts[index] = handle
        code, detail = 0, ""
        with log_path.open("ab", buffering=0) as log:
            try:
                background: list[subprocess.Popen[bytes]] = []
                for n, runnable in enumerate(self.spec.runnables):
                    if code != 0 and not runnable.always_run:
                        continue
                    if runnable.barrier:
                        continue  # one VM: every barrier is already reached
                    proc = self._spawn(runnable, n, env, index, attempt, workdir, log, handle)
                    if runnable.background:
                        background.append(proc)
                        continue
                    rdeadline = deadline
                    if runnable.timeout:
                        t = time.monotonic() + runnable.timeout.total_seconds()
                        rdeadline = t if rdeadline is None else min(rdeadline, t)
                    outcome = self._wait(proc, rdeadline, preempt_deadline)
                    if outcome == "preempted":
                        return self._preempted(handle, log, preempt_at, index, attempt)
                    if outcome == "timeout":
                        handle.kill()
                        limit = max_run.total_seconds() if max_run else 0
                        detail = f"Task exceeded its maximum run duration ({limit:g}s)."
                        note(log, f"killed: {detail} exit code {EXIT_TIMEOUT}")
                        return EXIT_TIMEOUT, detail
                    if outcome == "stopped":
                        handle.kill()
                        return 1, self.stop_reason
                    # Killed by a signal: report it as a shell would (SIGKILL -> 137).
                    rc = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
                    if rc != 0 and not runnable.ignore_exit_status and code == 0:
                        code, detail = rc, f"Runnable {n} exited with {rc}."
                if preempt_deadline is not None:
                    # The VM vanished before Batch recorded the result: the work may be done,
                    # but the attempt counts as preempted and retried (idempotency matters).
                    return self._preempted(handle, log, preempt_at, index, attempt)
                return code, detail
            finally:
                handle.kill()  # background runnables and any stray children end with the task
                handle.pid_file.unlink(missing_ok=True)
                with self._attempts_lock:
                    self._attempts.pop(index, None)

    def _preempted(self, handle: AttemptProcesses, log: IO[bytes], after: float | None, index: int,
                   attempt: int) -> tuple[int, str]:
        handle.kill()
        code = self.faults.code_for(str(self.rec.job.uid), index, attempt)
        detail = f"Injected loss of the VM after {after or 0:.2f}s (LOCAL_BATCH_PREEMPT_RATE)."
        note(log, f"killed: {detail} exit code {code}")
        return code, detail

    def _wait(
        self, proc: subprocess.Popen[bytes], deadline: float | None, preempt: float | None
    ) -> str:
        while True:
            now = time.monotonic()
            if preempt is not None and now >= preempt:
                return "preempted"
            if deadline is not None and now >= deadline:
                return "timeout"
            if self.stopping.is_set():
                return "stopped"
            nxt = min(x for x in (deadline, preempt, now + 0.1) if x is not None)
            try:
                proc.wait(timeout=max(0.0, nxt - now))
                return "exited"
            except subprocess.TimeoutExpired:
                continue

    def _spawn(
        self,
        runnable: Runnable,
        n: int,
        env: dict[str, str],
        index: int,
        attempt: int,
        workdir: Path,
        log: IO[bytes],
        handle: AttemptProcesses,
    ) -> subprocess.Popen[bytes]:
        env = {**env, **resolve_environment(runnable.environment, self.config.root)}
        name = f"gpub-{self.rec.job_id}-{index}-{attempt}-{n}"[:120]
        argv, env, container_name = runnable_command(runnable, n, env, self.config.repo_root,
                                                     name)
        proc = subprocess.Popen(
            argv,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: timeouts/preemption kill it all
        )
        handle.add(proc, container_name)
        return proc


