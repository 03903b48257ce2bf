"""`python -m local {start,stop,status,events} [--root .local] [--stack cdk.tf.json ...]`:
manage the local backend.

- `start --stack F`: the local cloud of a synthesized stack (IAM on, its topics, its buckets);
- `events --stack F`: the stack's Eventarc triggers, locally: deliver each pending event to
  its workflow (the deployed YAML) until interrupted (`--once`: until nothing is pending, then
  a summary line; exit 1 when an execution FAILED or nothing could be delivered).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from local.backend import LocalBackend, default_root

if TYPE_CHECKING:
    from local.eventarc import LocalEventarc


def _events(backend: LocalBackend, once: bool) -> int:
    from local.eventarc import LocalEventarc, describe

    ep = backend.ensure_running()
    from local.apply import apply_buckets

    # The stack's buckets, now and whenever a new synth adds some (the local `terraform apply`).
    arc = LocalEventarc(backend.stacks, batch_target=ep.batch_target,
                        gcs_endpoint=ep.gcs_endpoint, pubsub_target=ep.pubsub_target,
                        on_reload=lambda: apply_buckets(ep.gcs_upstream, backend.stacks))
    if once:
        return _events_once(arc)
    print(f"delivering events of {len(arc.triggers)} triggers (Ctrl-C stops)", flush=True)
    try:
        while True:
            for r in arc.deliver(timeout_s=1.5):
                print(describe(r), flush=True)
            time.sleep(0.2)
    except KeyboardInterrupt:
        return 0


def _events_once(arc: LocalEventarc) -> int:
    """Deliver until a round finds nothing; say what ran. Exit 1 when an execution FAILED, or
    events are left (refused over the execution-creation rate, or leased by another consumer),
    0 otherwise."""
    from local.eventarc import Execution, describe, summary

    if not arc.triggers:
        print("events --once: the stack declares no Eventarc trigger: nothing can be delivered")
        return 1
    runs: list[Execution] = []
    refused = 0
    while True:
        done = arc.deliver_round(timeout_s=1.5)
        for r in done.executions:
            print(describe(r), flush=True)
        runs += done.executions
        refused = done.refused
        if not done.executions:
            break
    left = sum(arc.pending().values())
    line = f"events --once: {len(arc.triggers)} triggers, {summary(runs)}"
    if not runs and not left:
        line += ": nothing was pending"
    if refused:
        line += (f"; {refused} events refused over Workflows' 6,000 execution creations per "
                 "minute, left for redelivery")
    elif left:
        line += (f"; {left} events still pending under another consumer's lease (delivered "
                 "again once its ack deadline passes)")
    print(line, flush=True)
    return 1 if left or refused or any(r.error is not None for r in runs) else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m local", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["start", "stop", "status", "events"])
    p.add_argument("--root", type=Path, default=None,
                   help="state directory (default: GPUB_LOCAL_ROOT, else <repo>/.local)")
    p.add_argument("--repo-root", type=Path, default=None, help="where images/ live")
    p.add_argument("--stack", type=Path, action="append", default=None,
                   help="a synthesized cdk.tf.json whose IAM, topics and workflows to run "
                        "(repeatable; default: GPUB_LOCAL_STACKS, else what is running)")
    p.add_argument("--once", action="store_true", help="events: deliver what is pending, exit")
    a = p.parse_args(argv)
    for stack in a.stack or []:
        if not stack.is_file():
            p.error(f"--stack: {stack} is not a file (synthesize first: .venv/bin/python main.py)")
    from local.backend import CloudMismatch
    from local.faults import FaultConfigError

    try:
        return _run(a, p)
    except (CloudMismatch, FaultConfigError) as exc:
        p.exit(2, f"python -m local {a.command}: {exc}\n")


def _run(a: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    backend = LocalBackend(a.root or default_root(), repo_root=a.repo_root, stacks=a.stack)
    if a.command == "events":
        if not backend.stacks:
            p.error("events: needs --stack (the stack whose triggers to run)")
        return _events(backend, a.once)
    if a.command == "start":
        ep = backend.ensure_running()
        print(f"batch: {ep.batch_target}\ngcs:   {ep.gcs_endpoint}")
        if backend.stacks:
            from local.apply import apply_buckets

            created = apply_buckets(ep.gcs_upstream, backend.stacks)
            print(f"pubsub: {ep.pubsub_target} (PUBSUB_EMULATOR_HOST)\n"
                  f"iam:    {'on' if backend.iam else 'off'}; buckets created: "
                  f"{', '.join(created) or 'none'}")
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
