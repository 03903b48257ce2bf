"""Data commands (`where`, `upload`, `ls`, `cat`) and the onboarding story they make possible.

Pure parts are tested directly; the commands run as `bin/submit ...` subprocesses against the
embedded local backend (real google-cloud-storage client on fake-gcs-server), each test module
with its own backend root.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stacks.environments import dev
from submit.errors import SubmitError
from submit.where import check_batch, locate

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------- pure


def test_where_names_come_from_the_tenancy_v2_settings() -> None:
    env = dev()
    loc = locate(env, "acme", "uppercase")
    bucket = env.client_bucket("acme")
    assert loc.bucket == bucket == "example-ml-dev-acme"
    assert loc.inputs == f"gs://{bucket}/inputs/uppercase/"
    assert loc.input_prefix("b1") == f"gs://{bucket}/inputs/uppercase/b1/"
    assert loc.output_prefix("b1") == f"gs://{bucket}/outputs/uppercase/b1/"
    assert loc.client_identity == env.client_sa_email("acme")
    assert loc.run_identity == env.run_sa_email("acme")
    assert loc.results_subscription.endswith("/subscriptions/batch-acme-results-sub")
    assert loc.markers == f"gs://{bucket}/inputs/_ready/uppercase/"
    assert loc.marker("b1") == f"gs://{bucket}/{env.layout.marker('uppercase', 'b1')}"


def test_data_commands_act_as_the_client_through_the_backend_seam() -> None:
    """Data commands use submit/backend.py like every command: locally as the client's
    principal (checked by the local IAM layer), on Google impersonating it; --as-self: the
    operator identity locally, plain ADC on Google. Submit commands act as the operator."""
    from submit import backend as seam
    from submit.data import data_backend

    env = dev()
    loc = locate(env, "acme", "uppercase")
    local = data_backend(env, loc, local=True, as_self=False)
    assert isinstance(local, seam.LocalBackend)
    assert local.principal == env.client_sa_email("acme") != env.operator_sa_email
    google = data_backend(env, loc, local=False, as_self=False)
    assert isinstance(google, seam.GoogleBackend)
    assert google.impersonate == env.client_sa_email("acme")
    mine = data_backend(env, loc, local=True, as_self=True)
    assert isinstance(mine, seam.LocalBackend) and mine.principal == env.operator_sa_email
    adc = data_backend(env, loc, local=False, as_self=True)
    assert isinstance(adc, seam.GoogleBackend) and adc.impersonate is None
    # The operator's commands never impersonate on Google (ADC decides there).
    op = seam.backend_for(False, env.operator_sa_email)
    assert isinstance(op, seam.GoogleBackend) and op.impersonate is None


@pytest.mark.parametrize(("client", "job", "needle"), [
    ("nobody", "uppercase", "--client: unknown client 'nobody'"),
    ("globex", "embed", "--job: client 'globex' is not onboarded for job 'embed'"),
])
def test_where_refuses_clients_not_onboarded(client: str, job: str, needle: str) -> None:
    with pytest.raises(SubmitError, match=needle):
        locate(dev(), client, job)


@pytest.mark.parametrize("bad", ["", "_x", "a/b", "..", "a b", "x" * 129])
def test_bad_batch_names_are_refused(bad: str) -> None:
    with pytest.raises(SubmitError, match="--batch"):
        check_batch(bad)


def test_collect_files_names_folder_files_by_relative_path(tmp_path: Path) -> None:
    from submit.upload import collect_files

    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.jsonl").write_text("a")
    (tmp_path / "d" / "sub" / "b.jsonl").write_text("bb")
    (tmp_path / "c.jsonl").write_text("ccc")
    files = collect_files([tmp_path / "d", tmp_path / "c.jsonl"])
    assert [(f.name, f.size) for f in files] == [("a.jsonl", 1), ("c.jsonl", 3),
                                                 ("sub/b.jsonl", 2)]


@pytest.mark.parametrize(("layout", "needle"), [
    ({"_READY": "x"}, "reserved for bookkeeping"),
    ({"_done/x.jsonl": "x"}, "reserved for bookkeeping"),
    ({"ok.jsonl": "x", "a\x01b.jsonl": "x"}, "has a control character"),
    ({"ok.jsonl": "x", "notes.csv": "x"}, "the job reads only .jsonl inputs"),
    ({}, "no files to upload"),
])
def test_collect_files_refuses_before_sending_anything(
        tmp_path: Path, layout: dict[str, str], needle: str) -> None:
    """Issue 20: names the runner refuses were uploaded and silently skipped (6 uploaded, 4
    processed, SUCCEEDED); now the upload stops before sending anything."""
    from submit.upload import collect_files

    for name, text in layout.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    with pytest.raises(SubmitError, match=needle) as caught:
        collect_files([tmp_path], "jsonl")
    assert "\n" not in str(caught.value)  # one line


def test_the_marker_carries_the_batch_count(tmp_path: Path) -> None:
    from submit.upload import MARKER_FILES_MAX, collect_files, marker_content

    for i in range(3):
        (tmp_path / f"{i}.jsonl").write_text("x" * i)
    doc = json.loads(marker_content(collect_files([tmp_path], "jsonl")))
    assert doc == {"count": 3, "bytes": 3, "files": ["0.jsonl", "1.jsonl", "2.jsonl"]}
    for i in range(MARKER_FILES_MAX + 1):
        (tmp_path / f"m{i}.jsonl").write_text("")
    big = json.loads(marker_content(collect_files([tmp_path], "jsonl")))
    assert big["count"] == MARKER_FILES_MAX + 4 and "files" not in big


def test_two_files_with_one_object_name_are_refused(tmp_path: Path) -> None:
    from submit.upload import collect_files

    for d in ("x", "y"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "a.jsonl").write_text(d)
    with pytest.raises(SubmitError, match=r"would both be uploaded as 'a\.jsonl'"):
        collect_files([tmp_path / "x" / "a.jsonl", tmp_path / "y" / "a.jsonl"])


# --------------------------------------------------------------------- local backend


class Env:
    def __init__(self, root: Path, synth: Path) -> None:
        self.root, self.synth = root, synth

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("STORAGE_EMULATOR_HOST", "GPUB_ENV")}
        env.update(GPUB_LOCAL_ROOT=str(self.root), GPUB_SYNTH_DIR=str(self.synth),
                   GPUB_SUBMITTER="ci-test")
        return env

    def submit(self, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(REPO / "bin" / "submit"), *args], cwd=cwd, env=self.env(),
                              capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    from local.backend import LocalBackend

    tmp = tmp_path_factory.mktemp("data")
    # The synth the story uses: main.py, the same command a user runs (no CDK CLI needed).
    proc = subprocess.run([sys.executable, str(REPO / "main.py")], cwd=tmp, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    e = Env(tmp / "local", tmp / "cdktf.out")
    try:
        yield e
    finally:
        LocalBackend(root=e.root).stop()


STORY = """
set -euo pipefail
submit="$REPO/bin/submit"
"$submit" where --client globex --job uppercase
inputs=$("$submit" where --client globex --job uppercase --json | python3 -c \
  'import json,sys; print(json.load(sys.stdin)["inputs"])')
batch=$("$submit" upload "$DATA" --client globex --job uppercase --local --no-ready)
"$submit" run uppercase --env dev --client globex --local --wait --poll 0.3 \
  --input "${inputs}${batch}/" \
  --output "$("$submit" where --client globex --job uppercase --batch "$batch" --json | \
    python3 -c 'import json,sys; print(json.load(sys.stdin)["batch_outputs"])')"
"$submit" ls --client globex --job uppercase --local
"$submit" ls --client globex --job uppercase --batch "$batch" --local
"$submit" cat --client globex --job uppercase --batch "$batch" --local a.jsonl sub/b.jsonl
"""


@pytest.mark.slow
def test_onboarding_story_with_commands_only(local: Env, tmp_path: Path) -> None:
    """A client onboarded in settings (globex, dev): synth (fixture), where, upload a folder
    held back (--no-ready: no trigger), run it by hand, ls, cat -- shell only, from a
    directory outside the repository. (A marked batch runs by its trigger: never `run` it
    too, issue 20; see test_e2e_intake.py for `upload --wait`.)"""
    data = tmp_path / "batch"
    (data / "sub").mkdir(parents=True)
    (data / "a.jsonl").write_text('{"id": 1, "text": "hello"}\n')
    (data / "sub" / "b.jsonl").write_text('{"id": 2, "text": "world"}\n')
    started = time.monotonic()
    proc = subprocess.run(["bash", "-c", STORY], cwd=tmp_path, capture_output=True, text=True,
                          env={**local.env(), "REPO": str(REPO), "DATA": str(data)},
                          timeout=400)
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "client-globex@example-ml-dev-clients.iam.gserviceaccount.com" in out
    # The local cloud created the stack's buckets when it started (the local apply).
    assert "uploaded 2 files" in proc.stderr and "created local bucket" not in proc.stderr
    lines = out.splitlines()
    batch = next(ln for ln in lines if ln[:8].isdigit() and "-" in ln)
    assert f"{batch}" in lines  # `ls` without --batch lists the batch with outputs
    assert any(ln.endswith("  a.jsonl") for ln in lines)
    assert any(ln.endswith("  sub/b.jsonl") for ln in lines)
    assert not any("_manifest" in ln or "_done" in ln for ln in lines)  # hidden without --all
    assert '{"id": 1, "text": "HELLO"}' in out and '{"id": 2, "text": "WORLD"}' in out
    print(f"onboarding story: {seconds:.1f}s")  # recorded in docs/operations.md


@pytest.mark.slow
def test_ls_all_shows_bookkeeping_and_marker_is_written(local: Env, tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").write_text('{"id": 1, "text": "x"}\n')
    up = local.submit("upload", str(tmp_path / "x.jsonl"), "--client", "acme", "--job",
                      "uppercase", "--batch", "b-ls", "--local", "--json", "--no-ready")
    assert up.returncode == 0, up.stderr
    info = json.loads(up.stdout)
    assert info["inputs"] == "gs://example-ml-dev-acme/inputs/uppercase/b-ls/"
    assert info["ready"] is False and info["files"] == 1 and info["marker"] is None
    run = local.submit("run", "uppercase", "--env", "dev", "--client", "acme", "--local",
                       "--wait", "--poll", "0.3", "--input", info["inputs"],
                       "--output", info["outputs"])
    assert run.returncode == 0, run.stderr
    plain = local.submit("ls", "-c", "acme", "-j", "uppercase", "-b", "b-ls", "--local",
                         "--json")
    every = local.submit("ls", "-c", "acme", "-j", "uppercase", "-b", "b-ls", "--local",
                         "--all", "--json")
    names = {r["name"] for r in json.loads(plain.stdout)}
    all_names = {r["name"] for r in json.loads(every.stdout)}
    assert names == {"x.jsonl"}
    assert {"_manifest.jsonl", "_run.json"} <= all_names
    # The output is the done marker (it carries its input's generation, gpub_runner.done):
    # no separate `_done/` object.
    assert "_tasks/00000.json" in all_names
    assert not any(n.startswith("_done/") for n in all_names)


@pytest.mark.slow
def test_upload_refuses_a_batch_already_marked_ready(local: Env, tmp_path: Path) -> None:
    (tmp_path / "y.jsonl").write_text("{}\n")
    args = ("upload", str(tmp_path / "y.jsonl"), "-c", "acme", "-j", "uppercase", "-b",
            "b-twice", "--local")
    assert local.submit(*args).returncode == 0
    again = local.submit(*args)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1] == (
        "submit: error: --batch: gs://example-ml-dev-acme/inputs/_ready/uppercase/b-twice "
        "exists: batch b-twice is already marked ready (its run started); upload into a new "
        "batch, or re-run it with bin/submit rerun --client acme --job uppercase --batch "
        "b-twice")
    first = local.submit(*args[:-2], "b-hint", "--local")
    assert "bin/submit run" not in first.stderr  # a marked batch runs by its trigger only
    assert "next: its outcome: bin/submit results --client acme --env dev --follow --local" in (
        first.stderr)


@pytest.mark.slow
def test_no_ready_holds_the_marker_back(local: Env, tmp_path: Path) -> None:
    (tmp_path / "z.jsonl").write_text("{}\n")
    base = ("-c", "acme", "-j", "uppercase", "-b", "b-hold", "--local")
    first = local.submit("upload", str(tmp_path / "z.jsonl"), *base, "--no-ready")
    assert first.returncode == 0, first.stderr
    # Without the marker the batch is still open: a second upload into it is allowed (a new
    # file: replacing one needs storage.objects.delete, which the client identity lacks).
    (tmp_path / "z2.jsonl").write_text("{}\n")
    second = local.submit("upload", str(tmp_path / "z2.jsonl"), *base)
    assert second.returncode == 0, second.stderr


@pytest.mark.slow
@pytest.mark.parametrize(("args", "needle"), [
    (["cat", "-c", "acme", "-j", "uppercase", "-b", "b1", "../secret", "--local"],
     "NAME: '../secret' is not a file name"),
    (["cat", "-c", "acme", "-j", "uppercase", "-b", "nope", "missing.jsonl", "--local"],
     "NAME: no output gs://example-ml-dev-acme/outputs/uppercase/nope/missing.jsonl"),
    (["upload", "/does/not/exist", "-c", "acme", "-j", "uppercase", "--local"],
     "PATH: '/does/not/exist' is not a file or folder"),
    (["where", "-c", "initech", "-j", "uppercase"], "--client: unknown client 'initech'"),
])
def test_bad_input_is_one_line_and_exit_2(local: Env, args: list[str], needle: str) -> None:
    proc = local.submit(*args)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert needle in last and "Traceback" not in proc.stderr


def test_default_paths_are_in_this_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """After submit/ moved to the top level, the default synth dir and local root must still
    be <repo>/cdktf.out and <repo>/.local (they pointed one folder above the checkout)."""
    from submit import localmode, synth

    monkeypatch.delenv("GPUB_SYNTH_DIR", raising=False)
    monkeypatch.delenv("GPUB_LOCAL_ROOT", raising=False)
    assert synth.synth_dir(None) == REPO / "cdktf.out"
    assert localmode.root() == REPO / ".local"


@pytest.mark.slow
def test_failed_run_explains_itself(local: Env, tmp_path: Path) -> None:
    """Every input is bad JSON: the failure budget is exceeded (runner exit 3), which submit
    makes a FAIL_TASK code (submit/prepare.py: a retry cannot help), so the task fails after
    one attempt; --wait and status say so in words, with the log's last lines and what next."""
    (tmp_path / "bad.jsonl").write_text("this is not json\n")
    up = local.submit("upload", str(tmp_path / "bad.jsonl"), "-c", "acme", "-j", "uppercase",
                      "-b", "b-bad", "--local", "--json", "--no-ready")
    info = json.loads(up.stdout)
    run = local.submit("run", "uppercase", "--env", "dev", "--client", "acme", "--local",
                       "--wait", "--json", "--poll", "0.3", "--input", info["inputs"],
                       "--output", info["outputs"])
    assert run.returncode == 1, run.stderr
    assert "task 0 FAILED after 1 attempt: exit code 3 -- application error: more input " \
           "files failed than the job's failure budget allows" in run.stderr
    assert "    | " in run.stderr  # the log's last lines
    job_id = json.loads(run.stdout)["job_id"]
    errors = f"{info['outputs'].rstrip('/')}/_errors/"  # the run's own output (issue 23)
    assert f"next: read the errors under {errors} and the log (bin/submit logs " \
           f"{job_id} --task 0 --local)" in run.stderr
    failure = json.loads(run.stdout)["failures"][0]
    assert failure["exit_code"] == 3 and failure["category"] == "application error"

    status = local.submit("status", job_id, "--local", "--json")
    assert json.loads(status.stdout)["failures"][0]["exit_code"] == 3
    assert "task 0 FAILED" in status.stderr

    followed = local.submit("logs", job_id, "--local", "--follow", "--task", "0")
    assert followed.returncode == 0, followed.stderr
    lines = followed.stdout.splitlines()
    assert lines and all(ln.startswith("[task 0 attempt-") for ln in lines)
    assert not any('{"severity"' in ln for ln in lines)  # readable, not raw JSON
    as_json = local.submit("logs", job_id, "--local", "--json")
    assert all(json.loads(ln)["task"] == 0 for ln in as_json.stdout.splitlines())

    # cancel --json: the job's one shape, and whether a cancel was requested (it had ended).
    cancelled = local.submit("cancel", job_id, "--local", "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    shape = json.loads(cancelled.stdout)
    from submit.listing import JOB_KEYS

    assert set(shape) == JOB_KEYS | {"cancel_requested"}
    assert shape["cancel_requested"] is False and shape["state"] == "FAILED"
    assert f"job {job_id} already ended (FAILED); nothing to cancel" in cancelled.stderr


@pytest.mark.slow
def test_created_is_one_type_and_list_filters_find_the_run(local: Env, tmp_path: Path) -> None:
    """`created` is the job's creation timestamp in run, status and list JSON; list
    filters by client, job, state and since."""
    (tmp_path / "k.jsonl").write_text('{"id": 1, "text": "k"}\n')
    up = json.loads(local.submit("upload", str(tmp_path / "k.jsonl"), "-c", "globex", "-j",
                                 "uppercase", "-b", "b-json", "--local", "--json",
                                 "--no-ready").stdout)
    run = local.submit("run", "uppercase", "--client", "globex", "--local", "--wait", "--json",
                       "--poll", "0.3", "--input", up["inputs"], "--output", up["outputs"])
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    status = local.submit("status", result["job_id"], "--local", "--json")
    shapes = [result, json.loads(status.stdout)]
    for shape in shapes:
        assert isinstance(shape["created"], str), shape
    assert len({s["created"] for s in shapes}) == 1
    listed = json.loads(local.submit("list", "--local", "--json", "--client", "globex",
                                     "--job", "uppercase", "--state", "succeeded",
                                     "--since", "1h").stdout)
    assert result["job_id"] in [r["job_id"] for r in listed]
    assert {r["created"] for r in listed if r["job_id"] == result["job_id"]} == {
        result["created"]}
    assert all(r["labels"]["client"] == "globex" for r in listed)
    from submit.listing import JOB_KEYS

    assert all(set(r) == JOB_KEYS for r in listed)  # one documented shape (docs/operations.md)
    assert set(json.loads(status.stdout)) >= JOB_KEYS
    other = json.loads(local.submit("list", "--local", "--json", "--client", "acme").stdout)
    assert result["job_id"] not in [r["job_id"] for r in other]
