"""Start the IAM proxy (`local.iam_proxy`) as a detached process, without importing aiohttp
into the caller (the submit path must start fast)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from local.procs import exited_early, spawn_module

MODULE = "local.iam_proxy"
READY_PATH = "/_gpub/iam/ready"  # answered by the proxy itself, no identity needed
RELOAD_PATH = "/_gpub/iam/reload"  # POST: the proxy re-reads its stacks before answering
OFF_WORDS = {"0", "off", "false", "no"}


def iam_wanted(stacks: Sequence[Path], env: dict[str, str] | None = None) -> bool:
    """IAM is enforced when there is a policy to enforce, unless LOCAL_IAM=off."""
    value = (env if env is not None else os.environ).get("LOCAL_IAM", "").strip().lower()
    return bool(stacks) and value not in OFF_WORDS


def stacks_from_env(env: dict[str, str] | None = None) -> list[Path]:
    """GPUB_LOCAL_STACKS: the synthesized cdk.tf.json files whose IAM is enforced."""
    raw = (env if env is not None else os.environ).get("GPUB_LOCAL_STACKS", "")
    return [Path(p).resolve() for p in raw.split(os.pathsep) if p.strip()]


def iam_ready(endpoint: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(endpoint + READY_PATH, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def reload_iam(endpoint: str, timeout: float = 10.0) -> int:
    """Make the IAM layer at `endpoint` enforce the stack files as they are now (instead of
    waiting for its file poll); returns the policy generation it loaded."""
    req = urllib.request.Request(endpoint + RELOAD_PATH, data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return int(json.loads(resp.read())["generation"])


def start_iam_proxy(
    root: Path, port: int, upstream: str, stacks: Sequence[Path], ready_timeout: float = 20.0,
    *, iam: bool = True, pubsub: str | None = None,
) -> subprocess.Popen[bytes]:
    """`iam=False`: pass everything (still needs an identity); `pubsub`: the local Pub/Sub
    target the stacks' GCS notifications are published to."""
    endpoint = f"http://127.0.0.1:{port}"
    cmd = ["--port", str(port), "--upstream", upstream]
    for s in stacks:
        cmd += ["--stack", str(s)]
    if not iam:
        cmd.append("--no-iam")
    if pubsub:
        cmd += ["--pubsub", pubsub]
    proc, log_path = spawn_module(MODULE, cmd, root, "iam-proxy.log")
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if (error := exited_early(proc, log_path, "local IAM proxy")) is not None:
            raise error
        if iam_ready(endpoint, timeout=0.5):
            return proc
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"local IAM proxy did not answer on {endpoint} within {ready_timeout}s")
