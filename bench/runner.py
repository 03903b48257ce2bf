"""Task runtime throughput: `gpub_runner` vs the plain loop a user would write, same run.

2,000 inputs of 10 KB on fake-gcs-server; a no-op handler (each input copied to one output).
The runner runs as `python -m gpub_runner` with the environment contract (one task); the
plain loop downloads, "processes" and uploads one file at a time with google-cloud-storage.
Both report requests per file: the loop's counted on its HTTP session, the runner's from its
own count (`requests` in its last log line). `--self-plan` runs the runner as the intake
starts it: no manifest, the task lists and plans the prefix itself.
Each comparison runs with no added latency and behind a proxy that delays every response by a
fixed time (an assumption standing in for GCS request latency from a VM; default 10 ms).

    .venv/bin/python -m bench.runner                       # 2000 files, latency 0 and 10 ms
    .venv/bin/python -m bench.runner --latency-ms 20 --backend memory
    .venv/bin/python -m bench.runner --quick               # 100 files (smoke test)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import PYTHON, child_env, emit, machine, module_cmd, say

BUCKET = "bench"
# The targets: at least as fast as the plain loop with no added latency, 5x at 10 ms.
TARGETS = {0.0: 1.0, 10.0: 5.0}


# ---- latency proxy (its own process, so it never competes with the measured loop's GIL) ----
async def _proxy(listen: int, target: int, latency_s: float) -> None:
    async def pipe_up(r: asyncio.StreamReader, w: asyncio.StreamWriter, pending: list[bool]
                      ) -> None:
        while data := await r.read(65536):
            pending[0] = True  # a request (or part of one) went out: its response waits
            w.write(data)
            await w.drain()
        w.close()

    async def pipe_down(r: asyncio.StreamReader, w: asyncio.StreamWriter, pending: list[bool]
                        ) -> None:
        while data := await r.read(65536):
            if pending[0]:  # first bytes of a response: one fixed delay per request
                pending[0] = False
                await asyncio.sleep(latency_s)
            w.write(data)
            await w.drain()
        w.close()

    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            sr, sw = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            cw.close()
            return
        pending = [False]
        await asyncio.gather(pipe_up(cr, sw, pending), pipe_down(sr, cw, pending),
                             return_exceptions=True)

    server = await asyncio.start_server(handle, "127.0.0.1", listen, backlog=1024)
    async with server:
        await server.serve_forever()


def start_proxy(target: int, latency_ms: float) -> tuple[subprocess.Popen[bytes], int]:
    from local.procs import free_port, port_answers

    port = free_port()
    proc = subprocess.Popen(module_cmd("bench.runner", "--proxy", str(port), str(target),
                                       str(latency_ms)), env=child_env())
    deadline = time.monotonic() + 20
    while not port_answers(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("latency proxy did not start")
        time.sleep(0.05)
    return proc, port


def start_gcs(backend: str, seed: Path, work: Path) -> tuple[subprocess.Popen[bytes], int]:
    from local.gcs import gcs_binary, gcs_ready
    from local.procs import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["-backend", backend, "-data", str(seed)]
    if backend == "filesystem":
        args += ["-filesystem-root", str(work / "gcs-root")]
    proc = subprocess.Popen(
        [str(gcs_binary()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
         "-external-url", url, "-public-host", f"127.0.0.1:{port}", "-log-level", "error",
         *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not gcs_ready(url, timeout=0.5):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("fake-gcs-server did not start")
        time.sleep(0.05)
    return proc, port


def _client(endpoint: str) -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage  # type: ignore[attr-defined]

    os.environ["STORAGE_EMULATOR_HOST"] = endpoint
    return storage.Client(project="bench", credentials=AnonymousCredentials())


def _cpu_s(pid: int) -> float:
    """User+system CPU seconds of a process so far (for fake-gcs-server's share)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def plain_loop(endpoint: str, names: list[str], out_prefix: str) -> tuple[float, int]:
    """What a user writes first: one file at a time, download -> process -> upload.
    Returns (seconds, HTTP requests sent)."""
    client = _client(endpoint)
    bucket = client.bucket(BUCKET)
    session = client._http
    sent = [0]
    send = session.request

    def counting(*args: Any, **kwargs: Any) -> Any:
        sent[0] += 1
        return send(*args, **kwargs)

    session.request = counting
    t0 = time.perf_counter()
    for name in names:
        data = bucket.blob(f"in/{name}").download_as_bytes()
        bucket.blob(f"{out_prefix}{name}").upload_from_string(data)  # no-op "processing"
    return time.perf_counter() - t0, sent[0]


def run_runner(endpoint: str, manifest_uri: str | None, out_prefix: str, concurrency: int,
               profile: Path | None) -> tuple[float, dict[str, Any]]:
    env = child_env({
        "STORAGE_EMULATOR_HOST": endpoint, "BATCH_TASK_INDEX": "0", "BATCH_TASK_COUNT": "1",
        "BATCH_TASK_RETRY_ATTEMPT": "0", "GPUB_MANIFEST": manifest_uri or "",
        "GPUB_INPUT_PREFIX": f"gs://{BUCKET}/in/", "GPUB_OUTPUT_PREFIX": out_prefix,
        "GPUB_HANDLER": "bench.noop_handler:process", "GPUB_CONCURRENCY": str(concurrency),
        "GPUB_JOB_NAME": "bench",
    })
    cmd = [PYTHON, "-m", "gpub_runner"]
    if profile is not None:
        cmd = [PYTHON, "-m", "cProfile", "-o", str(profile), "-m", "gpub_runner"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900,
                          check=False)
    wall = time.perf_counter() - t0
    lines = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    final = next((ln for ln in reversed(lines) if ln.get("message") == "task finished"), None)
    if proc.returncode != 0 or final is None:
        raise SystemExit(f"runner failed ({proc.returncode}):\n{proc.stdout[-2000:]}"
                         f"\n{proc.stderr[-2000:]}")
    return wall, final


class Env:
    """A fresh fake-gcs-server seeded with the inputs (plus the manifest), optionally behind
    the latency proxy: every contender starts from the same bucket state (fake-gcs-server's
    cost per request grows with the objects a bucket holds)."""

    def __init__(self, backend: str, seed: Path, work: Path, latency_ms: float) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.gcs, port = start_gcs(backend, seed, work)
        self.procs.append(self.gcs)
        direct = f"http://127.0.0.1:{port}"
        client = _client(direct)
        blobs = sorted(client.list_blobs(BUCKET, prefix="in/"), key=lambda b: b.name)
        manifest = "".join(json.dumps({"name": b.name[3:], "size": b.size,
                                       "generation": str(b.generation)}) + "\n" for b in blobs)
        client.bucket(BUCKET).blob("manifest.jsonl").upload_from_string(manifest)
        self.endpoint = direct
        if latency_ms > 0:
            proxy, pport = start_proxy(port, latency_ms)
            self.procs.append(proxy)
            self.endpoint = f"http://127.0.0.1:{pport}"

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
            proc.wait(timeout=10)


def compare(names: list[str], latency_ms: float, concurrency: int, backend: str,
            seed: Path, work: Path, profile: Path | None, self_plan: bool) -> None:
    n = len(names)
    env = Env(backend, seed, work / "loop", latency_ms)
    try:
        cpu0, own0 = _cpu_s(env.gcs.pid), time.process_time()
        loop_s, loop_requests = plain_loop(env.endpoint, names, "out-loop/")
        cpu1, own1 = _cpu_s(env.gcs.pid), time.process_time()
    finally:
        env.close()
    env = Env(backend, seed, work / "runner", latency_ms)
    try:
        kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu2 = _cpu_s(env.gcs.pid)
        manifest = None if self_plan else f"gs://{BUCKET}/manifest.jsonl"
        wall, final = run_runner(env.endpoint, manifest, f"gs://{BUCKET}/out-runner/",
                                 concurrency, profile)
        cpu3 = _cpu_s(env.gcs.pid)
        kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        env.close()
    runner_cpu = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
    assert final["ok"] == n, final
    runner_s = float(final["seconds"])  # the task's own clock: plan, skip check, process
    loop_fps, runner_fps, process_fps = n / loop_s, n / runner_s, n / wall
    ratio = runner_fps / loop_fps
    target = TARGETS.get(latency_ms)
    runner_requests = sum(final.get("requests", {}).values())
    emit("runner", f"latency_{latency_ms:g}ms", files=n, file_kib=10, backend=backend,
         latency_ms=latency_ms, concurrency=concurrency, self_plan=self_plan,
         requests_per_file_loop=round(loop_requests / n, 3),
         requests_per_file_runner=round(runner_requests / n, 3),
         runner_requests=final.get("requests", {}),
         plain_loop_s=round(loop_s, 3), plain_loop_files_per_s=round(loop_fps, 1),
         runner_task_s=round(runner_s, 3), runner_files_per_s=round(runner_fps, 1),
         runner_process_s=round(wall, 3), runner_process_files_per_s=round(process_fps, 1),
         ratio=round(ratio, 2), ratio_whole_process=round(process_fps / loop_fps, 2),
         gcs_cpu_s_loop=round(cpu1 - cpu0, 2), gcs_cpu_s_runner=round(cpu3 - cpu2, 2),
         client_cpu_s_loop=round(own1 - own0, 2), client_cpu_s_runner=round(runner_cpu, 2),
         target_ratio=target, target_met=None if target is None else ratio >= target,
         **machine())
    say(f"latency {latency_ms:g} ms, {backend}: plain loop {loop_fps:.0f} files/s "
        f"({loop_requests / n:.2f} requests/file), runner {runner_fps:.0f} files/s "
        f"({runner_requests / n:.2f} requests/file; task clock; {process_fps:.0f} with "
        f"process start) -> x{ratio:.2f} (target x{target}); fake-gcs-server CPU "
        f"{cpu1 - cpu0:.1f}s "
        f"(loop) vs {cpu3 - cpu2:.1f}s (runner); client CPU {own1 - own0:.1f}s vs "
        f"{runner_cpu:.1f}s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, help="inputs (default 2000; --quick 100)")
    p.add_argument("--latency-ms", type=float, action="append",
                   help="added per-request latency; repeatable (default: 0 and 10)")
    p.add_argument("--backend", choices=["memory", "filesystem"], default="filesystem",
                   help="fake-gcs-server backend (filesystem: flat cost per request, as GCS)")
    p.add_argument("--concurrency", type=int, default=32, help="GPUB_CONCURRENCY")
    p.add_argument("--profile", type=Path, help="cProfile the runner into DIR/<label>.prof")
    p.add_argument("--self-plan", action="store_true",
                   help="the runner plans from the prefix (no manifest), as the intake starts it")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--proxy", nargs=3, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.proxy:
        listen, target, latency = a.proxy
        asyncio.run(_proxy(int(listen), int(target), float(latency) / 1000))
        return 0
    n = a.files or (100 if a.quick else 2000)
    latencies = a.latency_ms or [0.0, 10.0]
    say(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as tmp:
        work = Path(tmp)
        folder = work / "seed" / BUCKET / "in"
        folder.mkdir(parents=True)
        names = [f"f{i:05d}.jsonl" for i in range(n)]
        for i, name in enumerate(names):
            line = json.dumps({"id": i, "text": "x" * 100}) + "\n"
            (folder / name).write_text((line * (10240 // len(line) + 1))[:10240])
        for latency in latencies:
            prof = None
            if a.profile:
                a.profile.mkdir(parents=True, exist_ok=True)
                prof = a.profile / f"runner-{latency:g}ms.prof"
            compare(names, latency, a.concurrency, a.backend, work / "seed",
                    work / f"{latency:g}ms", prof, a.self_plan)
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
