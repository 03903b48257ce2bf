"""One task attempt's processes on this machine: how a runnable starts (a script, an image's
local entrypoint, or `docker run`), its environment with secrets resolved, killing everything
it started, and Batch's retry rule for its exit code."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import IO

from google.cloud.batch_v1 import LifecyclePolicy, Runnable

from local.images import find_local_image, local_command
from local.procs import kill_group


class AttemptProcesses:
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


def resolve_environment(environment: object, root: Path) -> dict[str, str]:
    """Plain variables plus `secretVariables` looked up in <root>/secrets.json."""
    variables = dict(getattr(environment, "variables", {}) or {})
    secrets = dict(getattr(environment, "secret_variables", {}) or {})
    if secrets:
        path = root / "secrets.json"
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


def runnable_command(
    runnable: Runnable, n: int, env: dict[str, str], repo_root: Path, container_name: str
) -> tuple[list[str], dict[str, str], str | None]:
    """(argv, environment, docker container name or None) that run runnable `n` here."""
    if runnable.script:
        script = runnable.script
        return (["bash", "-c", script.text] if script.text else ["bash", script.path]), env, None
    if not runnable.container:
        raise TaskSetupError(f"runnable {n}: only script and container runnables run locally")
    c = runnable.container
    image = find_local_image(c.image_uri, repo_root)
    if image is not None:
        merged = dict(image.env)
        merged.update(env)  # like `docker run -e`: the job's values win
        if image.pythonpath:  # the image's own PYTHONPATH (its Dockerfile's ENV)
            parts = [str(p) for p in image.pythonpath]
            if merged.get("PYTHONPATH"):
                parts.append(merged["PYTHONPATH"])
            merged["PYTHONPATH"] = os.pathsep.join(parts)
        return local_command(image, c.entrypoint, list(c.commands)), merged, None
    if not docker_available():
        raise TaskSetupError(
            f"runnable {n}: image {c.image_uri!r} has no "
            f"images/<name>/local.json under {repo_root} and no Docker "
            "daemon answers `docker info`; cannot run it locally"
        )
    argv = ["docker", "run", "--rm", "--name", container_name, "--network", "host"]
    argv += [arg for k in env if k != "PATH" for arg in ("-e", k)]
    if c.entrypoint:
        argv += ["--entrypoint", c.entrypoint]
    return [*argv, c.image_uri, *c.commands], env, container_name


def note(log: IO[bytes], line: str) -> None:
    log.write(f"[local-batch] {line}\n".encode())


def should_retry(
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
