"""Cost of the local IAM layer: runner throughput with IAM on (through `local.iam_proxy`) vs
off (straight to fake-gcs-server), same inputs, same machine, alternating order.

2,000 inputs of 10 KB, no-op handler, one task (`python -m gpub_runner`), the task running as
a run identity whose grants mimic Tenancy v2: objectViewer on the bucket, objectUser with a
CEL condition on `outputs/` (so every write evaluates a condition).

    .venv/bin/python -m bench.iam               # 2000 files, 3 rounds (median)
    .venv/bin/python -m bench.iam --quick       # 100 files, 1 round (smoke test)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench._common import emit, machine, say
from bench.runner import BUCKET, run_runner, start_gcs

TARGET_OVERHEAD = 0.20  # IAM on may cost at most 20% of IAM-off throughput
RUN_SA = "run-bench@bench-proj.iam.gserviceaccount.com"


def stack_document() -> dict[str, object]:
    """The bucket's authoritative policy, written as the client stacks write theirs
    (tfjson.iam): a plain viewer grant and a conditional writer grant."""
    from tfjson.iam import PolicyBinding, policy_data

    cond = f'resource.name.startsWith("projects/_/buckets/{BUCKET}/objects/out-")'
    member = "serviceAccount:${google_service_account.run.email}"
    return {"resource": {
        "google_service_account": {"run": {"project": "bench-proj", "account_id": "run-bench"}},
        "google_storage_bucket": {"b": {"project": "bench-proj", "name": BUCKET}},
        "google_storage_bucket_iam_policy": {"b": {
            "bucket": "${google_storage_bucket.b.name}",
            "policy_data": policy_data([
                PolicyBinding("roles/storage.objectViewer", [member]),
                PolicyBinding("roles/storage.objectUser", [member], cond, "outputs")]),
        }},
    }}


def one_round(seed: Path, work: Path, n: int, iam: bool, concurrency: int,
              latency_ms: float = 0.0) -> float:
    from local.iam_launcher import start_iam_proxy
    from local.identity import ADMIN_EMAIL, credentials_for, token_for
    from local.procs import free_port, terminate

    work.mkdir(parents=True)
    gcs, port = start_gcs("filesystem", seed, work)
    procs = [gcs.pid]
    endpoint = f"http://127.0.0.1:{port}"
    try:
        if iam:
            stack = work / "cdk.tf.json"
            stack.write_text(json.dumps(stack_document()))
            pport = free_port()
            procs.append(start_iam_proxy(work, pport, endpoint, [stack]).pid)
            endpoint = f"http://127.0.0.1:{pport}"
        if latency_ms > 0:  # GCS request latency from a VM, as in bench.runner
            from bench.runner import start_proxy

            lat, lport = start_proxy(int(endpoint.rsplit(":", 1)[1]), latency_ms)
            procs.append(lat.pid)
            endpoint = f"http://127.0.0.1:{lport}"
        from google.cloud import storage  # type: ignore[attr-defined]

        admin = storage.Client(project="bench", credentials=credentials_for(ADMIN_EMAIL),
                               client_options={"api_endpoint": endpoint})
        blobs = sorted(admin.list_blobs(BUCKET, prefix="in/"), key=lambda b: b.name)
        manifest = "".join(json.dumps({"name": b.name[3:], "size": b.size,
                                       "generation": str(b.generation)}) + "\n" for b in blobs)
        admin.bucket(BUCKET).blob("out-manifest.jsonl").upload_from_string(manifest)
        os.environ["GPUB_LOCAL_TOKEN"] = token_for(RUN_SA)
        _, final = run_runner(endpoint, f"gs://{BUCKET}/out-manifest.jsonl",
                              f"gs://{BUCKET}/out-runner/", concurrency, None)
        assert final["ok"] == n, final
        return n / float(final["seconds"])
    finally:
        os.environ.pop("GPUB_LOCAL_TOKEN", None)
        for pid in reversed(procs):
            terminate(pid, 10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, help="inputs (default 2000; --quick 100)")
    p.add_argument("--rounds", type=int, help="rounds of (off, on) (default 3; --quick 1)")
    p.add_argument("--concurrency", type=int, default=32, help="GPUB_CONCURRENCY")
    p.add_argument("--latency-ms", type=float, default=0.0,
                   help="added latency per request in front of GCS (default 0: CPU-bound)")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    n = a.files or (100 if a.quick else 2000)
    rounds = a.rounds or (1 if a.quick else 3)
    say(f"machine: {machine()}")
    off: list[float] = []
    on: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-iam-") as tmp:
        work = Path(tmp)
        folder = work / "seed" / BUCKET / "in"
        folder.mkdir(parents=True)
        for i in range(n):
            line = json.dumps({"id": i, "text": "x" * 100}) + "\n"
            (folder / f"f{i:05d}.jsonl").write_text((line * (10240 // len(line) + 1))[:10240])
        for r in range(rounds):
            # Alternate which goes first: the shared machine's noise hits both alike.
            for iam in ((False, True) if r % 2 == 0 else (True, False)):
                fps = one_round(work / "seed", work / f"r{r}-{iam}", n, iam, a.concurrency,
                                a.latency_ms)
                (on if iam else off).append(fps)
                say(f"round {r}: IAM {'on ' if iam else 'off'} {fps:.0f} files/s")
    med_off, med_on = statistics.median(off), statistics.median(on)
    overhead = 1 - med_on / med_off
    emit("iam", f"runner_throughput_latency_{a.latency_ms:g}ms", files=n, file_kib=10,
         rounds=rounds, latency_ms=a.latency_ms,
         concurrency=a.concurrency, iam_off_files_per_s=[round(x, 1) for x in off],
         iam_on_files_per_s=[round(x, 1) for x in on], median_off=round(med_off, 1),
         median_on=round(med_on, 1), overhead=round(overhead, 3),
         target_overhead=TARGET_OVERHEAD, target_met=overhead <= TARGET_OVERHEAD, **machine())
    say(f"IAM off {med_off:.0f} files/s, on {med_on:.0f} files/s: cost {overhead:.1%} "
        f"(target <= {TARGET_OVERHEAD:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
