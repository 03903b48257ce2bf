"""`python -m local {start,stop,status} [--root .local]`: manage the local backend."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from local.backend import LocalBackend, default_root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m local", description=__doc__)
    p.add_argument("command", choices=["start", "stop", "status"])
    p.add_argument("--root", type=Path, default=None,
                   help="state directory (default: GPUB_LOCAL_ROOT, else <repo>/.local)")
    p.add_argument("--repo-root", type=Path, default=None, help="where images/ live")
    a = p.parse_args(argv)
    backend = LocalBackend(a.root or default_root(), repo_root=a.repo_root)
    if a.command == "start":
        ep = backend.ensure_running()
        print(f"batch: {ep.batch_target}\ngcs:   {ep.gcs_endpoint}")
        print(f"export STORAGE_EMULATOR_HOST={ep.gcs_endpoint}")
    elif a.command == "stop":
        backend.stop()
        print("local backend stopped")
    else:
        status = backend.status()
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0 if status["gcs"]["running"] and status["batch"]["running"] else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
