"""Smoke test: every benchmark runs with tiny parameters and prints JSON lines.

Benchmarks live in bench/ (figures in bench/RESULTS.md), never in unit-test files; this is the
one place tests run them, as subprocesses: `slow`, so `bin/test --fast` skips it. Each runs
as documented, `python -m bench.<name>`, with the working directory off sys.path (-P): the
package and everything it imports come from the install."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# (benchmark, args, expected measurement names); the tiny sizes keep the total under a minute.
CASES = [
    ("cost", [], {"robotoff_as_run", "files_10000_ratio"}),
    ("submit", ["--quick", "--repeat", "1", "--only", "startup", "--only", "memory"],
     {"submit_help", "submit_dry_run_local", "dry_run_provider_modules",
      "plan_in_memory_size_balanced"}),
    ("submit", ["--only", "listing", "--listed", "300"], {"plan_from_fake_gcs"}),
    ("runner", ["--quick", "--files", "40", "--latency-ms", "0", "--latency-ms", "5"],
     {"latency_0ms", "latency_5ms"}),
    ("synth", ["--clients", "2", "--jobs", "1"], {"n1_m1", "n2_m1"}),
    ("check", ["--quick"], {"n1_m2"}),
    ("capacity", ["--quick"], {"direct", "stockout"}),
    ("iam", ["--quick", "--files", "20"], {"runner_throughput_latency_0ms"}),
    ("intake", ["--quick"], {"executions", "steps"}),
    pytest.param("embed", ["--quick"], {"embed_cpu"}, id="embed", marks=pytest.mark.skipif(
        importlib.util.find_spec("sentence_transformers") is None,
        reason="the embed extra (torch, sentence-transformers) is not installed")),
]


@pytest.mark.parametrize(("bench", "args", "names"), CASES)
def test_benchmark_prints_json_lines(bench: str, args: list[str], names: set[str],
                                     tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-P", "-m", f"bench.{bench}", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert lines and all(isinstance(rec, dict) and "name" in rec for rec in lines)
    assert names <= {rec["name"] for rec in lines}
