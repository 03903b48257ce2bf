"""Capacity ladder: time from a stockout to running on the next rung (local simulation).

    .venv/bin/python -m bench.capacity            # 5 runs of each scenario
    .venv/bin/python -m bench.capacity --quick    # 1 run

Scenario `stockout`: the `uppercase` job (dev) with the ladder [SPOT deadline 60 s, STANDARD]
while LOCAL_BATCH_STOCKOUT="europe-west4/spot"; the deadline is scaled by --scale (0.05:
3 s). From the run's decision trail (`bin/submit --json`): `switch_s` = from the moment the
deadline passed (cancel) to the STANDARD job running; `to_running_s` = from submit to running.
The job is declared by bench/capacity_submit.py (`bin/submit` with the ladder patched in).
Compared with `direct`: a one-rung STANDARD ladder, submit to running (no stockout).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench._common import child_env, emit, machine, module_cmd, run_timed, say
from bench.capacity_submit import patched_environments

BUCKET = "example-ml-dev-batch-data"
LADDERS = {
    "stockout": {"ladder": [{"provisioning": "spot", "deadline_s": 60},
                            {"provisioning": "standard"}],
                 "candidate_regions": ["europe-west4"]},
    "direct": {"ladder": [{"provisioning": "standard"}], "candidate_regions": ["europe-west4"]},
}


def _render(synth: Path, fields: dict[str, Any]) -> None:
    from jobs.render import render_job

    for env in patched_environments(fields):
        for spec in env.jobs:
            path = synth / "jobs" / env.stack_name / f"{spec.name}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(render_job(spec, env.render_context(spec.name))))


def _one(tmp: Path, scenario: str, n: int, scale: float, backend: Any, gcs: Any) -> dict[str, Any]:
    fields = LADDERS[scenario]
    synth = tmp / f"synth-{scenario}"
    _render(synth, fields)
    name = f"{scenario}{n}"
    gcs.bucket(BUCKET).blob(f"jobs/in/{name}/a.jsonl").upload_from_string('{"t": "x"}\n')
    env = child_env({"GPUB_LOCAL_ROOT": str(backend.root), "GPUB_SYNTH_DIR": str(synth),
                         "GPUB_LADDER_TIME_SCALE": str(scale),
                         "GPUB_TEST_LADDER": json.dumps(fields), "GPUB_SUBMITTER": "bench"})
    env.pop("STORAGE_EMULATOR_HOST", None)
    cmd = module_cmd("bench.capacity_submit", "uppercase", "--env", "dev",
                     "--input", f"gs://{BUCKET}/jobs/in/{name}/", "--output",
                     f"gs://{BUCKET}/jobs/out/{name}/", "--local", "--json", "--wait",
                     "--poll", "0.1")
    wall, proc = run_timed(cmd, env=env, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"{scenario}: bin/submit failed ({proc.returncode}):\n"
                         f"{proc.stderr[-2000:]}")
    trail = json.loads(proc.stdout)["ladder"]
    at = {(s["provisioning"], s["action"]): s["at_s"] for s in trail}
    running = at[("STANDARD", "running")]
    out: dict[str, Any] = {"to_running_s": running, "wall_s": round(wall, 2)}
    if ("SPOT", "cancelled") in at:
        out["switch_s"] = round(running - at[("SPOT", "cancelled")], 2)
        out["deadline_s"] = 60 * scale
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--scale", type=float, default=0.05)
    a = ap.parse_args()
    repeat = 1 if a.quick else a.repeat

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage  # type: ignore[attr-defined]

    from local.backend import LocalBackend

    say(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        backend = LocalBackend(root=tmp / "local",
                               env={"LOCAL_BATCH_STOCKOUT": "europe-west4/spot"})
        endpoints = backend.ensure_running()
        try:
            gcs = storage.Client(project="bench", credentials=AnonymousCredentials(),
                                 client_options={"api_endpoint": endpoints.gcs_endpoint})
            gcs.create_bucket(BUCKET)
            for scenario in ("direct", "stockout"):
                runs = [_one(tmp, scenario, i, a.scale, backend, gcs) for i in range(repeat)]
                summary = {k: round(statistics.median(r[k] for r in runs), 2)
                           for k in runs[0] if isinstance(runs[0][k], (int, float))}
                emit("capacity", scenario, runs=len(runs), **summary, samples=runs)
                say(f"{scenario}: {summary}")
        finally:
            backend.stop()


if __name__ == "__main__":
    main()
