"""Run safety, the parts that need no service: tenant boundaries, output-ownership decisions,
odd names, the bad-input list, and the lifecycle policy of the submitted job."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.cloud import batch_v1

from submit import cli, ownership, planner, synth, tenancy
from submit.errors import ConflictError, SubmitError
from submit.manifest import ObjectInfo
from submit.ownership import Decision, RunRecord
from submit.prepare import _fail_fast_on_config_errors
from submit.uris import parse_prefix

REPO = Path(__file__).resolve().parents[1]
DEV = "example-ml-dev"


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def _one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str], message: str) -> None:
    code, out, err = _run_cli(argv, capsys)
    assert code == 2, err
    assert out == "" and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("submit: error: "), err
    assert message in lines[0], lines[0]


# ---- finding 5: tenant boundaries ----------------------------------------------------------

def _io(inp: str, out: str) -> list[str]:
    return ["--input", inp, "--output", out]


@pytest.mark.parametrize(("argv", "message"), [
    # globex's inputs into acme's outputs: the repro of finding 5
    (["--client", "acme", *_io(f"gs://{DEV}-globex/inputs/uppercase/b1/",
                               f"gs://{DEV}-acme/outputs/uppercase/stolen/")],
     f"--input: gs://{DEV}-globex/inputs/uppercase/b1/ is outside client acme's bucket"),
    (["--client", "acme", *_io(f"gs://{DEV}-acme/inputs/uppercase/b1/",
                               f"gs://{DEV}-globex/outputs/uppercase/b1/")],
     "--output: "),
    # the old shared-bucket layout is not a client's location any more
    (["--client", "acme", *_io(f"gs://{DEV}-batch-data/acme/inputs/uppercase/b1/",
                               f"gs://{DEV}-acme/outputs/uppercase/b1/")],
     "is the platform's data bucket of environment dev"),
    (["--client", "acme", *_io(f"gs://{DEV}-acme/outputs/uppercase/b1/",
                               f"gs://{DEV}-acme/outputs/uppercase/b2/")],
     "is not a batch folder of job uppercase for client acme"),
    (["--client", "acme", *_io(f"gs://{DEV}-acme/inputs/uppercase/",
                               f"gs://{DEV}-acme/outputs/uppercase/b2/")],
     "is not a batch folder"),
    # a prod bucket with --env dev
    (["--client", "acme", *_io("gs://example-ml-prod-acme/inputs/uppercase/b1/",
                               f"gs://{DEV}-acme/outputs/uppercase/b1/")],
     "belongs to environment prod, not dev"),
    (_io("gs://example-ml-prod-batch-data/in/", f"gs://{DEV}-batch-data/out/"),
     "belongs to environment prod, not dev"),
    # a client's bucket without --client
    (_io(f"gs://{DEV}-acme/inputs/uppercase/b1/", f"gs://{DEV}-batch-data/out/"),
     "it is client acme's bucket; give --client acme"),
    (_io("gs://somebody-else/in/", f"gs://{DEV}-batch-data/out/"),
     "it is not a bucket of environment dev"),
])
def test_runs_are_bound_to_their_tenant(argv: list[str], message: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    _one_line_exit_2(["uppercase", "--env", "dev", *argv], capsys, message)


def test_client_names_colliding_with_platform_names_are_refused() -> None:
    env = synth.load_environment("dev")
    for name, why in (("batch-data", "which is the platform's data bucket"),
                      ("batch-logs", "which is the access logs"),
                      ("adhoc", "reserved platform name"),
                      ("jobs", "reserved platform name")):
        clients = [c.model_copy(update={"name": name}) if c.name == "acme" else c
                   for c in env.clients]
        bad = env.model_copy(update={"clients": clients})
        with pytest.raises(SubmitError, match=re.escape(why)):
            tenancy.resolve_client(bad, "uppercase", name)
    assert tenancy.resolve_client(env, "uppercase", "acme") == "acme"
    assert tenancy.resolve_client(env, "uppercase", None) == tenancy.ADHOC


# ---- findings 1-3: output ownership ----------------------------------------------------------

OURS = RunRecord(job="uppercase", client="acme", env="dev", input="gs://b/inputs/uppercase/x/",
                 output="gs://bkt/outputs/uppercase/x/", manifest_hash="h1")


def _record(**changes: Any) -> RunRecord:
    return OURS.model_copy(update={"attempts": ["uppercase-0123456789-1"], **changes})


@pytest.mark.parametrize(("record", "first", "state", "overwrite", "want"), [
    (None, None, None, False, Decision("new")),
    (_record(), None, None, False, Decision("new")),
    (_record(), "x.jsonl", "SUCCEEDED", True, Decision("overwrite", "uppercase-0123456789-1")),
    (_record(), "x.jsonl", "SUCCEEDED", False, Decision("done", "uppercase-0123456789-1")),
    (_record(), "x.jsonl", "FAILED", False, Decision("resume", "uppercase-0123456789-1")),
    (_record(), "x.jsonl", "CANCELLED", False, Decision("resume", "uppercase-0123456789-1")),
    (_record(), "x.jsonl", None, False, Decision("resume", "uppercase-0123456789-1")),
])
def test_output_ownership_decisions(record: RunRecord | None, first: str | None,
                                    state: str | None, overwrite: bool, want: Decision) -> None:
    assert ownership.decide(ours=OURS, record=record, first_object=first, last_state=state,
                            overwrite=overwrite) == want


@pytest.mark.parametrize(("record", "message"), [
    (None, "holds no run record"),
    (_record(input="gs://b/inputs/uppercase/other/"), "holds the run of job uppercase-"),
    (_record(client="globex"), "client 'globex'"),
    (_record(manifest_hash="h0"), "the inputs changed since job"),
])
def test_a_used_output_of_another_run_needs_overwrite(record: RunRecord | None,
                                                      message: str) -> None:
    with pytest.raises(SubmitError, match=re.escape(message)) as info:
        ownership.decide(ours=OURS, record=record, first_object="a.jsonl", last_state="FAILED",
                         overwrite=False)
    assert "--overwrite" in str(info.value) and info.value.exit_code == 2


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_claim_whose_job_is_not_created_yet_holds_the_location(overwrite: bool) -> None:
    """Two --overwrite submits racing: the second reads the first's claim before the first's
    CreateJob, sees no active job, and must not delete that claim (it did: two jobs, one
    record). A fresh claim without a job is exit 3; one older than the grace is a dead submit
    and may be resumed or overwritten."""
    from submit.errors import ConflictError

    record = _record(claimed_at=1000.0)
    with pytest.raises(ConflictError, match=r"being created .* by another submit") as info:
        ownership.decide(ours=OURS, record=record, first_object="a.jsonl", last_state=None,
                         overwrite=overwrite, now=1000.0 + ownership.CLAIM_GRACE_S - 1)
    assert info.value.exit_code == 3
    late = ownership.decide(ours=OURS, record=record, first_object="a.jsonl", last_state=None,
                            overwrite=overwrite, now=1000.0 + ownership.CLAIM_GRACE_S + 1)
    assert late.action == ("overwrite" if overwrite else "resume")
    # a claim whose job Batch knows is decided by that job's state, however recent
    known = ownership.decide(ours=OURS, record=record, first_object="a.jsonl",
                             last_state="FAILED", overwrite=overwrite, now=1000.0)
    assert known.action == ("overwrite" if overwrite else "resume")


def _job(job_id: str, state: str, output: str) -> batch_v1.Job:
    return batch_v1.Job(
        name=f"projects/p/locations/r/jobs/{job_id}",
        status=batch_v1.JobStatus(state=batch_v1.JobStatus.State[state]),
        task_groups=[batch_v1.TaskGroup(task_spec=batch_v1.TaskSpec(
            environment=batch_v1.Environment(variables={"GPUB_OUTPUT_PREFIX": output})))])


@pytest.mark.parametrize(("theirs", "state", "conflict"), [
    ("gs://bkt/outputs/uppercase/mix/", "RUNNING", True),  # same location, any input
    ("gs://bkt/outputs/uppercase/mix/sub/", "QUEUED", True),  # inside ours
    ("gs://bkt/outputs/uppercase/", "SCHEDULED", True),  # around ours
    ("gs://bkt/outputs/uppercase/mix/", "CANCELLATION_IN_PROGRESS", True),
    ("gs://bkt/outputs/uppercase/mix/", "STATE_UNSPECIFIED", True),
    ("gs://bkt/outputs/uppercase/mix/", "SUCCEEDED", False),
    ("gs://bkt/outputs/uppercase/mix/", "CANCELLED", False),
    ("gs://bkt/outputs/uppercase/mixed/", "RUNNING", False),  # a sibling, not an overlap
    ("gs://other-bkt/outputs/uppercase/mix/", "RUNNING", False),
])
def test_one_active_run_per_output_location(theirs: str, state: str, conflict: bool) -> None:
    out = parse_prefix("gs://bkt/outputs/uppercase/mix/", "--output")
    jobs = [_job("embed-0123456789-1", state, theirs)]
    if conflict:
        with pytest.raises(ConflictError, match="job embed-0123456789-1 is already running"):
            ownership.refuse_if_active(jobs, out)
    else:
        ownership.refuse_if_active(jobs, out)


def test_next_attempt_counts_only_this_runs_jobs() -> None:
    base = "uppercase-0123456789"
    jobs = [_job(f"{base}-1", "CANCELLED", "gs://b/o/"), _job(f"{base}-3", "FAILED", "gs://b/o/"),
            _job("uppercase-9999999999-7", "FAILED", "gs://b/o/")]
    assert ownership.next_attempt(jobs, base) == 4
    assert ownership.next_attempt([], base) == 1
    # A job Batch has forgotten still counts when the run record lists it.
    assert ownership.next_attempt(jobs, base, [f"{base}-6", "embed-0123456789-9"]) == 7


def test_run_record_round_trip_and_garbage() -> None:
    rec = _record()
    assert RunRecord.decode(rec.encode()) == rec
    assert RunRecord.decode(b"not json") is None
    assert RunRecord.decode(b"[]") is None
    assert RunRecord.decode(None) is None


# ---- finding 4: odd object names ---------------------------------------------------------

def test_planner_refuses_dot_dot_names_with_a_clear_message() -> None:
    objects = [ObjectInfo(f"b1/f{i}.jsonl", 1, "1") for i in range(9)]
    objects.append(ObjectInfo("b1/sub/../x.jsonl", 1, "1"))
    with pytest.raises(SubmitError, match=r"--input: object name 'b1/sub/\.\./x\.jsonl' has a "
                                          r"'\.' or '\.\.' path segment"):
        planner.select_inputs(objects, "jsonl")
    assert len(planner.select_inputs(objects[:9], "jsonl")) == 9


# ---- the bad-input list ---------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "message"), [
    (["status", ""], "JOB_ID: '' is not a Batch job id"),
    (["status", "../../etc/passwd"], "JOB_ID: '../../etc/passwd' is not a Batch job id"),
    (["cancel", "../../etc/passwd"], "is not a Batch job id"),
    (["logs", "UPPER"], "is not a Batch job id"),
    (["status", "projects/other-project/locations/europe-west4/jobs/x", "--env", "dev"],
     "is in projects/other-project/locations/europe-west4, not in environment dev"),
    (["cancel", f"projects/{DEV}/locations/us-central1/jobs/x"], "not in environment dev"),
    (["uppercase", "--env", "dev", "--input", f"gs://{DEV}-batch-data/in/", "--output",
      f"gs://{DEV}-batch-data/" + "o" * 1100 + "/"],
     "--output: the prefix is 1,101 bytes; object names are at most 1,024 bytes"),
    (["uppercase", "--env", "dev", "--input", f"gs://{DEV}-batch-data/in\udcff/", "--output",
      f"gs://{DEV}-batch-data/out/"], "argument 5 is not valid UTF-8"),
    (["status", "job\udce9"], "argument 2 is not valid UTF-8"),
])
def test_bad_input_list_is_one_line_and_exit_2(argv: list[str], message: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    _one_line_exit_2(argv, capsys, message)


def test_non_utf8_bytes_from_the_shell_exit_2() -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO}:{REPO / 'images/runner/src'}",
           "LC_ALL": "C.UTF-8"}
    for argv in ([b"uppercase", b"--env", b"dev", b"--input", b"gs://b/\xff/", b"--output",
                  b"gs://b/o/"], [b"status", b"\xc3\x28"]):
        proc = subprocess.run([sys.executable.encode(), b"-m", b"submit", *argv], cwd=REPO,
                              env=env, capture_output=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert b"is not valid UTF-8" in proc.stderr and b"Traceback" not in proc.stderr


# ---- runner exit codes 2 and 3 are never retried ---------------------------------------------

def _job_json(**task_spec: Any) -> dict[str, Any]:
    return {"taskGroups": [{"taskSpec": {"runnables": [], **task_spec}}]}


def test_retries_without_a_policy_get_fail_task_on_2_and_3() -> None:
    job = _job_json(maxRetryCount=3)
    _fail_fast_on_config_errors(job)
    policies = job["taskGroups"][0]["taskSpec"]["lifecyclePolicies"]
    assert policies == [{"action": "FAIL_TASK", "actionCondition": {"exitCodes": [2, 3]}}]
    batch_v1.Job.from_json(__import__("json").dumps(job))  # a valid Batch job

    spot = _job_json(maxRetryCount=3, lifecyclePolicies=[
        {"action": "RETRY_TASK", "actionCondition": {"exitCodes": [50001]}}])
    _fail_fast_on_config_errors(spot)  # RETRY_TASK on 50001 already fails 2 and 3
    assert len(spot["taskGroups"][0]["taskSpec"]["lifecyclePolicies"]) == 1
    none = _job_json()
    _fail_fast_on_config_errors(none)
    assert "lifecyclePolicies" not in none["taskGroups"][0]["taskSpec"]


def test_retry_task_on_the_runners_config_codes_is_refused() -> None:
    job = _job_json(maxRetryCount=3, lifecyclePolicies=[
        {"action": "RETRY_TASK", "actionCondition": {"exitCodes": [50001, 3]}}])
    with pytest.raises(SubmitError, match=r"retry_exit_codes \[3, 50001\] include"):
        _fail_fast_on_config_errors(job)


# ---- the backend seam sets no environment variables --------------------------------

def test_submit_never_mutates_os_environ() -> None:
    offenders = []
    for path in sorted((REPO / "submit").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            text = ast.unparse(node) if isinstance(node, ast.Assign | ast.Call) else ""
            if isinstance(node, ast.Assign) and "os.environ[" in text:
                offenders.append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.Call) and re.match(
                    r"os\.(putenv|environ\.(setdefault|update|pop))\(", text):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_commands_pick_a_backend_instead_of_branching_on_local() -> None:
    from submit import backend

    assert isinstance(backend.backend_for(True), backend.LocalBackend)
    assert isinstance(backend.backend_for(False), backend.GoogleBackend)
    for name in ("run.py", "jobcmds.py"):
        source = (REPO / "submit" / name).read_text()
        assert "if local" not in source and "local=local" not in source, name


# ---- docs/submit.md: every output-ownership sentence has its test ----------------------------

# The opening words of each rule in docs/submit.md "## Output ownership" -> the tests that
# check it. A rule added to the page without a test here fails the test below.
OWNERSHIP_RULES = {
    "One active run per output location": [
        "test_submit_runsafety.py::test_overwrite_into_a_running_jobs_output_is_refused_with_exit_3",
        "test_submit_safety_units.py::test_one_active_run_per_output_location"],
    "An output location belongs to one run": [
        "test_submit_runsafety.py::test_cancelled_run_resumes_with_a_new_attempt",
        "test_submit_safety_units.py::test_run_record_round_trip_and_garbage"],
    "Re-running the same command resumes a FAILED or CANCELLED run": [
        "test_submit_runsafety.py::test_cancelled_run_resumes_with_a_new_attempt",
        "test_submit_safety_units.py::test_output_ownership_decisions"],
    "Re-running the same command after the run SUCCEEDED": [
        "test_submit_e2e.py::test_retried_submit_creates_one_job",
        "test_submit_safety_units.py::test_output_ownership_decisions"],
    "A used output location that belongs to another run": [
        "test_submit_runsafety.py::test_overwrite_with_new_content_recomputes_every_file",
        "test_submit_safety_units.py::test_a_used_output_of_another_run_needs_overwrite"],
    "`--overwrite` first replaces the run record, then deletes everything else": [
        "test_submit_runsafety.py::test_overwrite_with_new_content_recomputes_every_file"],
    "Racing submits into one output location": [
        "test_submit_runsafety.py::test_racing_overwrites_create_exactly_one_job",
        "test_submit_safety_units.py::"
        "test_a_claim_whose_job_is_not_created_yet_holds_the_location"],
    "Outputs are the done markers and name the input object's generation": [
        "test_runner_contract.py::test_marker_of_an_older_generation_does_not_skip_the_new_input",
        "test_runner_gcs.py::test_rerun_after_an_input_changed_replaces_only_its_stale_output",
        "test_runner_plan.py::test_an_output_of_another_input_is_never_overwritten"],
}


def test_every_output_ownership_rule_in_the_docs_has_tests() -> None:
    page = (REPO / "docs" / "submit.md").read_text()
    section = page.split("## Output ownership", 1)[1].split("\n## ", 1)[0]
    bullets = [b.strip() for b in re.findall(r"^- (.+?)(?=^- |^\s*$)", section, re.M | re.S)]
    assert len(bullets) == len(OWNERSHIP_RULES), bullets
    for bullet in bullets:
        keys = [k for k in OWNERSHIP_RULES if " ".join(bullet.split()).startswith(k)]
        assert len(keys) == 1, f"no test listed for the rule: {bullet[:60]}..."
    for tests in OWNERSHIP_RULES.values():
        for ref in tests:
            file, name = ref.split("::")
            tree = ast.parse((REPO / "tests" / file).read_text())
            assert any(isinstance(n, ast.FunctionDef) and n.name == name for n in tree.body), ref
