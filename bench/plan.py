"""Planning a batch in the job (gpub_runner.jobplan, the planner bin/submit shares): list calls
and seconds for task 0 to list, apply the name rule, split over tasks, write the shards and
commit `_plan.json`.

Two sources of listing:
- a fake listing (default 1,000,000 objects): an in-process store that serves pages of 1,000
  synthetic objects and keeps what is written in memory, so the figure is the planner's own
  cost (CPU, memory) and its request count, without a server;
- `--real N`: fake-gcs-server seeded with N real objects (default 20,000; 1,000,000 real
  objects would take this 2-core machine far too long to seed and serve).

    .venv/bin/python -m bench.plan                  # 1,000,000 fake + 20,000 real
    .venv/bin/python -m bench.plan --files 100000 --real 0
    .venv/bin/python -m bench.plan --quick          # 20,000 fake + 2,000 real
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

from gpub_runner import contract
from gpub_runner.config import Config, GcsUri
from gpub_runner.gcs import LIST_PAGE_SIZE, ObjectStat
from gpub_runner.jobplan import JobPlanner
from gpub_runner.logs import JsonLogger

from bench._common import emit, machine, say

BUCKET = "bench"


class FakeListingStore:
    """Serves `n` synthetic inputs under `in/` in pages of 1,000; everything else in memory."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.objects: dict[str, tuple[bytes, int]] = {}
        self.requests: Counter[str] = Counter()
        self.lock = threading.Lock()

    def _count(self, kind: str) -> None:
        with self.lock:
            self.requests[kind] += 1

    def iter_objects(self, prefix: GcsUri, *, metadata: bool = False) -> Iterator[ObjectStat]:
        if prefix.name == "in/":
            for start in range(0, self.n, LIST_PAGE_SIZE):
                self._count("list")
                for i in range(start, min(self.n, start + LIST_PAGE_SIZE)):
                    yield ObjectStat(f"in/d{i // 10_000:03d}/f{i:07d}.jsonl", str(10**15 + i),
                                     1000 + i % 977)
            return
        self._count("list")
        yield from ()

    def fetch(self, uri: GcsUri, *, generation: str | int | None = None,
              deadline_s: float | None = None) -> tuple[bytes, str | None]:
        from google.api_core import exceptions as gexc

        self._count("get")
        if uri.name not in self.objects:
            raise gexc.NotFound(uri.name)
        data, gen = self.objects[uri.name]
        return data, str(gen)

    def read(self, uri: GcsUri, **_: object) -> bytes:
        return self.fetch(uri)[0]

    def create(self, uri: GcsUri, data: bytes, content_type: str, *,
               metadata: Mapping[str, str] | None = None, if_generation_match: int = 0,
               deadline_s: float | None = None) -> bool:
        self._count("put")
        with self.lock:
            current = self.objects.get(uri.name, (b"", 0))[1]
            if current != if_generation_match:
                return False
            self.objects[uri.name] = (bytes(data), current + 1)
            return True

    def put(self, uri: GcsUri, data: bytes, content_type: str) -> None:
        self._count("put")

    def delete_if_exists(self, uri: GcsUri) -> None:
        self._count("delete")
        self.objects.pop(uri.name, None)


def config(n: int, tasks: int, endpoint_prefix: str = "") -> Config:
    return Config.from_env({
        "GPUB_HANDLER": "x:y", "GPUB_INPUT_PREFIX": f"gs://{BUCKET}/in/",
        "GPUB_OUTPUT_PREFIX": f"gs://{BUCKET}/out{endpoint_prefix}/",
        "GPUB_INPUT_FORMAT": "jsonl", "GPUB_EXPECTED_INPUTS": str(n), "GPUB_JOB_NAME": "bench",
        "BATCH_TASK_INDEX": "0", "BATCH_TASK_COUNT": str(tasks), "GPUB_CONCURRENCY": "32",
    })


def measure(name: str, store: object, n: int, source: str) -> None:
    split = contract.task_split(n, None)  # one wave, as the intake workflow sizes it
    cfg = config(n, split.task_count)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    share = JobPlanner(cfg, store, JsonLogger(io.StringIO())).my_share()  # type: ignore[arg-type]
    seconds = time.perf_counter() - t0
    requests = dict(getattr(store, "requests", {}))
    lists = requests.get("list", 0)
    emit("plan", name, files=n, source=source, tasks=split.task_count,
         task0_share=len(share), seconds=round(seconds, 2), list_calls=lists,
         list_calls_per_1000_files=round(1000 * lists / n, 3), requests=requests,
         peak_rss_mib_growth=round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                    - rss0) / 1024, 1), **machine())
    say(f"{name}: {n:,} listed objects ({source}) -> {split.task_count} tasks in "
        f"{seconds:.1f}s, {lists} list calls ({1000 * lists / n:.2f} per 1,000 files), "
        f"requests {requests}")


def real(n: int) -> None:
    from gpub_runner.gcs import Store

    from bench.runner import start_gcs

    with tempfile.TemporaryDirectory(prefix="bench-plan-") as tmp:
        work = Path(tmp)
        for i in range(n):
            folder = work / "seed" / BUCKET / "in" / f"d{i // 10_000:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"f{i:07d}.jsonl").write_text("{}\n")
        proc, port = start_gcs("memory", work / "seed", work)
        try:
            os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
            store = Store(pool_size=40)
            measure("fake_gcs_server", store, n, "fake-gcs-server")
            store.close()
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            os.environ.pop("STORAGE_EMULATOR_HOST", None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, help="fake listing size (default 1,000,000)")
    p.add_argument("--real", type=int, help="objects on fake-gcs-server (default 20,000; 0: skip)")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    n = a.files or (20_000 if a.quick else 1_000_000)
    n_real = a.real if a.real is not None else (2_000 if a.quick else 20_000)
    say(f"machine: {json.dumps(machine())}")
    measure("fake_listing", FakeListingStore(n), n, "fake listing")
    if n_real:
        real(n_real)
    return 0


if __name__ == "__main__":
    sys.exit(main())
