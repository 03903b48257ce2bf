"""Start the local Pub/Sub server (`local.pubsub_server`) as a detached process."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from local.procs import exited_early, spawn_module, terminate

MODULE = "local.pubsub_server"


def start_pubsub(root: Path, stacks: Sequence[Path], port: int = 0,
                 ready_timeout: float = 20.0) -> dict[str, Any]:
    """{"pid", "port", "target"} of a started server that already accepts calls."""
    port_file = root / "pubsub-port.json"
    port_file.unlink(missing_ok=True)
    cmd = ["--port", str(port), "--port-file", str(port_file)]
    for s in stacks:
        cmd += ["--stack", str(s)]
    proc, log_path = spawn_module(MODULE, cmd, root, "pubsub.log")
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if (error := exited_early(proc, log_path, "local Pub/Sub server")) is not None:
            raise error
        if port_file.is_file():
            bound = int(json.loads(port_file.read_text(encoding="utf-8"))["port"])
            return {"pid": proc.pid, "port": bound, "target": f"127.0.0.1:{bound}",
                    "stacks": [str(s) for s in stacks]}
        time.sleep(0.05)
    terminate(proc.pid, 5)
    raise RuntimeError(f"local Pub/Sub server did not start within {ready_timeout}s")
