"""Submit helper: start-up, dry-run, planning over a fake-gcs-server listing and in memory.

    .venv/bin/python -m bench.submit          # 5 start-ups, 20,000 listed, 1,000,000 planned
    .venv/bin/python -m bench.submit --quick    # 3 start-ups, 2,000 listed, 20,000 planned

Start-up is compared with the interpreter floor (`python -c pass`) and with what importing the
provider bindings would cost; listing is compared with a listing without the `fields`
projection; planning with a bare `sorted()` of the same objects (the floor of any planner).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import PYTHON, ROOT, child_env, emit, machine, run_timed, say

BUCKET = "example-ml-dev-batch-data"
BAD_MODULES = ("stacks.provider", "cdktn", "cdktn_provider_google", "jsii", "constructs")


def _median_run(cmd: list[str], env: dict[str, str], n: int) -> tuple[float, list[float]]:
    samples = []
    for _ in range(n):
        wall, proc = run_timed(cmd, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        samples.append(round(wall, 3))
    return statistics.median(samples), samples


def _render_synth(out: Path) -> None:
    """The job JSON synth writes, rendered without the CDK (as tests/test_submit_e2e.py does)."""
    from jobs.render import render_job
    from stacks.environments import load_environments

    for env in load_environments():
        for spec in env.jobs:
            path = out / "jobs" / env.stack_name / f"{spec.name}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(render_job(spec, env.render_context(spec.name))))


def bench_startup(repeat: int, tmp: Path) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage  # type: ignore[attr-defined]

    from local.backend import LocalBackend

    m = machine()
    synth = tmp / "cdktf.out"
    _render_synth(synth)
    backend = LocalBackend(root=tmp / "local")
    endpoints = backend.ensure_running()
    try:
        os.environ["STORAGE_EMULATOR_HOST"] = endpoints.gcs_endpoint
        client = storage.Client(project="bench", credentials=AnonymousCredentials())
        bucket = client.create_bucket(BUCKET)
        for i in range(25):
            bucket.blob(f"jobs/in/uppercase/f{i:03d}.jsonl").upload_from_string(
                json.dumps({"id": i, "text": f"hello {i}"}) + "\n")
        env = child_env({"GPUB_LOCAL_ROOT": str(tmp / "local"), "GPUB_SYNTH_DIR": str(synth),
                             "GPUB_SUBMITTER": "bench"})
        env.pop("STORAGE_EMULATOR_HOST", None)
        dry = ["uppercase", "--env", "dev", "--local", "--dry-run",
               "--input", f"gs://{BUCKET}/jobs/in/uppercase/",
               "--output", f"gs://{BUCKET}/jobs/out/uppercase/bench/"]
        floor, floor_s = _median_run([PYTHON, "-c", "pass"], env, repeat)
        provider, provider_s = _median_run([PYTHON, "-c", "import stacks.provider"], env,
                                           max(1, repeat - 2))
        cases = {
            "submit_help": [str(ROOT / "bin/submit"), "--help"],
            "submit_dry_run_local": [str(ROOT / "bin/submit"), *dry],
        }
        for name, cmd in cases.items():
            med, samples = _median_run(cmd, env, repeat)
            emit("submit", name, median_s=round(med, 3), samples_s=samples,
                 python_floor_s=round(floor, 3), provider_import_s=round(provider, 3),
                 ratio_vs_floor=round(med / floor, 2),
                 ratio_vs_provider_import=round(med / provider, 3),
                 target_s=1.5, target_met=med < 1.5, **m)
            say(f"{name}: median {med:.3f}s of {samples} (python floor {floor:.3f}s, "
                f"import stacks.provider alone {provider:.3f}s); target < 1.5 s")
        # No provider import on the dry-run path: ask the interpreter what it loaded.
        probe = ("import runpy, sys\nsys.argv = ['submit', *sys.argv[1:]]\n"
                 "try:\n    runpy.run_module('submit', run_name='__main__')\n"
                 "except SystemExit:\n    pass\n"
                 f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {BAD_MODULES[1:]!r}"
                 f" or m == {BAD_MODULES[0]!r})\n"
                 "print('LOADED', bad, file=sys.stderr)\n")
        _, proc = run_timed([PYTHON, "-c", probe, *dry], env=env)
        line = [ln for ln in proc.stderr.splitlines() if ln.startswith("LOADED")]
        loaded = line[-1][len("LOADED "):] if line else "?"
        ok = loaded == "[]"
        emit("submit", "dry_run_provider_modules", loaded=loaded, ok=ok, floor_samples_s=floor_s,
             provider_samples_s=provider_s)
        say(f"dry run provider modules loaded: {loaded}")
        if not ok:
            raise SystemExit("the dry-run path imported the provider bindings")
    finally:
        backend.stop()
        os.environ.pop("STORAGE_EMULATOR_HOST", None)


def _seed_filesystem_root(root: Path, n: int) -> None:
    """Write fake-gcs-server's filesystem-backend layout directly (object file + metadata
    xattr): 100,000 uploads through the API, or its `-data` loader (quadratic in the memory
    backend: 10,000 objects take 11 s), would dominate the benchmark."""
    (root / f"{BUCKET}.bucketMetadata").parent.mkdir(parents=True, exist_ok=True)
    (root / f"{BUCKET}.bucketMetadata").write_text(
        '{"DefaultEventBasedHold":false,"VersioningEnabled":false}')
    folder = root / BUCKET / "jobs" / "in" / "big"
    folder.mkdir(parents=True)
    payload = b'{"id": 0, "text": "hello"}\n'
    head = ('{"StorageClass":"STANDARD","ContentType":"application/x-ndjson",'
            '"ContentEncoding":"","ContentDisposition":"","ContentLanguage":"",'
            '"CacheControl":"","Crc32c":"","Md5Hash":"","Etag":"","ACL":[],"Metadata":{},'
            '"Created":"2026-01-01T00:00:00Z","Deleted":"0001-01-01T00:00:00Z",'
            '"Updated":"2026-01-01T00:00:00Z","CustomTime":"0001-01-01T00:00:00Z",'
            '"Generation":')
    tail = ',"RetentionMode":"","RetentionRetainUntil":""}'
    for i in range(n):
        path = folder / f"f{i:07d}.jsonl"
        path.write_bytes(payload)
        os.setxattr(path, "user.metadata", f"{head}{1_700_000_000_000_000 + i}{tail}".encode())


def _start_seeded_gcs(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    """fake-gcs-server on a pre-populated filesystem-backend root."""
    from local.gcs import gcs_binary, gcs_ready
    from local.procs import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(gcs_binary()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
         "-backend", "filesystem", "-filesystem-root", str(root), "-external-url", url,
         "-public-host", f"127.0.0.1:{port}", "-log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not gcs_ready(url, timeout=0.5):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("seeded fake-gcs-server did not start")
        time.sleep(0.1)
    return proc, url


def _plan(objects: list[Any], files_per_task: int | None) -> dict[str, float]:
    """The submit path after the listing: filter, plan, encode, hash (submit)."""
    from submit import manifest, planner

    t0 = time.perf_counter()
    inputs = planner.select_inputs(objects, "jsonl")
    t1 = time.perf_counter()
    plan = planner.plan_tasks(inputs, files_per_task=files_per_task,
                              parallelism_caps=[("job maximum", 50)])
    t2 = time.perf_counter()
    data = manifest.encode(plan.objects)
    manifest.manifest_hash(data)
    t3 = time.perf_counter()
    return {"select_s": round(t1 - t0, 3), "plan_s": round(t2 - t1, 3),
            "encode_hash_s": round(t3 - t2, 3), "total_s": round(t3 - t0, 3),
            "tasks": plan.task_count}


def bench_listing(n: int, tmp: Path) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage  # type: ignore[attr-defined]

    from submit import gcs
    from submit.uris import parse_prefix

    m = machine()
    data = tmp / "gcs-root"
    t0 = time.perf_counter()
    _seed_filesystem_root(data, n)
    seed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    proc, url = _start_seeded_gcs(data)
    load_s = time.perf_counter() - t0
    say(f"seeded {n} objects: files {seed_s:.1f}s, fake-gcs-server load {load_s:.1f}s")
    try:
        os.environ["STORAGE_EMULATOR_HOST"] = url
        client = storage.Client(project="bench", credentials=AnonymousCredentials())
        prefix = parse_prefix(f"gs://{BUCKET}/jobs/in/big/", "--input")
        t0 = time.perf_counter()
        objects = gcs.list_objects(client, prefix, "--input")  # the product's listing
        list_s = time.perf_counter() - t0
        assert len(objects) == n, (len(objects), n)
        t0 = time.perf_counter()
        plain = sum(1 for _ in client.list_blobs(BUCKET, prefix=prefix.prefix, page_size=1000))
        plain_s = time.perf_counter() - t0
        assert plain == n
        plan = _plan(objects, files_per_task=10)
        total = list_s + plan["total_s"]
        bottleneck = "listing pages" if list_s > plan["total_s"] else "planning"
        emit("submit", "plan_from_fake_gcs", objects=n, list_s=round(list_s, 3),
             list_without_fields_s=round(plain_s, 3),
             ratio_fields_vs_plain=round(list_s / plain_s, 3), **plan,
             list_plus_plan_s=round(total, 3), bottleneck=bottleneck, seed_files_s=round(seed_s, 1),
             server_load_s=round(load_s, 1), target_s=30, target_met=total < 30, **m)
        say(f"{n} objects from fake-gcs-server: list {list_s:.2f}s ({n / list_s:.0f} obj/s; "
            f"without fields= {plain_s:.2f}s), plan {plan['total_s']:.2f}s "
            f"-> {total:.2f}s (target < 30 s); bottleneck: {bottleneck}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        os.environ.pop("STORAGE_EMULATOR_HOST", None)


def bench_in_memory(n: int) -> None:
    from submit.manifest import ObjectInfo

    m = machine()
    rng = random.Random(8)
    objects = [ObjectInfo(f"batch-{i % 97:02d}/part-{i:08d}.jsonl", rng.randint(1, 10**7),
                          str(1_700_000_000_000_000 + i)) for i in range(n)]
    rng.shuffle(objects)
    t0 = time.perf_counter()
    sorted(objects)
    floor_s = time.perf_counter() - t0
    for label, fpt in (("files_per_task_10", 10), ("size_balanced", None)):
        r = _plan(objects, fpt)
        emit("submit", f"plan_in_memory_{label}", objects=n, **r, sort_floor_s=round(floor_s, 3),
             ratio_vs_sort=round(r["total_s"] / floor_s, 2), target_s=10,
             target_met=r["total_s"] < 10, **m)
        say(f"{n} in-memory objects, {label}: {r['total_s']:.2f}s (select {r['select_s']:.2f} "
            f"plan {r['plan_s']:.2f} encode+hash {r['encode_hash_s']:.2f}; {r['tasks']} tasks); "
            f"a bare sort takes {floor_s:.2f}s; target < 10 s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--repeat", type=int, help="start-up runs (median)")
    p.add_argument("--listed", type=int, help="objects listed from fake-gcs-server")
    p.add_argument("--in-memory", type=int, help="objects planned in memory")
    p.add_argument("--only", choices=["startup", "listing", "memory"], action="append")
    a = p.parse_args(argv)
    repeat = a.repeat or (3 if a.quick else 5)
    listed = a.listed or (2_000 if a.quick else 20_000)  # see RESULTS.md: fake-gcs lists O(n)/page
    in_memory = a.in_memory or (20_000 if a.quick else 1_000_000)
    only = set(a.only or ["startup", "listing", "memory"])
    say(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-submit-") as tmp:
        if "startup" in only:
            bench_startup(repeat, Path(tmp) / "startup")
        if "listing" in only:
            bench_listing(listed, Path(tmp) / "listing")
    if "memory" in only:
        bench_in_memory(in_memory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
