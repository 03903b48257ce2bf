"""No traceback from any bin/ command (issue 23 item 7): a hypothesis property over the
arguments of bin/check, every bin/submit subcommand, bin/refresh-prices and bin/import-job
(in-process, the commands' own entry points), and bin/demo's help-ish arguments: the exit code
is one the command documents and a refusal is one line, never a traceback."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs import sku_refresh
from policies import check_cli, import_cli
from submit import cli as submit_cli

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "tests" / "fixtures" / "asis" / "jobs" / "hello_script.json"
ROOT_TMP = Path("/tmp/gpub-cli-property")  # fixed, so hypothesis examples replay the same


def _files() -> dict[str, str]:
    ROOT_TMP.mkdir(exist_ok=True)
    files = {"list.json": "[]", "obj.json": "{}", "notjson": "x{", "deep.json": "[" * 200,
             "latin1.json": "\udcff"}
    for name, text in files.items():
        (ROOT_TMP / name).write_text(text, encoding="utf-8", errors="surrogateescape")
    (ROOT_TMP / "dir").mkdir(exist_ok=True)
    return {n: str(ROOT_TMP / n) for n in [*files, "dir"]}


FILES = _files()
VALUES = st.one_of(
    st.sampled_from(["", "-", "dev", "prod", "nope", "999999d", "-1", "0", "1e309", "nan",
                     "x" * 300, "/nonexistent/f", "gs://", "gs://b", "gs://b/p/", "é",
                     "SUCCEEDED", "12h", "2026-13-45", str(SAMPLE), *FILES.values()]),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12),
)
SUBMIT_OPTIONS = ["--env", "--client", "--input", "--output", "--config", "--since",
                  "--state", "--parallelism", "--max-cost", "--task", "--limit", "--job",
                  "--out", "--poll", "--name"]
SUBMIT_FLAGS = ["--json", "--dry-run", "--overwrite", "--help"]


def _argv(options: Sequence[str], flags: Sequence[str]) -> st.SearchStrategy[list[str]]:
    pair = st.tuples(st.sampled_from(list(options)), VALUES).map(list)
    flag = st.sampled_from(list(flags)).map(lambda f: [f])
    positional = VALUES.map(lambda v: [v])
    parts = st.lists(st.one_of(pair, flag, positional), max_size=4)
    return parts.map(lambda ps: [a for p in ps for a in p])


def _call(entry: Callable[[list[str]], object], argv: list[str]) -> int:
    try:
        code = entry(argv)
    except SystemExit as exc:
        code = exc.code
    return int(code) if isinstance(code, int) else (0 if code is None else 2)


def _assert_one_line_or_ok(code: int, allowed: set[int], out: str, err: str) -> None:
    assert code in allowed, (code, out, err)
    assert "Traceback" not in out + err
    if code in (2, 3, 4):
        lines = [ln for ln in (out + err).splitlines() if ln.strip()]
        assert len(lines) == 1, lines


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials and no metadata server: a command that would call Google fails fast."""
    for var in ("CLOUD_BILLING_API_KEY", "STORAGE_EMULATOR_HOST", "GPUB_ENV"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-credentials.json"))
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("GPUB_LOCAL_ROOT", str(tmp_path / "local"))
    monkeypatch.chdir(tmp_path)


PROPERTY = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@PROPERTY
@given(command=st.sampled_from(list(submit_cli.COMMANDS)),
       argv=_argv(SUBMIT_OPTIONS, SUBMIT_FLAGS))
def test_submit_subcommands(command: str, argv: list[str],
                            capsys: pytest.CaptureFixture[str]) -> None:
    if "--local" in argv or "--wait" in argv:
        return
    capsys.readouterr()
    code = _call(submit_cli.main, [command, *argv])
    out, err = capsys.readouterr()
    _assert_one_line_or_ok(code, {0, 1, 2, 3, 4}, out, err)


@PROPERTY
@given(argv=_argv(["--out", "--reports", "--env", "--stack-file", "--job-file",
                   "--suppressions"], ["--json", "--strict", "--help"]))
def test_check(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    code = _call(check_cli.run, ["--no-synth", "--out", FILES["dir"], *argv])
    out, err = capsys.readouterr()
    _assert_one_line_or_ok(code, {0, 1, 2}, out, err)


@PROPERTY
@given(argv=_argv(["--name"], ["--strict", "--help"]))
def test_import_job(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    code = _call(import_cli.main, argv)
    out, err = capsys.readouterr()
    _assert_one_line_or_ok(code, {0, 2}, "" if code == 0 else out, err if code else "")


@PROPERTY
@given(argv=_argv(["--region", "--out", "--endpoint"], ["--help"]))
def test_refresh_prices(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    code = _call(sku_refresh.main, argv)
    out, err = capsys.readouterr()
    _assert_one_line_or_ok(code, {0, 2, 4}, out, err)


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["--version"], ["--bogus"], ["extra"]])
def test_demo_help_ish_arguments(args: list[str]) -> None:
    proc = subprocess.run([str(REPO / "bin" / "demo"), *args], capture_output=True, text=True,
                          timeout=60)
    _assert_one_line_or_ok(proc.returncode, {0, 2}, proc.stdout, proc.stderr)
    if proc.returncode == 0:
        assert proc.stdout.strip()
    else:
        assert "usage: bin/demo" in proc.stderr


def test_the_defects_the_issue_names() -> None:
    """`list --since 999999d` and `refresh-prices` without credentials were tracebacks."""
    import io
    from contextlib import redirect_stderr

    err = io.StringIO()
    with redirect_stderr(err):
        code = _call(submit_cli.main, ["list", "--since", "999999d", "--env", "dev"])
    assert code == 2 and "--since" in err.getvalue() and "Traceback" not in err.getvalue()


@pytest.mark.parametrize(("args", "message"), [
    (["--suppressions", FILES["dir"]], "--suppressions: cannot read"),
    (["--env"], "Option '--env' requires an argument"),
    (["--bogus"], "No such option: --bogus"),
    (["--out", ""], "holds the repository"),
])
def test_bin_check_argument_cases(args: list[str], message: str,
                                  monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Were tracebacks or a synth into the repository itself (`--out ''` from its root)."""
    monkeypatch.chdir(REPO)
    code = _call(check_cli.run, args)
    out, err = capsys.readouterr()
    _assert_one_line_or_ok(code, {2}, out, err)
    assert message in out + err
    assert not (REPO / "stacks" / "platform-dev").exists()
