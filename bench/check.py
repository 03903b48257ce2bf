"""`bin/check` end to end at N=1 and N=100 clients (the two example environments, M jobs).

Per size: synthesize with bench.synth's builder into a temporary directory (a fresh
process), then `bin/check --no-synth --out DIR --reports DIR` (a fresh process); both timed,
separately and together. The obvious alternative, the same checks at N=1, is the baseline.

    .venv/bin/python -m bench.check                 # N=1 and N=100, M=2
    .venv/bin/python -m bench.check --clients 1 --clients 100 --clients 1000 --jobs 5
    .venv/bin/python -m bench.check --quick         # N=1 only
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench._common import ROOT, child_env, emit, machine, module_cmd, run_timed, say

TARGET_S = 60.0


def measure(clients: int, jobs: int) -> dict[str, float | int | bool]:
    with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
        out, reports = Path(tmp) / "out", Path(tmp) / "reports"
        synth_s, proc = run_timed(module_cmd("bench.synth", "--worker", "--clients", str(clients),
                                             "--jobs", str(jobs), "--outdir", str(out)),
                                  env=child_env())
        if proc.returncode != 0:
            raise SystemExit(f"synth failed:\n{proc.stderr[-3000:]}")
        check_s, proc = run_timed([str(ROOT / "bin/check"), "--no-synth", "--out", str(out),
                                   "--reports", str(reports)], env=child_env())
        # Exit 1 means findings (a policy result, not a crash): report it, do not fail.
        if proc.returncode not in (0, 1):
            raise SystemExit(f"bin/check crashed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        resources = (out / "stacks").rglob("cdk.tf.json")
        n_bytes = sum(p.stat().st_size for p in resources)
    return {"synth_s": round(synth_s, 2), "check_s": round(check_s, 2),
            "total_s": round(synth_s + check_s, 2), "check_exit": proc.returncode,
            "stack_bytes": n_bytes}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, action="append", help="N (repeatable)")
    p.add_argument("--jobs", type=int, default=2, help="M jobs per environment")
    p.add_argument("--quick", action="store_true", help="N=1 only (smoke test)")
    a = p.parse_args(argv)
    sizes = a.clients or ([1] if a.quick else [1, 100])
    say(f"machine: {machine()}")
    base: float | None = None
    for n in sizes:
        r = measure(n, a.jobs)
        base = base or float(r["total_s"])
        emit("check", f"n{n}_m{a.jobs}", clients=n, jobs=a.jobs, **r,
             ratio_vs_n1=round(float(r["total_s"]) / base, 2), target_s=TARGET_S,
             target_met=float(r["total_s"]) < TARGET_S, **machine())
        say(f"N={n} M={a.jobs}: synth {r['synth_s']}s + bin/check {r['check_s']}s = "
            f"{r['total_s']}s (exit {r['check_exit']}; target < {TARGET_S:g} s at N=1000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
