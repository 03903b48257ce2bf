"""Small process and port helpers shared by the backend, the servers and the executor."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_answers(port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    """True when `pid` exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); /proc tells the truth on Linux.
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def cmdline_contains(pid: int, needle: str) -> bool:
    """Guard against pid reuse: is `needle` in the process's command line?

    Where /proc is unavailable we cannot tell, and trust the pid.
    """
    path = Path(f"/proc/{pid}/cmdline")
    if not path.parent.exists():
        return True
    try:
        return needle in path.read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False


def terminate(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM `pid`, wait up to `timeout` s, then SIGKILL. Reaps it if it is our child."""
    if not pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        _reap(pid)
        if not pid_alive(pid):
            return
        time.sleep(0.02)


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a whole process group (tasks run in their own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so a reader never sees a half-written file (write + fsync + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def kill_orphan_groups(pid_files: list[Path], marker: str) -> list[int]:
    """Kill the process groups listed in `pid_files` (one leader pid a line) whose
    environment still carries `marker` (e.g. BATCH_JOB_UID=...), then remove the files.
    The marker check keeps a reused pid from taking an innocent process down."""
    killed: list[int] = []
    for path in pid_files:
        try:
            pids = [int(x) for x in path.read_text().split()]
        except (OSError, ValueError):
            pids = []
        for pid in pids:
            if pid_alive(pid) and environ_contains(pid, marker):
                kill_group(pid)
                killed.append(pid)
        path.unlink(missing_ok=True)
    return killed


def environ_contains(pid: int, entry: str) -> bool:
    try:
        return entry.encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
