"""Synth cost vs size: the two example environments with N clients x M jobs each.

Each configuration runs in a fresh subprocess (`--worker`) that times the provider import,
construction of the stacks and `app.synth()` (plus the job JSON), and reports peak RSS of
itself and of the jsii node runtime. The parent adds whole-process wall time.

    .venv/bin/python -m bench.synth                      # N=1, 100, 1,000, 10,000 (M=5)
    .venv/bin/python -m bench.synth --clients 100 --jobs 5
    .venv/bin/python -m bench.synth --quick              # N=1,M=1 vs N=3,M=2 (smoke test)
    .venv/bin/python -m bench.synth --clients 1000 --jobs 5 --keep /tmp/synth  # keep output
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench._common import ROOT, child_env, emit, machine, module_cmd, run_timed, say

if TYPE_CHECKING:
    from stacks.settings import EnvironmentSettings

TARGET_RATIO = 2.0  # docs/clients.md: 1,000 clients x 5 jobs within 2x the 1 x 1 time


def build_environments(clients: int, jobs: int) -> list[EnvironmentSettings]:
    """dev() and prod() with `jobs` copies of the example jobs and `clients` clients each."""
    from stacks.environments import dev, prod
    from stacks.settings import ClientSettings
    from stacks.shards import ClientShards, count_that_fits

    out = []
    for base in (dev(), prod()):
        examples = list(base.jobs)
        specs = [
            examples[i % len(examples)].model_copy(
                update={"name": f"{examples[i % len(examples)].name[:8]}-{i:02d}"}
            )
            for i in range(jobs)
        ]
        names = [s.name for s in specs]
        members = [
            ClientSettings(name=f"tenant-{c:04d}", jobs=names, contact="data@example.com")
            for c in range(clients)
        ]
        # A project that asked for the service accounts it needs (2 per client + 4); with the
        # default 100, bin/check fails CKV_GPUB_LIM_10 naming that number (as it should).
        quota = max(100, 2 * clients + 10)
        # Over one state's size, the clients go to shards: as many as the placement needs
        # (synth refuses fewer, naming this number).
        size = ClientShards().size
        count = 0 if clients <= size else count_that_fits(
            [(m.name, None) for m in members], size) or 0
        out.append(base.model_copy(update={"jobs": specs, "clients": members,
                                           "service_account_quota": quota,
                                           "client_shards": ClientShards(count=count)}))
    return out


def _node_hwm_mib() -> float:
    """Peak RSS summed over this process's descendants (the jsii node runtime), from /proc."""
    parents: dict[int, int] = {}
    hwm: dict[int, float] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        parents[int(pid)] = int(fields.get("PPid", "0").strip() or 0)
        if "VmHWM" in fields:
            hwm[int(pid)] = int(fields["VmHWM"].split()[0]) / 1024
    mine, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier and p not in mine}
        mine |= frontier
    return sum(hwm.get(p, 0.0) for p in mine)


STATE_TARGET = 2500  # docs/clients.md "Shards": no state over ~2,500 resource instances


def instances_per_state(outdir: Path) -> dict[str, int]:
    """Resource instances Terraform would hold in each stack's state (for_each expanded;
    data sources are not state entries that apply writes, so they are not counted)."""
    out = {}
    for path in sorted(outdir.glob("stacks/*/cdk.tf.json")):
        doc = json.loads(path.read_text())
        out[path.parent.name] = sum(
            len(body["for_each"]) if isinstance(body.get("for_each"), dict) else 1
            for named in (doc.get("resource") or {}).values() for body in named.values())
    return out


def _states(states: dict[str, int]) -> str:
    """Platform stacks by name; shards summarized per platform (min-max and count)."""
    from stacks.shards import platform_of

    parts = []
    for platform in sorted({platform_of(s) for s in states}):
        shards = [n for s, n in states.items() if s != platform and platform_of(s) == platform]
        text = f"{platform} {states.get(platform, 0)}"
        if shards:
            text += f" + {len(shards)} shards {min(shards)}-{max(shards)}"
        parts.append(text)
    return "; ".join(parts)


def worker(clients: int, jobs: int, outdir: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    import stacks.provider  # noqa: F401  (the jsii load: the cost that should dominate)
    from stacks.app import build_app, finish

    t1 = time.perf_counter()
    envs = build_environments(clients, jobs)
    app, platforms = build_app(envs, outdir=outdir)
    t2 = time.perf_counter()
    app.synth()
    finish(Path(outdir), platforms)
    t3 = time.perf_counter()
    size = sum(p.stat().st_size for p in Path(outdir).rglob("*.json"))
    states = instances_per_state(Path(outdir))
    return {
        "instances_per_state": states,
        "max_state_instances": max(states.values(), default=0),
        "import_s": round(t1 - t0, 3),
        "construct_s": round(t2 - t1, 3),
        "synth_s": round(t3 - t2, 3),
        "python_maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "node_maxrss_mib": round(_node_hwm_mib(), 1),
        "out_bytes": size,
    }


def measure(clients: int, jobs: int, keep: Path | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        outdir = str(keep / f"n{clients}_m{jobs}") if keep else tmp
        if keep:
            Path(outdir).mkdir(parents=True, exist_ok=True)
        cmd = module_cmd("bench.synth", "--worker", "--clients", str(clients),
                         "--jobs", str(jobs), "--outdir", outdir)
        wall, proc = run_timed(cmd, env=child_env(), cwd=ROOT)
        if proc.returncode != 0:
            raise SystemExit(f"synth worker failed:\n{proc.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = round(wall, 3)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, action="append", help="N (repeatable)")
    p.add_argument("--jobs", type=int, action="append", help="M (paired with --clients)")
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--repeat", type=int, default=1, help="runs per configuration (median)")
    p.add_argument("--keep", type=Path, metavar="DIR",
                   help="keep each configuration's output under DIR/n<N>_m<M>/")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--outdir", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(a.clients[0], a.jobs[0], a.outdir)))
        return 0
    if a.clients:
        jobs = a.jobs or [1] * len(a.clients)
        configs = [(1, 1), *zip(a.clients, jobs, strict=True)]
    else:
        configs = [(1, 1), (3, 2)] if a.quick else [(1, 5), (100, 5), (1000, 5), (10000, 5)]
    configs = list(dict.fromkeys(configs))  # the N=1,M=1 baseline once, always first
    say(f"machine: {machine()}")
    baseline: float | None = None
    for clients, jobs in configs:
        runs = [measure(clients, jobs, a.keep) for _ in range(a.repeat)]
        runs.sort(key=lambda r: r["process_s"])
        r = runs[len(runs) // 2]
        baseline = baseline or r["process_s"]
        ratio = round(r["process_s"] / baseline, 3)
        emit("synth", f"n{clients}_m{jobs}", clients=clients, jobs=jobs,
             ratio_vs_n1_m1=ratio, **r, **machine())
        say(f"N={clients:4d} M={jobs}: process {r['process_s']:.2f}s (import {r['import_s']:.2f}"
            f" construct {r['construct_s']:.2f} synth {r['synth_s']:.2f}) "
            f"rss py {r['python_maxrss_mib']:.0f} MiB node {r['node_maxrss_mib']:.0f} MiB; "
            f"x{ratio} of N=1,M=1 (target <= {TARGET_RATIO} at N=1000,M=5); "
            f"largest state {r['max_state_instances']} instances (target <= {STATE_TARGET}) "
            f"over {len(r['instances_per_state'])} states: " + _states(r["instances_per_state"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
