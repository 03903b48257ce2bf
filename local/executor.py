"""Runs one job's tasks the way Google Batch would, on this machine.

One task group; `taskCount` tasks (or one per `taskEnvironments` entry), `parallelism` at a
time; each attempt runs the runnables in order in a fresh process group so a timeout, a
cancellation or an injected preemption kills everything the task started.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from google.cloud.batch_v1 import LifecyclePolicy, Runnable, StatusEvent, TaskSpec

from local.capacity import CapacityConfig, job_placement, stockout_event
from local.identity import DEFAULT_COMPUTE_EMAIL, token_for
from local.images import find_local_image, local_command
from local.procs import kill_group
from local.state import JobRecord, JobState, Store, TaskState, now

EXIT_PREEMPTED = 50001  # Spot VM preempted
EXIT_TIMEOUT = 50005  # task exceeded maxRunDuration

# Variables a task inherits from the server; everything else comes from the job, as on a VM.
_INHERITED_ENV = ("HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "TZ", "SSL_CERT_FILE")


@dataclass(frozen=True)
class FaultConfig:
    """Injected Spot preemption. Server-wide from the environment at start, or per job from
    the task spec's environment variables with the same names."""

    preempt_rate: float = 0.0  # LOCAL_BATCH_PREEMPT_RATE: share of attempts preempted
    seed: str = ""  # LOCAL_BATCH_SEED: same seed -> same attempts preempted at same delays
    preempt_attempts: int | None = None  # LOCAL_BATCH_PREEMPT_ATTEMPTS: only retry attempts < N
    max_delay_s: float = 2.0  # LOCAL_BATCH_PREEMPT_MAX_DELAY_S: kill within [0, this] s
    # LOCAL_BATCH_PREEMPT_CODES: the reserved exit codes an injected loss of the VM reports
    # (50001 Spot preemption, 50002, 50003, 50004, 50006), one drawn per preempted attempt.
    codes: tuple[int, ...] = (EXIT_PREEMPTED,)

    @classmethod
    def from_env(cls, env: dict[str, str], base: FaultConfig | None = None) -> FaultConfig:
        base = base or cls()

        def get(name: str) -> str | None:
            value = env.get(name)
            return value.strip() if value and value.strip() else None

        rate = get("LOCAL_BATCH_PREEMPT_RATE")
        attempts = get("LOCAL_BATCH_PREEMPT_ATTEMPTS")
        delay = get("LOCAL_BATCH_PREEMPT_MAX_DELAY_S")
        codes = get("LOCAL_BATCH_PREEMPT_CODES")
        return cls(
            codes=tuple(int(c) for c in codes.split(",") if c.strip()) if codes else base.codes,
            preempt_rate=min(max(float(rate), 0.0), 1.0) if rate else base.preempt_rate,
            seed=get("LOCAL_BATCH_SEED") or base.seed,
            preempt_attempts=int(attempts) if attempts else base.preempt_attempts,
            max_delay_s=float(delay) if delay else base.max_delay_s,
        )

    def preempt_after(self, job_uid: str, index: int, attempt: int) -> float | None:
        """Seconds after which this attempt is preempted, or None. Deterministic per seed,
        whatever order the threads run in; without a seed, a fresh draw each time."""
        if self.preempt_rate <= 0:
            return None
        if self.preempt_attempts is not None and attempt >= self.preempt_attempts:
            return None
        rng = random.Random(f"{self.seed}:{job_uid}:{index}:{attempt}") if self.seed else random
        if rng.random() >= self.preempt_rate:
            return None
        return rng.uniform(0.0, self.max_delay_s)

    def code_for(self, job_uid: str, index: int, attempt: int) -> int:
        """The reserved exit code a preempted attempt reports (deterministic per seed)."""
        rng = random.Random(f"{self.seed}:{job_uid}:{index}:{attempt}:code")
        return self.codes[0] if len(self.codes) == 1 else rng.choice(self.codes)


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


class _Attempt:
    """The processes of one running attempt, so another thread can kill them all."""

    def __init__(self, pid_file: Path) -> None:
        self.lock = threading.Lock()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.containers: list[str] = []
        # Process groups on disk: a server restarted after a crash kills what we left behind.
        self.pid_file = pid_file

    def add(self, proc: subprocess.Popen[bytes], container: str | None) -> None:
        with self.lock:
            self.procs.append(proc)
            if container:
                self.containers.append(container)
            with self.pid_file.open("a") as f:
                f.write(f"{proc.pid}\n")

    def kill(self) -> None:
        with self.lock:
            procs, containers = list(self.procs), list(self.containers)
        for p in procs:
            if p.poll() is None:
                kill_group(p.pid, signal.SIGKILL)
        for name in containers:
            # `docker run` is only a client: the container must be removed on the daemon.
            subprocess.run(
                ["docker", "rm", "-f", name], capture_output=True, timeout=30, check=False
            )
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)


class TaskSetupError(Exception):
    """The task cannot start (missing secret, unknown image, no Docker): fail, don't retry."""


_docker_ok: bool | None = None


def docker_available() -> bool:
    global _docker_ok
    if _docker_ok is None:
        if shutil.which("docker") is None:
            _docker_ok = False
        else:
            try:
                r = subprocess.run(["docker", "info"], capture_output=True, timeout=10)
                _docker_ok = r.returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                _docker_ok = False
    return _docker_ok


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
        self._attempts: dict[int, _Attempt] = {}
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
                    _note(log, f"task failed before it started: {e}")
                store.set_task_state(rec, index, TaskState.FAILED, str(e))
                self.failed.set()
                return
            if self.stopping.is_set():  # killed by us: its exit code means nothing
                store.set_task_state(rec, index, TaskState.FAILED, self.stop_reason)
                return
            if code == 0:
                store.set_task_state(rec, index, TaskState.SUCCEEDED, detail, 0)
                return
            if _should_retry(code, attempt, max_retries, list(self.spec.lifecycle_policies)):
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
        env.update(self._resolve(self.spec.environment))
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

    def _resolve(self, environment: object) -> dict[str, str]:
        """Plain variables plus `secretVariables` looked up in <root>/secrets.json."""
        variables = dict(getattr(environment, "variables", {}) or {})
        secrets = dict(getattr(environment, "secret_variables", {}) or {})
        if secrets:
            path = self.config.root / "secrets.json"
            try:
                known = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
            except ValueError as e:
                raise TaskSetupError(f"{path} is not valid JSON: {e}") from e
            for name, version in secrets.items():
                if version not in known:
                    raise TaskSetupError(
                        f"secret variable {name}: {version} is not in {path} "
                        f'(add {{"{version}": "<value>"}} to it)'
                    )
                variables[name] = str(known[version])
        return variables

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
        handle = _Attempt(log_path.with_suffix(".pids"))
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
                        _note(log, f"killed: {detail} exit code {EXIT_TIMEOUT}")
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

    def _preempted(self, handle: _Attempt, log: IO[bytes], after: float | None, index: int,
                   attempt: int) -> tuple[int, str]:
        handle.kill()
        code = self.faults.code_for(str(self.rec.job.uid), index, attempt)
        detail = f"Injected loss of the VM after {after or 0:.2f}s (LOCAL_BATCH_PREEMPT_RATE)."
        _note(log, f"killed: {detail} exit code {code}")
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
        handle: _Attempt,
    ) -> subprocess.Popen[bytes]:
        env = dict(env)
        env.update(self._resolve(runnable.environment))
        container_name: str | None = None
        if runnable.script:
            script = runnable.script
            argv = ["bash", "-c", script.text] if script.text else ["bash", script.path]
        elif runnable.container:
            c = runnable.container
            image = find_local_image(c.image_uri, self.config.repo_root)
            if image is not None:
                argv = local_command(image, c.entrypoint, list(c.commands))
                merged = dict(image.env)
                merged.update(env)  # like `docker run -e`: the job's values win
                env = merged
                if image.pythonpath:
                    parts = [str(p) for p in image.pythonpath]
                    if env.get("PYTHONPATH"):
                        parts.append(env["PYTHONPATH"])
                    env["PYTHONPATH"] = os.pathsep.join(parts)
            elif docker_available():
                container_name = f"gpub-{self.rec.job_id}-{index}-{attempt}-{n}"[:120]
                argv = ["docker", "run", "--rm", "--name", container_name, "--network", "host"]
                argv += [arg for k in env if k != "PATH" for arg in ("-e", k)]
                if c.entrypoint:
                    argv += ["--entrypoint", c.entrypoint]
                argv += [c.image_uri, *c.commands]
            else:
                raise TaskSetupError(
                    f"runnable {n}: image {c.image_uri!r} has no "
                    f"images/<name>/local.json under {self.config.repo_root} and no Docker "
                    "daemon answers `docker info`; cannot run it locally"
                )
        else:
            raise TaskSetupError(f"runnable {n}: only script and container runnables run locally")
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


def _note(log: IO[bytes], line: str) -> None:
    log.write(f"[local-batch] {line}\n".encode())


def _should_retry(
    code: int, attempt: int, max_retries: int, policies: list[LifecyclePolicy]
) -> bool:
    """Batch semantics (cloud.google.com/python/docs/reference/batch/latest/
    google.cloud.batch_v1.types.LifecyclePolicy): "When RETRY_TASK is specified, we will retry
    failed tasks if we notice any exit code match and fail tasks if no match is found.
    Likewise, when FAIL_TASK is specified, we will fail tasks if we notice any exit code match
    and retry tasks if no match is found." Without a policy any non-zero exit is retried while
    retries remain."""
    if attempt >= max_retries:
        return False
    for policy in policies:
        matched = code in list(policy.action_condition.exit_codes)
        if policy.action == LifecyclePolicy.Action.RETRY_TASK:
            return matched
        if policy.action == LifecyclePolicy.Action.FAIL_TASK:
            return not matched
    return True
