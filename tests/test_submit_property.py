"""Property: whatever bytes or argument structures `bin/submit` gets, it answers with an exit
code and at most a one-line error, never a traceback (docs/submit.md, "bad input gets one line and
exit 2, everywhere").

The test runs with no synthesized jobs (an empty synth dir) and no Google credentials, so no
argument list can reach a service: every outcome is exit 0 (help), 2 (refused) or 3, or, for a
command that parsed completely and would now call Google, exit 4 with the one-line "no Google
credentials" message. `--local` is left out (it would start the local servers).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from submit import cli

REPO = Path(__file__).resolve().parents[1]
DEV = "gs://example-ml-dev-batch-data"
WORDS = [
    # commands and jobs
    "run", "status", "list", "cancel", "logs", "uppercase", "embed", "nosuchjob",
    # options
    "--env", "-e", "--input", "-i", "--output", "-o", "--client", "--dry-run", "--wait",
    "--overwrite", "--max-cost", "--parallelism", "-p", "--json", "--out", "--limit", "--poll",
    "--help", "--",
    # values, good and bad
    "dev", "prod", "nope", "acme", "globex", "batch-data", "adhoc", "0", "-1", "3", "1e309",
    "nan", "inf", "", " ", "../../etc/passwd", "/dev/null/x", "projects/x/locations/y/jobs/z",
    "projects/example-ml-dev/locations/europe-west4/jobs/uppercase-0123456789-1",
    "uppercase-0123456789-1", f"{DEV}/in/", f"{DEV}/out/", f"{DEV}/in/out/",
    "gs://example-ml-dev-acme/inputs/uppercase/b1/",
    "gs://example-ml-dev-acme/outputs/uppercase/b1/", "gs://example-ml-prod-acme/inputs/x/",
    "gs://Bad_Bucket/x/", "gs://b/" + "x" * 1100, "s3://b/x/", "gs://b/a\x00b/", "gs://b/*/",
]
token = st.one_of(
    st.sampled_from(WORDS),
    st.text(max_size=30),
    st.binary(max_size=30).map(lambda b: b.decode("utf-8", "surrogateescape")),
)
argv_lists = st.lists(token, max_size=12)
NO_CREDENTIALS = "submit: error: no Google credentials"


def check_outcome(code: int, out: str, err: str) -> None:
    assert "Traceback" not in err and "Traceback" not in out
    assert code in (0, 2, 3, 4), (code, err)
    if code == 4:
        assert err.strip().startswith(NO_CREDENTIALS), err
    if code in (2, 3, 4):
        errors = [ln for ln in err.splitlines() if ln.startswith("submit: error: ")]
        if errors:  # a refusal: exactly one line, nothing else
            assert err.strip().splitlines() == errors and len(errors) == 1, err
        else:  # no command at all: the help text
            assert code == 2 and err.startswith("Usage: submit"), err


@pytest.fixture(scope="module")
def isolated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    empty = tmp_path_factory.mktemp("no-synth")
    return {"GPUB_SYNTH_DIR": str(empty), "GPUB_LOCAL_ROOT": str(empty / "local"),
            "GOOGLE_APPLICATION_CREDENTIALS": str(empty / "missing-credentials.json"),
            "GPUB_SUBMITTER": "property-test"}


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=argv_lists)
def test_any_arguments_give_a_clean_exit(argv: list[str], isolated: dict[str, str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a for a in argv if a != "--local"]
    with mock.patch.dict(os.environ, isolated):
        try:
            cli.main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0
        else:
            raise AssertionError("main() returned without sys.exit")
    out, err = capsys.readouterr()
    check_outcome(code, out, err)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.lists(st.binary(min_size=1, max_size=20).filter(lambda b: b"\x00" not in b),
                    min_size=1, max_size=5))
def test_raw_bytes_through_bin_submit(raw: list[bytes], isolated: dict[str, str]) -> None:
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", **isolated}
    proc = subprocess.run([str(REPO / "bin" / "submit").encode(), *raw], env=env,
                          capture_output=True, timeout=60)
    err = proc.stderr.decode("utf-8", "replace")
    check_outcome(proc.returncode, proc.stdout.decode("utf-8", "replace"), err)
