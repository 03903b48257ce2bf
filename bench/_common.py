"""Shared helpers for the benchmarks: JSON-line output, machine facts, timing, subprocesses."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python")
if not Path(PYTHON).exists():  # running from another interpreter: use it
    PYTHON = sys.executable


def machine() -> dict[str, Any]:
    mem_kib = 0
    try:
        with open("/proc/meminfo") as f:
            mem_kib = int(f.readline().split()[1])
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "mem_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }


def emit(bench: str, name: str, **fields: Any) -> None:
    """One JSON line per measurement on stdout (the machine-readable result)."""
    print(json.dumps({"bench": bench, "name": name, **fields}, sort_keys=True), flush=True)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_timed(
    cmd: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None,
    timeout: float = 600,
) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    proc = subprocess.run(
        list(cmd), env=env, cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout,
        check=False,
    )
    return time.perf_counter() - started, proc


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment plus `extra`, for a measured subprocess. The packages it
    imports (bench, the platform, gpub_runner) come from the install (bin/_bootstrap), so
    nothing is added to PYTHONPATH."""
    return {**os.environ, **(extra or {})}


def module_cmd(module: str, *args: str) -> list[str]:
    """The command line that runs `module` (`bench.synth`, ...) in the project's interpreter."""
    return [PYTHON, "-m", module, *args]
