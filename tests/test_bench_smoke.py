"""Smoke test: every benchmark script runs with tiny parameters and prints JSON lines.

Benchmarks live in bench/ (figures in bench/RESULTS.md), never in unit-test files; this is the
one place tests run them, as subprocesses: `slow`, so `bin/test --fast` skips it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# (script, args, expected measurement names); the tiny sizes keep the total under a minute.
CASES = [
    ("cost.py", [], {"robotoff_as_run", "files_10000_ratio"}),
    ("submit.py", ["--quick", "--repeat", "1", "--only", "startup", "--only", "memory"],
     {"submit_help", "submit_dry_run_local", "dry_run_provider_modules",
      "plan_in_memory_size_balanced"}),
    ("submit.py", ["--only", "listing", "--listed", "300"], {"plan_from_fake_gcs"}),
    ("runner.py", ["--quick", "--files", "40", "--latency-ms", "0", "--latency-ms", "5"],
     {"latency_0ms", "latency_5ms"}),
    ("synth.py", ["--clients", "2", "--jobs", "1"], {"n1_m1", "n2_m1"}),
    ("check.py", ["--quick"], {"n1_m2"}),
    ("capacity.py", ["--quick"], {"direct", "stockout"}),
    ("iam.py", ["--quick", "--files", "20"], {"runner_throughput_latency_0ms"}),
    pytest.param("embed.py", ["--quick"], {"embed_cpu"}, id="embed.py", marks=pytest.mark.skipif(
        importlib.util.find_spec("sentence_transformers") is None,
        reason="the embed extra (torch, sentence-transformers) is not installed")),
]


@pytest.mark.parametrize(("script", "args", "names"), CASES)
def test_benchmark_prints_json_lines(script: str, args: list[str], names: set[str]) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert lines and all(isinstance(rec, dict) and "name" in rec for rec in lines)
    assert names <= {rec["name"] for rec in lines}
