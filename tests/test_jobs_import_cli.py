"""`bin/import-job` as a user runs it: findings, --strict, hostile input, one line and exit 2."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tests" / "fixtures" / "batch_samples"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "bin/import-job"), *args], capture_output=True, text=True, cwd=cwd
    )


def test_findings_and_notes_go_to_stderr_code_to_stdout() -> None:
    out = run(str(SAMPLES / "gpu_driver_install.json"), "--name", "cuda")
    assert out.returncode == 0, out.stderr
    assert "SPEC = JobSpec(" in out.stdout
    assert (
        "warning: GPUB_JOB_10 allocationPolicy.instances[0].policy.bootDisk.sizeGb: GPU job "
        "without a boot disk size" in out.stderr
    )
    assert "add bootDisk.sizeGb >= 100" in out.stderr


def test_strict_keeps_the_old_refusals() -> None:
    gpu = run("--strict", str(SAMPLES / "gpu_driver_install.json"))
    assert gpu.returncode == 2 and gpu.stdout == ""
    assert len(gpu.stderr.strip().splitlines()) == 1
    assert "--strict" in gpu.stderr and "GPUB_JOB_10" in gpu.stderr
    untyped = run("--strict", str(SAMPLES / "custom_network.json"))
    assert untyped.returncode == 2 and "kept in batch_overrides" in untyped.stderr
    # A job with nothing to report imports in strict mode too.
    clean = run("--strict", str(SAMPLES / "spot_retry_exit_codes.json"))
    assert clean.returncode == 0, clean.stderr


def test_evil_file_name_is_escaped_in_the_generated_code(tmp_path: Path) -> None:
    evil = tmp_path / 'evil""";import os;print("PWNED");""".json'
    evil.write_text((SAMPLES / "run_in_order.json").read_text())
    out = run(str(evil))
    assert out.returncode == 0, out.stderr
    module = tmp_path / "x.py"
    module.write_text(out.stdout)
    ran = subprocess.run(
        [sys.executable, "-c", "import x; print(x.SPEC.name)"],
        capture_output=True, text=True, cwd=tmp_path,
        env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "PWNED" not in ran.stdout
    assert ran.stdout.strip() == "evil-import-os-print-pwned"


def test_hostile_values_are_escaped_too(tmp_path: Path) -> None:
    job = (SAMPLES / "run_in_order.json").read_text()
    job = job.replace("sleep 10", 'sleep 10\\n\\"\\"\\"; import os; os.system(\\"echo PWNED\\")#')
    path = tmp_path / "job.json"
    path.write_text(job)
    out = run(str(path))
    assert out.returncode == 0, out.stderr
    namespace: dict[str, object] = {}
    exec(compile(out.stdout, "<import-job>", "exec"), namespace)
    assert "os.system" in str(getattr(namespace["SPEC"], "script", ""))


@pytest.mark.parametrize(
    ("content", "text"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested 100000 levels deep"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nested 100000 levels deep"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"", "empty"),
        (b"[1, 2]", "JSON object; got a list"),
        (b"taskGroups: [", "malformed YAML"),
    ],
    ids=["deep-list", "deep-object", "not-utf8", "empty", "list", "bad-yaml"],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, content: bytes, text: str) -> None:
    path = tmp_path / "job.json"
    path.write_bytes(content)
    out = run(str(path))
    assert out.returncode == 2
    assert out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert text in out.stderr
    assert "Traceback" not in out.stderr


# The README's import example, line for line and through bin/check's job rules:
# tests/test_readme_import.py.


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_FIELDS = st.sampled_from(["taskGroups", "allocationPolicy", "labels", "logsPolicy", "name"])


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    content=st.binary(max_size=200)
    | _JSON.map(lambda v: json.dumps(v).encode())
    | st.dictionaries(_FIELDS, _JSON, max_size=4).map(lambda v: json.dumps(v).encode())
)
def test_any_bytes_give_exit_0_or_2_and_never_a_traceback(content: bytes) -> None:
    """Random bytes and structures: exit 0 or 2, one line on error, no traceback."""
    from policies.import_cli import main

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "job.json"
        path.write_bytes(content)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main([str(path)])
    assert code in (0, 2)
    if code == 2:
        assert len(err.getvalue().strip().splitlines()) == 1, err.getvalue()


def test_dash_reads_stdin_like_gcloud() -> None:
    text = (SAMPLES / "config_trailing_commas.yaml").read_text()
    out = subprocess.run(
        [str(ROOT / "bin/import-job"), "-", "--name", "transcode"],
        input=text, capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "name='transcode'" in out.stdout and "imported from stdin" in out.stdout
