"""Start the local Pub/Sub server (`local.pubsub_server`) as a detached process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from local.procs import terminate

MODULE = "local.pubsub_server"
PACKAGE_PARENT = Path(__file__).resolve().parents[1]


def start_pubsub(root: Path, stacks: Sequence[Path], port: int = 0,
                 ready_timeout: float = 20.0) -> dict[str, Any]:
    """{"pid", "port", "target"} of a started server that already accepts calls."""
    port_file = root / "pubsub-port.json"
    port_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", MODULE, "--port", str(port), "--port-file", str(port_file)]
    for s in stacks:
        cmd += ["--stack", str(s)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(PACKAGE_PARENT), *filter(None, [env.get("PYTHONPATH")])]
    )
    log_path = root / "pubsub.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log, start_new_session=True)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:].strip()
            raise RuntimeError(f"local Pub/Sub server exited with {proc.returncode}: {tail}")
        if port_file.is_file():
            bound = int(json.loads(port_file.read_text(encoding="utf-8"))["port"])
            return {"pid": proc.pid, "port": bound, "target": f"127.0.0.1:{bound}",
                    "stacks": [str(s) for s in stacks]}
        time.sleep(0.05)
    terminate(proc.pid, 5)
    raise RuntimeError(f"local Pub/Sub server did not start within {ready_timeout}s")
