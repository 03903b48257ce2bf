"""Small process and port helpers shared by the backend, the servers and the executor."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
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


PACKAGE_PARENT = Path(__file__).resolve().parents[1]  # the repository root: `local` imports


def spawn_module(module: str, args: list[str], root: Path, log_name: str, *,
                 extra_env: dict[str, str] | None = None, unset: tuple[str, ...] = (),
                 ) -> tuple[subprocess.Popen[bytes], Path]:
    """`python -m module args...` as a detached process (its own session: it outlives the
    command that started it, and a signal to the caller's group does not reach it) logging to
    `root/log_name`; the repository root on its PYTHONPATH, `extra_env` added, `unset`
    removed. Returns the process and its log path."""
    env = {**os.environ, **(extra_env or {})}
    for name in unset:
        env.pop(name, None)
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_PARENT),
                                         *filter(None, [env.get("PYTHONPATH")])])
    log_path = root / log_name
    with log_path.open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=root, env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    return proc, log_path


def exited_early(proc: subprocess.Popen[bytes], log_path: Path, what: str) -> RuntimeError | None:
    """The error to raise when a server being started has already exited, with its log's
    tail; None while it runs."""
    if proc.poll() is None and pid_alive(proc.pid):
        return None
    tail = log_path.read_text(errors="replace")[-2000:].strip()
    return RuntimeError(f"{what} exited with {proc.returncode}: {tail}")


def serve_until_signalled(server: Any, port: int, name: str, port_file: Path | None,
                          banner: str = "") -> None:
    """Bind a gRPC `server` to 127.0.0.1:`port` (0: any free port), start it, publish the
    bound port in `port_file` (how the launcher learns it), and block until SIGTERM/SIGINT.
    The caller stops the server after (each has its own shutdown)."""
    import threading

    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    if bound == 0:
        raise SystemExit(f"{name}: cannot bind 127.0.0.1:{port}")
    server.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if port_file is not None:
        write_json_atomic(port_file, {"pid": os.getpid(), "port": bound})
    print(f"{name}: serving on 127.0.0.1:{bound}{banner}", flush=True)
    stop.wait()
