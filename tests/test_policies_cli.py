"""bin/check end to end (real checkov, real guardrails) and the suppression registry."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from policies.suppressions import Matcher, Suppression, SuppressionError, load

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "policies"
REGISTRY = ROOT / "policies" / "suppressions.yaml"


def make_out(tmp_path: Path, synth_dir: Path) -> Path:
    """A synth-like output dir: the example stacks of this tree's synth (conftest's session
    synth: a copied stack would go stale as the stacks change) plus one rendered job per
    stack."""
    out = tmp_path / "cdktf.out"
    for env in ("dev", "prod"):
        stack = f"platform-{env}"
        (out / "stacks" / stack).mkdir(parents=True)
        shutil.copy(synth_dir / "stacks" / stack / "cdk.tf.json", out / "stacks" / stack)
        (out / "jobs" / stack).mkdir(parents=True)
        shutil.copy(FIXTURES / "jobs" / "good_gpu_spot.json", out / "jobs" / stack / "embed.json")
    return out


def bin_check(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "bin" / "check"), "--no-synth", "--reports", str(tmp_path / "reports"), *args],
        capture_output=True,
        text=True,
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def inject(out: Path, rtype: str, name: str, conf: dict) -> None:
    path = out / "stacks" / "platform-dev" / "cdk.tf.json"
    doc = json.loads(path.read_text())
    doc["resource"].setdefault(rtype, {})[name] = conf
    path.write_text(json.dumps(doc, indent=2))


def test_example_passes_and_writes_reports(tmp_path: Path, synth_dir: Path) -> None:
    out = make_out(tmp_path, synth_dir)
    proc = bin_check(tmp_path, "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "policy checks passed" in proc.stdout
    sarif = json.loads((tmp_path / "reports" / "results_sarif.sarif").read_text())
    suppressed = [r for r in sarif["runs"][0]["results"] if r.get("suppressions")]
    assert suppressed and all(len(r["suppressions"][0]["justification"]) >= 10 for r in suppressed)
    junit = (tmp_path / "reports" / "results_junitxml.xml").read_text()
    assert "CKV_GPUB_1" in junit and "GPUB_JOB_7" in junit
    assert "platform-prod" in proc.stdout


def test_injected_editor_grant_fails(tmp_path: Path, synth_dir: Path) -> None:
    out = make_out(tmp_path, synth_dir)
    inject(
        out,
        "google_project_iam_member",
        "injected_editor",
        {
            "project": "example-ml-dev",
            "role": "roles/editor",
            "member": "serviceAccount:${google_service_account.job-embed_sa_F6.email}",
        },
    )
    proc = bin_check(tmp_path, "--out", str(out))
    assert proc.returncode == 1
    assert "FAILED CKV_GPUB_1 platform-dev google_project_iam_member.injected_editor" in proc.stdout


def test_public_bucket_binding_fails(tmp_path: Path, synth_dir: Path) -> None:
    out = make_out(tmp_path, synth_dir)
    buckets = json.loads((out / "stacks" / "platform-dev" / "cdk.tf.json").read_text())[
        "resource"]["google_storage_bucket"]
    data = next(n for n, b in buckets.items() if b.get("name", "").endswith("-batch-data"))
    inject(
        out,
        "google_storage_bucket_iam_binding",
        "public_read",
        {
            "bucket": f"${{google_storage_bucket.{data}.name}}",
            "role": "roles/storage.objectViewer",
            "members": ["allUsers"],
        },
    )
    proc = bin_check(tmp_path, "--out", str(out))
    assert proc.returncode == 1
    assert (
        "FAILED CKV_GPUB_4 platform-dev google_storage_bucket_iam_binding.public_read"
        in proc.stdout
    )
    # also the data-bucket prefix rule: an object role without a prefix condition
    assert (
        "FAILED CKV_GPUB_3 platform-dev google_storage_bucket_iam_binding.public_read"
        in proc.stdout
    )


def test_stack_file_option_and_bad_job(tmp_path: Path) -> None:
    proc = bin_check(
        tmp_path,
        "--stack-file",
        str(FIXTURES / "terraform" / "ckv_gpub_13_fail.tf.json"),
        "--job-file",
        str(FIXTURES / "jobs" / "gpub_job_8_fail.json"),
        "--env",
        "dev",
    )
    assert proc.returncode == 1
    assert "CKV_GPUB_13" in proc.stdout and "GPUB_JOB_8" in proc.stdout


def test_job_rule_warnings_print_and_fail_only_with_strict(tmp_path: Path) -> None:
    """Issue 23: one severity model; a warning (GPUB_JOB_8) prints, fails with --strict."""
    job = str(FIXTURES / "jobs" / "gpub_job_8_fail.json")
    plain = bin_check(tmp_path, "--job-file", job, "--env", "dev")
    assert plain.returncode == 0, plain.stdout
    assert "WARNING GPUB_JOB_8" in plain.stdout and "FAILED GPUB_JOB_8" not in plain.stdout
    strict = bin_check(tmp_path, "--job-file", job, "--env", "dev", "--strict")
    assert strict.returncode == 1 and "FAILED GPUB_JOB_8" in strict.stdout


def test_unused_and_expired_suppressions_fail_the_run(tmp_path: Path, synth_dir: Path) -> None:
    out = make_out(tmp_path, synth_dir)
    registry = tmp_path / "suppressions.yaml"
    entries = (
        REGISTRY.read_text()
        + "  - id: CKV_GPUB_5\n    resource: '*'\n    reason: nothing fails this rule here\n"
        "  - id: CKV_GPUB_6\n    resource: '*'\n    reason: an old exception kept\n"
        "    expires: 2020-01-01\n"
    )
    registry.write_text(entries)
    proc = bin_check(tmp_path, "--out", str(out), "--suppressions", str(registry))
    assert proc.returncode == 1
    assert "CKV_GPUB_5 on '*' matches no failing result" in proc.stdout
    assert "CKV_GPUB_6 on '*' expired on 2020-01-01" in proc.stdout


def test_short_reason_is_refused(tmp_path: Path) -> None:
    registry = tmp_path / "suppressions.yaml"
    registry.write_text("suppressions:\n  - id: CKV_GCP_62\n    resource: '*'\n    reason: logs\n")
    with pytest.raises(SuppressionError, match=r"suppressions\[0\]\.reason: .*at least 10"):
        load(registry)
    proc = bin_check(
        tmp_path,
        "--stack-file",
        str(FIXTURES / "terraform" / "ckv_gpub_5_pass.tf.json"),
        "--suppressions",
        str(registry),
    )
    assert proc.returncode == 1 and "at least 10 characters" in proc.stdout


def test_matcher_globs_and_expiry() -> None:
    entry = Suppression(
        id="CKV_GCP_62",
        resource="platform-*/buckets/logs",
        reason="the log bucket does not log itself",
        expires=dt.date(2030, 1, 1),
    )
    matcher = Matcher([entry], today=dt.date(2026, 1, 1))
    assert matcher.match("CKV_GCP_62", ["google_storage_bucket.x", "platform-dev/buckets/logs"])
    assert not matcher.match("CKV_GCP_62", ["platform-dev/buckets/data"])
    assert matcher.problems() == []
    assert (
        Matcher([entry], today=dt.date(2031, 1, 1))
        .problems()[0]
        .endswith("renew the entry with a new reason")
    )


def test_repository_registry_is_valid_and_small() -> None:
    entries = load(REGISTRY)
    assert len(entries) <= 3


@pytest.mark.parametrize(
    ("option", "content", "message"),
    [
        ("--stack-file", None, "--stack-file: cannot read"),
        ("--job-file", None, "--job-file: cannot read"),
        ("--job-file", '{"taskGroups": [', "is not valid JSON"),
        ("--stack-file", "not json", "is not valid JSON"),
    ],
)
def test_bad_input_files_exit_2_with_one_line(
    tmp_path: Path, option: str, content: str | None, message: str
) -> None:
    path = tmp_path / "input.json"
    if content is not None:
        path.write_text(content)
    proc = bin_check(tmp_path, option, str(path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "reports").exists(), "nothing is written for bad input"


# ---- bad input gets one line and exit 2 ------------------------------------------

@pytest.mark.parametrize(
    ("option", "content", "message"),
    [
        ("--job-file", "[" * 100_000 + "]" * 100_000, "nests deeper than 64 levels"),
        ("--stack-file", "[" * 100_000 + "]" * 100_000, "nests deeper than 64 levels"),
        ("--job-file", '{"a":' * 200 + "1" + "}" * 200, "nests deeper than 64 levels"),
        ("--job-file", '[{"taskGroups": []}]', "holds a JSON list; expected an object"),
        ("--stack-file", '"just a string"', "holds a JSON str; expected an object"),
        ("--job-file", b"\xff\xfe{}", "is not valid JSON"),
    ],
)
def test_deep_list_and_binary_json_exit_2_with_one_line(
    tmp_path: Path, option: str, content: str | bytes, message: str
) -> None:
    path = tmp_path / "input.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    proc = bin_check(tmp_path, option, str(path))
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert message in text and "Traceback" not in text
    assert len(text.strip().splitlines()) == 1, text
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "nope", "--job-file", str(FIXTURES / "jobs" / "good_gpu_spot.json")],
         "--env: unknown environment 'nope' (known: dev, prod)"),
        (["--reports", "/dev/null/x", "--job-file", str(FIXTURES / "jobs" / "good_gpu_spot.json")],
         "--reports: cannot create /dev/null/x"),
    ],
)
def test_bad_env_and_reports_dir_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    proc = subprocess.run(
        [str(ROOT / "bin" / "check"), "--no-synth", *args],
        capture_output=True, text=True, check=False, cwd=tmp_path,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert message in " ".join(text.split()) and "Traceback" not in text


def test_a_good_loose_job_file_passes(tmp_path: Path) -> None:
    # Stack suppressions that a lone job file cannot use are not "unused" in this mode.
    proc = bin_check(tmp_path, "--job-file", str(FIXTURES / "jobs" / "good_gpu_spot.json"),
                     "--env", "dev")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "matches no failing result" not in proc.stdout
    assert "policy checks passed" in proc.stdout


def test_json_output_is_one_document_on_stdout(tmp_path: Path) -> None:
    """`bin/check --json`: stdout is exactly one JSON object naming each failure; the people's
    output (table, FAILED lines) goes to stderr so the JSON parses."""
    proc = bin_check(
        tmp_path, "--json",
        "--stack-file", str(FIXTURES / "terraform" / "ckv_gpub_13_fail.tf.json"),
        "--job-file", str(FIXTURES / "jobs" / "gpub_job_6_fail.json"),
        "--env", "dev",
    )
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["passed"] is False
    ids = {f["check_id"] for f in doc["failed"]}
    assert {"CKV_GPUB_13", "GPUB_JOB_6"} <= ids
    assert all(set(f) == {"check_id", "stack", "resource", "file", "line", "detail"}
               for f in doc["failed"])
    assert doc["checks_run"] >= doc["passed_checks"] + len(doc["failed"])
    assert "FAILED CKV_GPUB_13" in proc.stderr


def test_json_output_of_a_passing_run(tmp_path: Path, synth_dir: Path) -> None:
    proc = bin_check(tmp_path, "--json", "--out", str(make_out(tmp_path, synth_dir)))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["passed"] is True and doc["failed"] == [] and doc["suppression_problems"] == []
    assert doc["suppressed"] > 0 and len(doc["reports"]) == 3
