"""One CLI: --version on every bin/ command, shell completion, one --env rule, list filters,
bin/demo --help, help texts that name bin/ commands, and credentials preflight for cdktn."""

from __future__ import annotations

import os
import subprocess
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from submit import listing
from submit.errors import SubmitError

REPO = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
BIN_COMMANDS = ["submit", "check", "import-job", "test", "demo", "cdktn", "cdktf",
                "refresh-prices", "bootstrap", "lock-providers"]


def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 60,
         drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("GPUB_ENV", *drop)}
    return subprocess.run(list(args), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**base, **(env or {})})


@pytest.mark.parametrize("name", BIN_COMMANDS)
def test_every_bin_command_has_version(name: str) -> None:
    proc = _run(str(REPO / "bin" / name), "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == f"{name} (gpu-batch-platform) {VERSION}"


def test_every_bin_command_is_covered() -> None:
    found = {p.name for p in (REPO / "bin").iterdir()
             if p.is_file() and os.access(p, os.X_OK) and not p.name.startswith("_")}
    assert found == set(BIN_COMMANDS)


def test_demo_help_prints_help_and_runs_nothing(tmp_path: Path) -> None:
    proc = _run(str(REPO / "bin" / "demo"), "--help", timeout=10)
    assert proc.returncode == 0
    assert proc.stdout.startswith("Usage: bin/demo")
    assert "Synthesize" not in proc.stderr  # the demo's first step never started


def test_submit_completion_is_on() -> None:
    assert "--install-completion" in _run(str(REPO / "bin" / "submit"), "--help").stdout
    proc = _run(str(REPO / "bin" / "submit"), env={
        "_SUBMIT_COMPLETE": "complete_bash", "COMP_WORDS": "submit st", "COMP_CWORD": "1"})
    assert proc.stdout.split() == ["status"]


def test_every_env_option_follows_one_rule() -> None:
    import typer

    from submit.cli import app

    group = typer.main.get_command(app)
    commands = group.commands  # type: ignore[attr-defined]
    with_env = {name for name, cmd in commands.items()
                if any(p.name == "env" for p in cmd.params)}
    assert {"run", "status", "list", "cancel", "logs", "where", "upload", "ls"} <= with_env
    for name in with_env:
        param = next(p for p in commands[name].params if p.name == "env")
        assert param.envvar == "GPUB_ENV", name


@pytest.mark.parametrize("args", [
    ["status", "some-job"],
    ["run", "uppercase", "--input", "gs://b/in/", "--output", "gs://b/out/"],
    ["where", "--client", "acme", "--job", "uppercase"],
])
def test_env_comes_from_gpub_env(args: list[str]) -> None:
    proc = _run(str(REPO / "bin" / "submit"), *args, env={"GPUB_ENV": "nope"})
    assert proc.returncode == 2
    assert "--env: unknown environment 'nope'" in proc.stderr


def test_run_defaults_to_dev_like_every_other_command() -> None:
    proc = _run(str(REPO / "bin" / "submit"), "run", "nosuchjob", "--input", "gs://b/in/",
                "--output", "gs://b/out/")
    assert proc.returncode == 2
    assert "JOB: unknown job 'nosuchjob' in environment 'dev'" in proc.stderr


def test_check_help_names_bin_check() -> None:
    out = _run(str(REPO / "bin" / "check"), "--help").stdout
    assert "bin/check" in out and "python -m policies" not in out


def test_cdktn_diff_without_credentials_is_one_line(tmp_path: Path) -> None:
    # No ADC anywhere: no key file variable, an empty gcloud config, no metadata server here.
    env = {"CLOUDSDK_CONFIG": str(tmp_path), "HOME": str(tmp_path)}
    proc = _run(str(REPO / "bin" / "cdktn"), "diff", env=env, timeout=120,
                drop=("GOOGLE_APPLICATION_CREDENTIALS",))
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("cdktn diff: no Google credentials")
    assert "    at " not in proc.stderr  # no Node stack trace


# ------------------------------------------------------------------- list filters


NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(("value", "expected"), [
    ("30m", NOW - timedelta(minutes=30)),
    ("12h", NOW - timedelta(hours=12)),
    ("7d", NOW - timedelta(days=7)),
    ("2026-11-29", datetime(2026, 11, 29, tzinfo=UTC)),
    ("2026-11-29T08:00:00+01:00", datetime(2026, 11, 29, 7, tzinfo=UTC)),
])
def test_since_accepts_durations_and_dates(value: str, expected: datetime) -> None:
    assert listing.parse_since(value, NOW) == expected


@pytest.mark.parametrize("bad", ["yesterday", "12", "5y", ""])
def test_bad_since_names_the_option(bad: str) -> None:
    with pytest.raises(SubmitError, match="--since"):
        listing.parse_since(bad, NOW)


def test_filters_combine() -> None:
    rows = [
        {"job_id": "a", "state": "FAILED", "labels": {"client": "acme", "job": "uppercase"},
         "created": "2026-11-30T08:30:00+00:00"},
        {"job_id": "b", "state": "SUCCEEDED", "labels": {"client": "acme", "job": "embed"},
         "created": "2026-11-30T08:40:00+00:00"},
        {"job_id": "c", "state": "FAILED", "labels": {"client": "globex", "job": "uppercase"},
         "created": "2026-11-20T08:00:00+00:00"},
    ]
    pick = lambda **kw: [r["job_id"] for r in listing.filter_jobs(rows, **kw)]  # noqa: E731
    assert pick(client="acme") == ["a", "b"]
    assert pick(job="uppercase", state=listing.check_state("failed")) == ["a", "c"]
    assert pick(since=listing.parse_since("1d", NOW)) == ["a", "b"]
    assert pick(client="acme", job="embed", state="FAILED") == []


def test_bad_state_is_refused_on_the_command_line() -> None:
    proc = _run(str(REPO / "bin" / "submit"), "list", "--state", "done")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("submit: error: --state: 'done'")


def test_logs_raw_and_json_together_is_one_line_and_exit_2() -> None:
    proc = _run(str(REPO / "bin" / "submit"), "logs", "some-job", "--raw", "--json")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "submit: error: --raw: use one of --raw and --json"]


def test_start_up_imports_no_google_client() -> None:
    """Users run bin/submit by hand and CI in loops: importing the CLI (every command's
    module included) must not load google-cloud-batch, grpc or google-cloud-storage."""
    code = ("import sys, submit.cli; heavy = [m for m in ('google.cloud.batch_v1', 'grpc', "
            "'google.cloud.storage') if m in sys.modules]; print(heavy)")
    # The import path bin/submit sets (its own checkout's runtime contract, not whichever
    # checkout the shared venv's editable gpub_runner points at).
    proc = _run(str(REPO / ".venv" / "bin" / "python"), "-c", code,
                env={"PYTHONPATH": f"{REPO}:{REPO / 'images' / 'runner' / 'src'}"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("args", [["ls"], ["cat", "x.jsonl", "--batch", "b1"]])
def test_data_commands_without_credentials_say_so_in_one_line(
        args: list[str], tmp_path: Path) -> None:
    """In Google Cloud the data commands impersonate the client's identity, starting from
    Application Default Credentials; without any, one line and exit 2."""
    proc = _run(str(REPO / "bin" / "submit"), *args, "--client", "acme", "--job", "uppercase",
                env={"CLOUDSDK_CONFIG": str(tmp_path), "HOME": str(tmp_path)},
                drop=("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("submit: error: no Google credentials")
